"""The web view's HTTP API: the devices, their descriptions, properties and methods (``docs/web.md``)."""

from __future__ import annotations

import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from runtime import AsyncClient, MethodSpec, PropertySpec
from runtime.tools.web.book import DeviceBook, record_json
from runtime.tools.web.problems import KNOWN, Refused, not_found, problem
from runtime.tools.web.values import media_type, to_json

Handler = Callable[[Request], Awaitable[Response]]


def property_of(client: AsyncClient, name: str) -> PropertySpec:
    found = client.interface.find_property(name)
    if found is None:
        raise not_found(f"device {client.interface.name} has no property {name!r}")
    return found


def method_of(client: AsyncClient, name: str) -> MethodSpec:
    found = client.interface.find_method(name)
    if found is None:
        raise not_found(f"device {client.interface.name} has no method {name!r}")
    return found


async def json_object(request: Request) -> dict[str, Any]:
    """The request's body: a JSON object (an empty body is ``{}``)."""
    body = await request.body()
    if not body.strip():
        return {}
    try:
        value = json.loads(body)
    except ValueError as exc:
        raise Refused(400, "BadRequest", f"the body is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise Refused(400, "BadRequest", "the body must be a JSON object")
    return value


def _timeout(request: Request) -> dict[str, float | None]:
    """``?timeout=SECONDS`` (``none`` waits for ever) as the call's keyword; absent, the method's own."""
    text = request.query_params.get("timeout")
    if text is None:
        return {}
    if text.lower() == "none":
        return {"timeout": None}
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not seconds > 0:
        raise Refused(400, "BadRequest", f"timeout must be a positive number of seconds or none, not {text!r}")
    return {"timeout": seconds}


def routes(book: DeviceBook) -> list[Route]:
    def handled(handler: Handler) -> Handler:
        async def respond(request: Request) -> Response:
            try:
                return await handler(request)
            except KNOWN as exc:
                return problem(exc)

        return respond

    async def device(request: Request) -> AsyncClient:
        return await book.client(request.path_params["name"])

    async def devices(request: Request) -> Response:
        return JSONResponse([record_json(record) for record in book.records()])

    async def description(request: Request) -> Response:
        return JSONResponse((await device(request)).interface.to_dict())

    async def read_property(request: Request) -> Response:
        client = await device(request)
        spec = property_of(client, request.path_params["property"])
        return JSONResponse({"value": to_json(await client.get(spec.name))})

    async def write_property(request: Request) -> Response:
        client = await device(request)
        spec = property_of(client, request.path_params["property"])
        if not spec.writable:
            raise Refused(405, "ReadOnlyProperty", f"property {spec.name} is read-only: only the device sets it")
        body = await json_object(request)
        if set(body) != {"value"}:
            raise Refused(400, "BadRequest", 'the body must be {"value": ...}')
        await client.set(spec.name, body["value"])
        return JSONResponse({"value": to_json(await client.get(spec.name))})

    async def call(request: Request) -> Response:
        client = await device(request)
        spec = method_of(client, request.path_params["method"])
        if spec.stream:
            raise Refused(400, "StreamMethod", f"{spec.name} is a stream: open it as a WebSocket at this address")
        args = await json_object(request)
        if "timeout" in args:
            raise Refused(400, "BadRequest", "a call's timeout goes in the query: ?timeout=SECONDS")
        result = await client.call(spec.name, **_timeout(request), **args)
        if spec.return_type == "bytes" and isinstance(result, bytes):
            return Response(result, media_type=media_type(result))
        return JSONResponse({"result": to_json(result)})

    prefix = "/api/devices/{name}"
    return [
        Route("/api/devices", handled(devices)),
        Route(prefix, handled(description)),
        Route(prefix + "/properties/{property}", handled(read_property), methods=["GET"]),
        Route(prefix + "/properties/{property}", handled(write_property), methods=["PUT"]),
        Route(prefix + "/methods/{method}", handled(call), methods=["POST"]),
    ]
