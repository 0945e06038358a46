"""The registry's watcher: a thread that follows its change events and calls back as devices come and go."""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import socket
import threading
import time
from collections.abc import Callable
from typing import Any, Literal

import zmq

from runtime.errors import ProtocolError
from runtime.protocol.names import ADDED, BEAT, INFO, LIST, REMOVED
from runtime.protocol.registry_messages import (
    registry_event_kind,
    registry_id,
    registry_position,
    registry_request,
    registry_succeeded,
)
from runtime.registry.client import DeviceRecord, Listing, parse_reply, registry_address, registry_socket
from runtime.transport.addresses import connectable, host_of
from runtime.transport.monitor import Monitor
from runtime.transport.security import CurveClient

__all__ = ["Change", "WatchCallback", "Watcher", "watch"]

log = logging.getLogger(__name__)

Change = Literal["added", "removed"]


def _key(record: DeviceRecord) -> tuple[str, str, str, int, str]:
    """What makes two records of one name the same registration."""
    return (record.name, record.address, record.interface, record.version, record.hash)


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
        self._refused: str | None = None  # the refusal logged last, so a repeated one is not
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
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self._monitor: Monitor = Monitor(sock)  # before connecting: a refused handshake is logged, not waited out
        dealer = registry_socket(sock, self.url, self.curve)
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
                info = self._request(dealer, INFO)
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
                if registry_position(info) != (self._epoch, self._seq):
                    self._relist(dealer)
                self._listen(dealer, sub, silence)
        except Exception:
            log.exception("watcher of %s failed", self.url)
        finally:
            self._monitor.close()
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
                event = parse_reply(raw, self.url)
                if event is not None and not self._apply(event):
                    self._relist(dealer)

    def _apply(self, event: dict[str, Any]) -> bool:
        """Apply one event; False when it shows this view is stale."""
        epoch, seq, kind = registry_event_kind(event)
        if epoch != self._epoch or not isinstance(seq, int):
            return False
        if kind == BEAT:
            return seq == self._seq
        if seq <= self._seq:
            return True  # already in the list we have
        if seq != self._seq + 1 or kind not in (ADDED, REMOVED):
            return False
        self._seq = seq
        try:
            record = DeviceRecord.from_dict(event.get("device"))
        except ProtocolError:
            return False
        with self._lock:
            if kind == ADDED:
                self._devices[record.name] = record
            else:
                current = self._devices.get(record.name)
                if current is None or _key(current) != _key(record):
                    return True
                del self._devices[record.name]
        self._notify(kind, record)
        return True

    def _relist(self, dealer: zmq.Socket[Any]) -> None:
        listing = Listing()
        while True:
            reply = self._request(dealer, LIST, **listing.fields())
            if reply is None:
                return
            if listing.take(reply):
                break
        try:
            fresh = {r.name: r for r in map(DeviceRecord.from_dict, listing.devices)}
        except ProtocolError:
            log.warning("watcher: the registry at %s sent a malformed list", self.url)
            return
        first = not self.ready.is_set()
        with self._lock:
            old = self._devices
            self._devices = fresh
            epoch, seq = listing.position or (None, 0)
            self._epoch = epoch if isinstance(epoch, str) else None
            self._seq = seq if isinstance(seq, int) else 0
        if not first or self.initial:
            for name, record in old.items():
                if name not in fresh or _key(fresh[name]) != _key(record):
                    self._notify("removed", record)
            for name, record in fresh.items():
                if name not in old or _key(old[name]) != _key(record):
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

    def _request(self, dealer: zmq.Socket[Any], kind: str, **fields: Any) -> dict[str, Any] | None:
        """One request, waiting at most ``timeout`` (less if closed); None without an answer."""
        request_id = next(self._ids)
        with contextlib.suppress(zmq.Again):
            dealer.send(registry_request(kind, request_id, **fields), zmq.NOBLOCK)
        poller = zmq.Poller()
        poller.register(dealer, zmq.POLLIN)
        poller.register(self._wake_r.fileno(), zmq.POLLIN)
        deadline = time.monotonic() + self.timeout
        while not self._closing and (left := deadline - time.monotonic()) > 0:
            if dealer not in dict(poller.poll(math.ceil(left * 1000))):
                continue
            reply = parse_reply(dealer.recv(), self.url)
            if reply is not None and registry_id(reply) == request_id:
                return reply if registry_succeeded(reply) else None
        if not self._closing:
            self._monitor.drain()
            if self._monitor.refused is not None and self._monitor.refused != self._refused:
                log.error("watcher: the registry at %s refused it: %s", self.url, self._monitor.refused)
            self._refused = self._monitor.refused
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
