"""The client side of the registry: look devices up and list them, blocking or with asyncio.

The registry address comes from the ``registry=`` argument, else the
``ZIDL_REGISTRY`` environment variable, else ``tcp://127.0.0.1:5555``. Every
request waits at most ``timeout`` seconds and then raises ``RegistryUnavailable``;
an unknown name raises ``DeviceNotFound``. ``curve=`` (a ``CurveClient`` whose
``server_key`` is the registry's public key) reaches a registry that has Curve on;
a refused handshake, a registry without Curve included, raises
``AuthenticationFailed`` at once. A listing comes in pages (the registry bounds a
reply's size); ``list_devices`` reads them all.
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from runtime.errors import AuthenticationFailed, DeviceNotFound, ProtocolError, RegistryUnavailable
from runtime.protocol.names import LIST, LOOKUP
from runtime.protocol.registry_messages import (
    read_registry_message,
    registry_failure,
    registry_id,
    registry_position,
    registry_request,
    registry_succeeded,
)
from runtime.registry.server import DEFAULT_REGISTRY
from runtime.transport.addresses import endpoint
from runtime.transport.monitor import MONITOR_EVENTS, Monitor, handshake_failure
from runtime.transport.security import CurveClient, is_key

__all__ = [
    "DeviceRecord",
    "RegistryClient",
    "list_devices",
    "list_devices_async",
    "lookup",
    "lookup_async",
    "registry_address",
]

log = logging.getLogger(__name__)

_S = TypeVar("_S", bound=zmq.Socket[Any])
_MAX_PAGES: Final = 10_000


@dataclass(frozen=True)
class DeviceRecord:
    """One registered device, as the registry described it."""

    name: str
    interface: str
    version: int
    hash: str
    address: str
    last_heartbeat: float
    """Seconds since the registry last heard from the device, when the record was sent."""
    public_key: str | None = None

    @classmethod
    def from_dict(cls, data: Any) -> DeviceRecord:
        """The record in a registry reply; ``ProtocolError`` when it is not one."""
        try:
            return cls(
                name=str(data["name"]),
                interface=str(data["interface"]),
                version=int(data["version"]),
                hash=str(data.get("hash", "")),
                address=str(data["address"]),
                last_heartbeat=float(data.get("age", 0.0)),
                public_key=key if isinstance(key := data.get("public_key"), str) and is_key(key) else None,
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ProtocolError(f"the registry sent a malformed device record: {data!r:.200}") from exc


def registry_address(registry: str | None = None) -> str:
    """``registry``, else ``$ZIDL_REGISTRY``, else the default ``tcp://127.0.0.1:5555``; ``HOST:PORT`` is TCP."""
    return endpoint(registry or os.environ.get("ZIDL_REGISTRY") or DEFAULT_REGISTRY)


def registry_socket(sock: _S, url: str, curve: CurveClient | None) -> _S:
    """``sock`` set up for the registry and connected to it (closed, and ``RegistryUnavailable``, if it cannot be)."""
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.MAXMSGSIZE, 64 << 20)
    try:
        if curve is not None and curve.server_key is not None:
            curve.apply(sock)
        sock.connect(url)
    except zmq.ZMQError as exc:
        sock.close(0)
        raise RegistryUnavailable(f"cannot connect to the registry at {url!r}: {exc}") from exc
    return sock


def parse_reply(raw: bytes, url: str) -> dict[str, Any] | None:
    """A reply or event from the registry at ``url``; None (logged) when it is not a JSON object."""
    message = read_registry_message(raw)
    if message is None:
        log.debug("registry %s: ignored a malformed reply", url)
    return message


def _check(reply: dict[str, Any], url: str, what: str) -> dict[str, Any]:
    if registry_succeeded(reply):
        return reply
    error, message = registry_failure(reply)
    if error == "not-found":
        raise DeviceNotFound(f"no device named {what!r} is registered at {url}")
    raise ProtocolError(f"the registry at {url} refused {what}: {error}: {message}")


class Listing:
    """The pages of one ``list``: send ``fields()`` and give each reply to ``take`` until it returns True.

    A listing whose pages reflect different states of the registry (it changed
    meanwhile) starts again, twice at most; ``position`` is the state it reflects.
    """

    def __init__(self, interface: str | None = None) -> None:
        self._first: dict[str, Any] = {} if interface is None else {"interface": interface}
        self._after: str | None = None
        self._tries = 3
        self._pages = 0
        self.devices: list[Any] = []
        self.position: tuple[Any, Any] | None = None

    def fields(self) -> dict[str, Any]:
        """The fields of the next request."""
        return self._first if self._after is None else {**self._first, "after": self._after}

    def take(self, reply: dict[str, Any]) -> bool:
        """Take one page; True when the listing is complete."""
        page = reply.get("devices")
        page = page if isinstance(page, list) else []
        position = registry_position(reply)
        if self._after is not None and position != self.position and self._tries > 1:
            self._tries -= 1
            self._after, self.devices = None, []  # the registry changed between pages: from the start again
            return False
        self.position = position
        self.devices.extend(page)
        self._pages += 1
        last = page[-1].get("name") if page and isinstance(page[-1], dict) else None
        if reply.get("more") is not True or not isinstance(last, str) or self._pages >= _MAX_PAGES:
            return True
        if self._after is not None and last <= self._after:
            return True  # a page that does not move on: a broken registry; what came is what there is
        self._after = last
        return False


