"""The client side of the registry: look devices up, list them, watch them come and go.

The registry address comes from the ``registry=`` argument, else the
``ZIDL_REGISTRY`` environment variable, else ``tcp://127.0.0.1:5555``. Every
request waits at most ``timeout`` seconds and then raises ``RegistryUnavailable``;
an unknown name raises ``DeviceNotFound``. ``curve=`` (a ``CurveClient`` whose
``server_key`` is the registry's public key) reaches a registry that has Curve on;
a refused handshake raises ``AuthenticationFailed``.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import math
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

import zmq
import zmq.asyncio

from runtime.errors import AuthenticationFailed, DeviceNotFound, ProtocolError, RegistryUnavailable
from runtime.protocol.names import VERSION as PROTOCOL
from runtime.registry.server import DEFAULT_REGISTRY
from runtime.transport.addresses import connectable, host_of
from runtime.transport.monitor import Monitor
from runtime.transport.security import CurveClient, is_key

__all__ = [
    "DeviceRecord",
    "RegistryClient",
    "Watcher",
    "list_devices",
    "list_devices_async",
    "lookup",
    "lookup_async",
    "registry_address",
    "watch",
]

log = logging.getLogger(__name__)

Change = Literal["added", "removed"]
_S = TypeVar("_S", bound=zmq.Socket[Any])


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

    def _key(self) -> tuple[str, str, str, int, str]:
        return (self.name, self.address, self.interface, self.version, self.hash)


def registry_address(registry: str | None = None) -> str:
    """``registry``, else ``$ZIDL_REGISTRY``, else the default ``tcp://127.0.0.1:5555``."""
    return registry or os.environ.get("ZIDL_REGISTRY") or DEFAULT_REGISTRY


def _dealer(url: str, curve: CurveClient | None) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    return _connect(sock, url, curve)


def _connect(sock: _S, url: str, curve: CurveClient | None) -> _S:
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


def _check(reply: dict[str, Any], url: str, what: str) -> dict[str, Any]:
    if reply.get("ok") is True:
        return reply
    error, message = reply.get("error"), reply.get("message", "")
    if error == "not-found":
        raise DeviceNotFound(f"no device named {what!r} is registered at {url}")
    raise ProtocolError(f"the registry at {url} refused {what}: {error}: {message}")


def _parse(raw: bytes, url: str) -> dict[str, Any] | None:
    try:
        reply = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        log.debug("registry %s: ignored a malformed reply", url)
        return None
    return reply if isinstance(reply, dict) else None


class RegistryClient:
    """A connection to one registry for repeated requests, used from one thread at a time."""

    def __init__(self, registry: str | None = None, *, timeout: float = 2.0, curve: CurveClient | None = None) -> None:
        self.url = registry_address(registry)
        self.timeout = timeout
        self._ids = itertools.count(1)
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._monitor = Monitor(sock)  # attached before connecting: a refused Curve handshake is reported at once
        self._socket = _connect(sock, self.url, curve)
        self._poller = zmq.Poller()
        self._poller.register(self._socket, zmq.POLLIN)
        self._poller.register(self._monitor.socket, zmq.POLLIN)

    def request(self, kind: str, *, timeout: float | None = None, what: str = "", **fields: Any) -> dict[str, Any]:
        """Send one request and return its successful reply."""
        request_id = next(self._ids)
        limit = self.timeout if timeout is None else timeout
        self._socket.send(json.dumps({"v": PROTOCOL, "id": request_id, "k": kind, **fields}).encode())
        deadline = time.monotonic() + limit
        while (left := deadline - time.monotonic()) > 0:
            ready = dict(self._poller.poll(math.ceil(left * 1000)))
            self._monitor.drain()
            if self._monitor.refused is not None and not self._monitor.connected:
                raise AuthenticationFailed(f"the registry at {self.url}: {self._monitor.refused}")
            if self._socket not in ready:
                continue
            reply = _parse(self._socket.recv(), self.url)
            if reply is not None and reply.get("id") == request_id:
                return _check(reply, self.url, what or kind)
        raise RegistryUnavailable(f"no registry answered at {self.url} within {limit:g} s")

    def lookup(self, name: str) -> DeviceRecord:
        """The device registered as ``name``."""
        return DeviceRecord.from_dict(self.request("lookup", name=name, what=name)["device"])

    def list_devices(self, interface: str | None = None) -> list[DeviceRecord]:
        """Every registered device, or those implementing ``interface``."""
        fields: dict[str, Any] = {} if interface is None else {"interface": interface}
        reply = self.request("list", **fields)
        return [DeviceRecord.from_dict(d) for d in reply.get("devices", [])]

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


