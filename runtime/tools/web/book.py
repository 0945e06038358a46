"""The devices the web view serves: the registry's, followed live, each with one dynamic client, reused.

The registry's watcher runs in a thread of its own and hands each change to the
event loop. A device is connected on first use (``await book.client(name)``) and
that one ``AsyncClient`` serves every request and WebSocket about it; when the
device goes away (or registers again elsewhere) its client is closed, its
WebSockets are told (``Device.gone``), and the page's device list follows through
``changes()``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, Literal

from runtime import AsyncClient, CurveClient, DeviceRecord, Watcher, watch

log = logging.getLogger(__name__)

Change = Literal["added", "removed"]

DEVICE_TIMEOUT = 5.0
"""Seconds a device's handshake, a property read or write and a subscription may take before a 504."""

FIRST_LIST_PATIENCE = 10.0
"""Seconds ``start()`` waits for the registry's first list: a registry that answers gives it in milliseconds."""


class UnknownDevice(LookupError):
    """The registry lists no device of that name (a 404)."""


def record_json(record: DeviceRecord) -> dict[str, Any]:
    return {"name": record.name, "interface": record.interface, "version": record.version, "address": record.address}


@dataclass
class Device:
    record: DeviceRecord
    gone: asyncio.Event = field(default_factory=asyncio.Event)
    connecting: asyncio.Task[AsyncClient] | None = None


def _same(a: DeviceRecord, b: DeviceRecord) -> bool:
    return (a.address, a.interface, a.version, a.hash) == (b.address, b.interface, b.version, b.hash)


class DeviceBook:
    """The registry's devices, as the event loop sees them; ``start()`` and ``close()`` on that loop."""

    def __init__(self, *, registry: str | None, curve: CurveClient | None, timeout: float = DEVICE_TIMEOUT) -> None:
        self._registry = registry
        self._curve = curve
        self._timeout = timeout
        self._devices: dict[str, Device] = {}
        self._listeners: set[asyncio.Queue[tuple[Change, DeviceRecord]]] = set()
        self._watcher: Watcher | None = None
        self._closing: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Follow the registry; returns once its first list has arrived (or its timeout passed, the registry down)."""
        loop = asyncio.get_running_loop()

        def changed(change: Change, record: DeviceRecord) -> None:
            loop.call_soon_threadsafe(self._changed, change, record)

        self._watcher = watch(changed, registry=self._registry, curve=self._curve)
        if not await asyncio.to_thread(self._watcher.ready.wait, FIRST_LIST_PATIENCE):
            log.warning("no registry answered at %s yet; devices appear when it does", self._watcher.url)

    async def close(self) -> None:
        if self._watcher is not None:
            await asyncio.to_thread(self._watcher.close)
        for name in list(self._devices):
            self._forget(name)
        if self._closing:
            await asyncio.gather(*self._closing)

    def records(self) -> list[DeviceRecord]:
        return [self._devices[name].record for name in sorted(self._devices)]

    def device(self, name: str) -> Device:
        try:
            return self._devices[name]
        except KeyError:
            raise UnknownDevice(f"no device {name!r} in the registry") from None

    async def client(self, name: str) -> AsyncClient:
        """The device's client, connected on first use; a failed connection is tried again by the next request."""
        device = self.device(name)
        connecting = device.connecting
        if connecting is None or (connecting.done() and (connecting.cancelled() or connecting.exception() is not None)):
            connecting = device.connecting = asyncio.get_running_loop().create_task(self._connect(device.record))
        return await asyncio.shield(connecting)

    async def changes(self) -> AsyncIterator[tuple[Change, DeviceRecord]]:
        """The devices there now (as "added"), then each change as it comes."""
        queue: asyncio.Queue[tuple[Change, DeviceRecord]] = asyncio.Queue()
        self._listeners.add(queue)
        try:
            for record in self.records():
                yield "added", record
            while True:
                yield await queue.get()
        finally:
            self._listeners.discard(queue)

    async def _connect(self, record: DeviceRecord) -> AsyncClient:
        curve = None if record.public_key is None else (self._curve or CurveClient(None)).towards(record.public_key)
        return await AsyncClient.connect(record.address, timeout=self._timeout, curve=curve)

    def _changed(self, change: Change, record: DeviceRecord) -> None:
        current = self._devices.get(record.name)
        if change == "added":
            if current is not None and _same(current.record, record):
                return
            if current is not None:
                self._forget(record.name)
            self._devices[record.name] = Device(record)
        elif current is None or not _same(current.record, record):
            return
        else:
            self._forget(record.name)
        for queue in self._listeners:
            queue.put_nowait((change, record))

    def _forget(self, name: str) -> None:
        """The device left: its WebSockets are told, its client closes."""
        device = self._devices.pop(name)
        device.gone.set()
        if device.connecting is not None:
            task = asyncio.get_running_loop().create_task(self._close_client(device.connecting))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    @staticmethod
    async def _close_client(connecting: asyncio.Task[AsyncClient]) -> None:
        with contextlib.suppress(Exception, asyncio.CancelledError):
            client = await connecting
            await client.close()
