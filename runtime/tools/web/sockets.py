"""The web view's WebSockets: the devices coming and going, a device's signals, and a stream method's items.

A WebSocket the view refuses (an unknown name) gets the HTTP error the same request
would (a WebSocket denial response). Each handler ends when the browser goes, and
when the device does: a stream's call is cancelled on the device as its socket
closes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from runtime import AsyncStream, ZidlError
from runtime.tools.web.book import Device, DeviceBook, record_json
from runtime.tools.web.http_api import method_of
from runtime.tools.web.problems import KNOWN, Refused, describe, problem
from runtime.tools.web.values import to_json

SIGNAL_BACKLOG = 1000
"""Emissions held for a browser that reads slower than its device emits; beyond it the oldest are dropped."""


async def _until_closed(websocket: WebSocket) -> None:
    """Read (and ignore) what the browser sends until it goes."""
    with contextlib.suppress(WebSocketDisconnect):
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return


async def _first(*waits: Awaitable[Any]) -> None:
    """Wait until the first of ``waits`` ends, then cancel the others."""
    tasks = [asyncio.ensure_future(wait) for wait in waits]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def _arguments(websocket: WebSocket) -> dict[str, Any]:
    """A stream's first message: its arguments, a JSON object."""
    message = await websocket.receive()
    if message["type"] == "websocket.disconnect":
        raise WebSocketDisconnect(message.get("code", 1000))
    try:
        args = json.loads(message.get("text") or "")
    except ValueError:
        args = None
    if not isinstance(args, dict):
        raise Refused(400, "BadRequest", "the first message must be a JSON object of the arguments")
    if "timeout" in args:
        raise Refused(400, "BadRequest", "the arguments take no timeout: a stream waits its method's own for each item")
    return args


def routes(book: DeviceBook) -> list[WebSocketRoute]:
    def refusing(handler: Callable[[WebSocket], Awaitable[None]]) -> Callable[[WebSocket], Awaitable[None]]:
        async def run(websocket: WebSocket) -> None:
            try:
                await handler(websocket)
            except KNOWN as exc:
                if websocket.application_state is WebSocketState.CONNECTING:
                    await websocket.send_denial_response(problem(exc))
                    return
                with contextlib.suppress(WebSocketDisconnect, RuntimeError):  # the browser may have gone already
                    await websocket.send_json({"error": describe(exc)[1]})
                    await websocket.close()
            except WebSocketDisconnect:
                pass

        return run

    async def devices(websocket: WebSocket) -> None:
        await websocket.accept()

        async def forward() -> None:
            async for change, record in book.changes():
                await websocket.send_json({"change": change, "device": record_json(record)})

        await _first(forward(), _until_closed(websocket))

    async def events(websocket: WebSocket) -> None:
        name = websocket.path_params["name"]
        device = book.device(name)
        client = await book.client(name)
        queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(SIGNAL_BACKLOG)

        def deliver(signal: str) -> Callable[..., None]:
            def put(*args: Any) -> None:
                if queue.full():
                    queue.get_nowait()
                queue.put_nowait({"signal": signal, "args": to_json(list(args)), "time": time.time()})

            return put

        callbacks = [(client.signal(spec.name), deliver(spec.name)) for spec in client.interface.signals]
        try:
            for signal, callback in callbacks:
                await signal.connect(callback)
            await websocket.accept()  # once every subscription is live: no emission after it is lost

            async def forward() -> None:
                while True:
                    await websocket.send_json(await queue.get())

            await _first(forward(), _until_closed(websocket), device.gone.wait())
        finally:
            if not device.gone.is_set():
                for signal, callback in callbacks:
                    with contextlib.suppress(ZidlError):
                        await signal.disconnect(callback)
        if device.gone.is_set():
            await _gone(websocket, device)

    async def stream(websocket: WebSocket) -> None:
        name = websocket.path_params["name"]
        device = book.device(name)
        client = await book.client(name)
        spec = method_of(client, websocket.path_params["method"])
        if not spec.stream:
            raise Refused(400, "NotAStream", f"{spec.name} is not a stream: POST to call it")
        await websocket.accept()
        items: AsyncStream[Any, Any] = await client.call(spec.name, **await _arguments(websocket))

        async def pump() -> None:
            async with items:
                async for item in items:
                    if isinstance(item, bytes):
                        await websocket.send_bytes(item)
                    else:
                        await websocket.send_json({"item": to_json(item)})
                result = await items.result()
            await websocket.send_json({"result": to_json(result)})
            await websocket.close()

        await _first(pump(), _until_closed(websocket), device.gone.wait())
        if device.gone.is_set():
            await _gone(websocket, device)

    return [
        WebSocketRoute("/api/events", refusing(devices)),
        WebSocketRoute("/api/devices/{name}/events", refusing(events)),
        WebSocketRoute("/api/devices/{name}/methods/{method}", refusing(stream)),
    ]


async def _gone(websocket: WebSocket, device: Device) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        message = f"device {device.record.name} left the registry"
        await websocket.send_json({"error": {"type": "DeviceGone", "message": message}})
        await websocket.close(1001)