async def _request_async(
    url: str, kind: str, timeout: float, what: str, curve: CurveClient | None, **fields: Any
) -> dict[str, Any]:
    ctx = zmq.asyncio.Context(zmq.Context.instance())
    sock: zmq.asyncio.Socket = _connect(ctx.socket(zmq.DEALER), url, curve)
    try:
        await sock.send(json.dumps({"v": PROTOCOL, "id": 1, "k": kind, **fields}).encode())
        deadline = time.monotonic() + timeout
        while (left := deadline - time.monotonic()) > 0:
            if not await sock.poll(math.ceil(left * 1000)):
                break
            reply = _parse(await sock.recv(), url)
            if reply is not None and reply.get("id") == 1:
                return _check(reply, url, what or kind)
        raise RegistryUnavailable(f"no registry answered at {url} within {timeout:g} s")
    finally:
        sock.close(0)


async def lookup_async(
    name: str, *, registry: str | None = None, timeout: float = 2.0, curve: CurveClient | None = None
) -> DeviceRecord:
    """``lookup`` for asyncio: the device registered as ``name``."""
    reply = await _request_async(registry_address(registry), "lookup", timeout, name, curve, name=name)
    return DeviceRecord.from_dict(reply["device"])


async def list_devices_async(
    *,
    registry: str | None = None,
    interface: str | None = None,
    timeout: float = 2.0,
    curve: CurveClient | None = None,
) -> list[DeviceRecord]:
    """``list_devices`` for asyncio."""
    fields: dict[str, Any] = {} if interface is None else {"interface": interface}
    reply = await _request_async(registry_address(registry), "list", timeout, "", curve, **fields)
    return [DeviceRecord.from_dict(d) for d in reply.get("devices", [])]


WatchCallback = Callable[[Change, DeviceRecord], None]