class RegistryClient:
    """A connection to one registry for repeated requests, used from one thread at a time."""

    def __init__(self, registry: str | None = None, *, timeout: float = 2.0, curve: CurveClient | None = None) -> None:
        self.url = registry_address(registry)
        self.timeout = timeout
        self._ids = itertools.count(1)
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._monitor = Monitor(sock)  # attached before connecting: a refused Curve handshake is reported at once
        self._socket = registry_socket(sock, self.url, curve)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor.socket, zmq.POLLIN)

    def request(self, kind: str, *, timeout: float | None = None, what: str = "", **fields: Any) -> dict[str, Any]:
        """Send one request and return its successful reply."""
        request_id = next(self._ids)
        limit = self.timeout if timeout is None else timeout
        self._socket.send(registry_request(kind, request_id, **fields))
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(self._poller.poll(math.ceil(left * 1000)))
            self._monitor.drain()
            if self._monitor.refused is not None and not self._monitor.connected:
                raise AuthenticationFailed(f"the registry at {self.url}: {self._monitor.refused}")
            if self._socket not in ready:
                continue
            reply = parse_reply(self._socket.recv(), self.url)
            if reply is not None and registry_id(reply) == request_id:
                return _check(reply, self.url, what or kind)
        raise RegistryUnavailable(f"no registry answered at {self.url} within {limit:g} s")

    def lookup(self, name: str) -> DeviceRecord:
        """The device registered as ``name``."""
        return DeviceRecord.from_dict(self.request(LOOKUP, name=name, what=name)["device"])

    def list_devices(self, interface: str | None = None) -> list[DeviceRecord]:
        """Every registered device, or those implementing ``interface``."""
        listing = Listing(interface)
        while not listing.take(self.request(LIST, **listing.fields())):
            pass
        return [DeviceRecord.from_dict(d) for d in listing.devices]

    def close(self) -> None:
        self._monitor.close()
        self._socket.close(0)

    def __enter__(self) -> RegistryClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def lookup(
    name: str, *, registry: str | None = None, timeout: float = 2.0, curve: CurveClient | None = None
) -> DeviceRecord:
    """The device registered as ``name``; ``DeviceNotFound`` or ``RegistryUnavailable`` otherwise."""
    with RegistryClient(registry, timeout=timeout, curve=curve) as client:
        return client.lookup(name)


def list_devices(
    *,
    registry: str | None = None,
    interface: str | None = None,
    timeout: float = 2.0,
    curve: CurveClient | None = None,
) -> list[DeviceRecord]:
    """Every registered device (or those implementing ``interface``), sorted by name."""
    with RegistryClient(registry, timeout=timeout, curve=curve) as client:
        return client.list_devices(interface)


class _AsyncRequests:
    """One DEALER to the registry for a few asyncio requests, its monitor telling a refused handshake at once."""

    def __init__(self, url: str, timeout: float, curve: CurveClient | None) -> None:
        ctx = zmq.asyncio.Context(zmq.Context.instance())
        self.url, self.timeout = url, timeout
        sock: zmq.asyncio.Socket = ctx.socket(zmq.DEALER)
        self._monitor = sock.get_monitor_socket(MONITOR_EVENTS)  # before connecting: a refusal is not missed
        try:
            self._socket = registry_socket(sock, url, curve)
        except RegistryUnavailable:
            self._monitor.close(0)
            raise
        self._poller = zmq.asyncio.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor, zmq.POLLIN)
        self._ids = itertools.count(1)

    async def request(self, kind: str, what: str, **fields: Any) -> dict[str, Any]:
        request_id = next(self._ids)
        await self._socket.send(registry_request(kind, request_id, **fields))
        deadline = time.monotonic() + self.timeout
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(await self._poller.poll(math.ceil(left * 1000)))
            if self._monitor in ready:
                event = parse_monitor_message(await self._monitor.recv_multipart())
                refused = handshake_failure(event["event"], event["value"])
                if refused is not None:
                    raise AuthenticationFailed(f"the registry at {self.url}: {refused}")
            if self._socket in ready:
                reply = parse_reply(await self._socket.recv(), self.url)
                if reply is not None and registry_id(reply) == request_id:
                    return _check(reply, self.url, what or kind)
        raise RegistryUnavailable(f"no registry answered at {self.url} within {self.timeout:g} s")

    def close(self) -> None:
        self._socket.disable_monitor()
        self._monitor.close(0)
        self._socket.close(0)


async def lookup_async(
    name: str, *, registry: str | None = None, timeout: float = 2.0, curve: CurveClient | None = None
) -> DeviceRecord:
    """``lookup`` for asyncio: the device registered as ``name``."""
    requests = _AsyncRequests(registry_address(registry), timeout, curve)
    try:
        reply = await requests.request(LOOKUP, name, name=name)
    finally:
        requests.close()
    return DeviceRecord.from_dict(reply["device"])


async def list_devices_async(
    *,
    registry: str | None = None,
    interface: str | None = None,
    timeout: float = 2.0,
    curve: CurveClient | None = None,
) -> list[DeviceRecord]:
    """``list_devices`` for asyncio."""
    requests = _AsyncRequests(registry_address(registry), timeout, curve)
    listing = Listing(interface)
    try:
        while not listing.take(await requests.request(LIST, "", **listing.fields())):
            pass
    finally:
        requests.close()
    return [DeviceRecord.from_dict(d) for d in listing.devices]