class Watcher:
    """Calls back ``(change, record)`` as devices come and go, from a thread of its own.

    It subscribes to the registry's change events and lists the devices; a gap in
    the events' sequence numbers, a restarted registry or a silent one makes it list
    again and report the difference. With ``initial`` the devices already
    registered are reported as "added" first. ``ready`` is set once the first list
    arrived; ``devices`` is the current view.
    """

    def __init__(
        self,
        callback: WatchCallback,
        *,
        registry: str | None = None,
        initial: bool = True,
        timeout: float = 2.0,
        curve: CurveClient | None = None,
    ) -> None:
        self.url = registry_address(registry)
        self.curve = curve
        self.callback = callback
        self.initial = initial
        self.timeout = timeout
        self.ready = threading.Event()
        self._devices: dict[str, DeviceRecord] = {}
        self._lock = threading.Lock()
        self._closing = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._ids = itertools.count(1)
        self._epoch: str | None = None
        self._seq = 0
        self._thread = threading.Thread(target=self._run, name="zidl-watch", daemon=True)
        self._thread.start()

    @property
    def devices(self) -> dict[str, DeviceRecord]:
        """The devices as this watcher last saw them, by name."""
        with self._lock:
            return dict(self._devices)

    def close(self) -> None:
        """Stop watching; returns once the thread has ended."""
        self._closing = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")
        if self._thread is not threading.current_thread():
            self._thread.join()
        self._wake_w.close()

    def __enter__(self) -> Watcher:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the watcher's thread --------------------------------------------

    def _run(self) -> None:
        dealer = _dealer(self.url, self.curve)
        sub: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.SUB)
        sub.setsockopt(zmq.LINGER, 0)
        if self.curve is not None and self.curve.server_key is not None:
            self.curve.apply(sub)
        sub.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        sub.setsockopt(zmq.SUBSCRIBE, b"")
        events_address: str | None = None
        silence = 3.0
        try:
            while not self._closing:
                info = self._request(dealer, "info")
                if info is None:
                    self._wait(min(1.0, self.timeout))
                    continue
                address = self._events_address(info)
                if address != events_address:
                    if events_address is not None:
                        with contextlib.suppress(zmq.ZMQError):
                            sub.disconnect(events_address)
                    sub.connect(address)
                    events_address = address
                beat = info.get("beat")
                silence = 3.0 * float(beat) if isinstance(beat, (int, float)) and beat > 0 else 3.0
                if info.get("epoch") != self._epoch or info.get("seq") != self._seq:
                    self._relist(dealer)
                self._listen(dealer, sub, silence)
        except Exception:
            log.exception("watcher of %s failed", self.url)
        finally:
            dealer.close(0)
            sub.close(0)
            self._wake_r.close()

    def _listen(self, dealer: zmq.Socket[Any], sub: zmq.Socket[Any], silence: float) -> None:
        """Apply events until the registry falls silent (then the caller asks ``info`` again)."""
        poller = zmq.Poller()
        poller.register(sub, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        while not self._closing:
            if not poller.poll(math.ceil(silence * 1000)):
                return
            while True:
                try:
                    raw = sub.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                event = _parse(raw, self.url)
                if event is not None and not self._apply(event):
                    self._relist(dealer)

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one event; False when it shows this view is stale."""
        seq, kind = event.get("seq"), event.get("k")
        if event.get("epoch") != self._epoch or not isinstance(seq, int):
            return False
        if kind == "beat":
            return seq == self._seq
        if seq <= self._seq:
            return True  # already in the list we have
        if seq != self._seq + 1 or kind not in ("added", "removed"):
            return False
        self._seq = seq
        try:
            record = DeviceRecord.from_dict(event.get("device"))
        except ProtocolError:
            return False
        with self._lock:
            if kind == "added":
                self._devices[record.name] = record
            else:
                current = self._devices.get(record.name)
                if current is None or current._key() != record._key():
                    return True
                del self._devices[record.name]
        self._notify(kind, record)
        return True

    def _relist(self, dealer: zmq.Socket[Any]) -> None:
        reply = self._request(dealer, "list")
        if reply is None:
            return
        try:
            fresh = {r.name: r for r in map(DeviceRecord.from_dict, reply.get("devices", []))}
        except ProtocolError:
            log.warning("watcher: the registry at %s sent a malformed list", self.url)
            return
        first = not self.ready.is_set()
        with self._lock:
            old = self._devices
            self._devices = fresh
            self._epoch = reply.get("epoch") if isinstance(reply.get("epoch"), str) else None
            seq = reply.get("seq")
            self._seq = seq if isinstance(seq, int) else 0
        if not first or self.initial:
            for name, record in old.items():
                if name not in fresh or fresh[name]._key() != record._key():
                    self._notify("removed", record)
            for name, record in fresh.items():
                if name not in old or old[name]._key() != record._key():
                    self._notify("added", record)
        self.ready.set()

    def _notify(self, kind: Change, record: DeviceRecord) -> None:
        try:
            self.callback(kind, record)
        except Exception:
            log.exception("watch callback failed on %s %s", kind, record.name)

    def _events_address(self, info: dict[str, Any]) -> str:
        events = info.get("events")
        if not isinstance(events, str):
            raise ProtocolError(f"the registry at {self.url} did not say where its events are")
        return connectable(events, host_of(self.url))

    def _request(self, dealer: zmq.Socket[Any], kind: str) -> dict[str, Any] | None:
        """One request, waiting at most ``timeout`` (less if closed); None without an answer."""
        request_id = next(self._ids)
        with contextlib.suppress(zmq.Again):
            dealer.send(json.dumps({"v": PROTOCOL, "id": request_id, "k": kind}).encode(), zmq.NOBLOCK)
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        while not self._closing and (left := deadline - time.monotonic()) > 0:
            if dealer not in dict(poller.poll(math.ceil(left * 1000))):
                continue
            reply = _parse(dealer.recv(), self.url)
            if reply is not None and reply.get("id") == request_id:
                return reply if reply.get("ok") is True else None
        if not self._closing:
            log.debug("watcher: no answer from the registry at %s", self.url)
        return None

    def _wait(self, seconds: float) -> None:
        with contextlib.suppress(OSError):
            if zmq.select([self._wake_r.fileno()], [], [], seconds)[0]:
                self._wake_r.recv(64)


def watch(
    callback: WatchCallback,
    *,
    registry: str | None = None,
    initial: bool = True,
    timeout: float = 2.0,
    curve: CurveClient | None = None,
) -> Watcher:
    """Start watching devices come and go; ``Watcher.close()`` stops it."""
    return Watcher(callback, registry=registry, initial=initial, timeout=timeout, curve=curve)
