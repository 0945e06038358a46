"""``runtime.Bridge``: a host on two networks serves the devices of registry A to the clients of registry B."""

from __future__ import annotations

import contextlib
import functools
import logging
import math
import signal as signals
import threading
import time
from collections.abc import Iterable, Iterator
from types import FrameType
from typing import Any, Final

from runtime.bridge.device import BridgedDevice
from runtime.bridge.loop import Loop
from runtime.bridge.options import DEFAULT_BIND, Options
from runtime.bridge.usage import BridgeUsage
from runtime.errors import ZidlError
from runtime.protocol.wire import DEFAULT_LIMITS, Limits
from runtime.registry.client import DeviceRecord, registry_address
from runtime.registry.watcher import Change, Watcher
from runtime.transport.security import CurveClient, CurveServer
from runtime.transport.sockets import DEFAULT_HEARTBEAT, Heartbeat

logger = logging.getLogger(__name__)

_READY_WAIT: Final = 5.0
"""Seconds ``running()`` waits for the devices already on A's side to be registered on B's before going on."""


class Bridge:
    """Every device registered in registry ``registry`` (A), or those named in ``only``, registered in registry
    ``to`` (B) under the same name, at an address of this bridge, and served there as the device itself.

    ``bind`` is where the bridge serves B's side: each device gets a free port (two: requests and signals) on
    that host, so it is ``tcp://HOST:0`` with the host (or ``*``) of B's network. Requests, replies and signals
    pass through as their frames; the bridge reads only headers. A device that moves on A's side is followed;
    one that leaves A's registry leaves B's ``away`` seconds later unless it is back. While a device is away its
    requests are held (``max_held`` requests, ``max_held_bytes`` in all) and go, in order, when it returns: a
    oneway call however long that takes, any other request while its caller still waits; the calls in flight
    when it went end with ``ConnectionLost``.

    CurveZMQ on each side on its own: ``registry_curve`` (the bridge's key pair, with A's registry's public
    key) reaches A's registry and, with the keys A's registry gives, A's devices; ``curve`` (the bridge's
    secret key and B's allowed clients) serves B's side, whose clients get the bridge's public key from B's
    registry; ``to_curve`` (the bridge's key pair, with B's registry's key) reaches B's registry. Each device
    on B's side is held to ``limits`` and at most ``max_callers`` connections.
    """

    def __init__(
        self,
        registry: str | None = None,
        to: str | None = None,
        *,
        bind: str = DEFAULT_BIND,
        only: Iterable[str] | None = None,
        curve: CurveServer | None = None,
        registry_curve: CurveClient | None = None,
        to_curve: CurveClient | None = None,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        max_callers: int = 128,
        max_held: int = 1000,
        max_held_bytes: int = 64 * 1024 * 1024,
        away: float = 10.0,
    ) -> None:
        if to is None:
            raise ZidlError("a bridge needs the registry of B's side: to=")
        self._options = Options(
            registry=registry_address(registry),
            to=to,
            bind=bind,
            only=None if only is None else frozenset(only),
            curve=curve,
            registry_curve=registry_curve,
            to_curve=to_curve,
            heartbeat=heartbeat,
            limits=limits,
            max_callers=max_callers,
            max_held=max_held,
            max_held_bytes=max_held_bytes,
            away=away,
        )
        self._devices: dict[str, BridgedDevice] = {}
        self._names: dict[str, str] = {}
        self._changed = threading.Condition()
        self._loop: Loop | None = None
        self._thread: threading.Thread | None = None
        self._watcher: Watcher | None = None

    @property
    def names(self) -> dict[str, str]:
        """The devices registered on B's side: each one's name on A's side, and the name B's registry gave it."""
        with self._changed:
            return dict(self._names)

    @property
    def away(self) -> set[str]:
        """The bridged devices that are away now: their requests are held."""
        with self._changed:
            return {name for name, device in self._devices.items() if not device.present}

    def usage(self, name: str) -> BridgeUsage | None:
        """What the bridge holds for device ``name`` now; None when it is not bridged."""
        with self._changed:
            device = self._devices.get(name)
        return device.usage() if device is not None else None

    def wait(self, name: str, *, present: bool = True, timeout: float = 5.0) -> bool:
        """Wait until device ``name`` is there behind the bridge (or, ``present=False``, away); False on timeout."""

        def reached() -> bool:
            device = self._devices.get(name)
            return device is not None and device.present == present

        with self._changed:
            return self._changed.wait_for(reached, timeout)

    def serve(self) -> None:
        """Bridge until SIGINT or SIGTERM (in the main thread) or ``stop()``."""
        loop = self._start()
        previous: dict[signals.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(number: int, frame: FrameType | None) -> None:
                self.stop()

            for number in (signals.SIGINT, signals.SIGTERM):
                previous[number] = signals.signal(number, on_signal)
        try:
            logger.info("bridging %s to %s", self._options.registry, self._options.to)
            while not loop.stopping.wait(0.5):
                pass
        finally:
            for number, handler in previous.items():
                signals.signal(number, handler)
            self._close()

    @contextlib.contextmanager
    def running(self) -> Iterator[Bridge]:
        """Bridge in a background thread for the duration of the block.

        Yields once the devices already on A's side are registered on B's (or after a few seconds, logged).
        """
        self._start()
        try:
            if not self._settle(_READY_WAIT):
                options = self._options
                logger.warning("not every device of %s is registered on %s yet", options.registry, options.to)
            yield self
        finally:
            self._close()

    def stop(self) -> None:
        """Stop bridging (from any thread); ``serve()`` returns."""
        if self._loop is not None:
            self._loop.stop()

    # --- the loop's side -----------------------------------------------------------------------------------

    def _start(self) -> Loop:
        if self._loop is not None:
            raise ZidlError("the bridge is already running")
        loop = self._loop = Loop()
        self._thread = threading.Thread(target=self._run, args=(loop,), name="zidl-bridge", daemon=True)
        self._thread.start()
        self._watcher = Watcher(self._change, registry=self._options.registry, curve=self._options.registry_curve)
        return loop

    def _run(self, loop: Loop) -> None:
        try:
            loop.run(self._tick)
        finally:
            with self._changed:
                devices, self._devices = list(self._devices.values()), {}
            for device in devices:
                device.close()

    def _close(self) -> None:
        if self._watcher is not None:
            self._watcher.close()
        if self._loop is not None:
            self._loop.stop()
        if self._thread is not None:
            self._thread.join()
        if self._loop is not None:
            self._loop.close()
        self._loop = self._thread = self._watcher = None
        with self._changed:
            self._names.clear()

    def _settle(self, timeout: float) -> bool:
        """Wait until the devices A's registry listed first are registered on B's side."""
        watcher = self._watcher
        if watcher is None or not watcher.ready.wait(timeout):
            return False
        wanted = {name for name in watcher.devices if self._options.bridges(name)}
        with self._changed:
            return self._changed.wait_for(lambda: wanted <= self._names.keys(), timeout)

    def _change(self, change: Change, record: DeviceRecord) -> None:
        """The watcher's callback, on its thread: the loop applies the change."""
        loop = self._loop
        if self._options.bridges(record.name) and loop is not None:
            loop.call_soon(functools.partial(self._apply, loop, change, record))

    def _apply(self, loop: Loop, change: Change, record: DeviceRecord) -> None:
        device = self._devices.get(record.name)
        if change == "added":
            if device is not None:
                device.follow(record)
                return
            try:
                device = BridgedDevice(record, self._options, loop, self._registered, self._presence)
                with self._changed:
                    self._devices[record.name] = device
            except ZidlError as exc:
                logger.error("cannot bridge %s: %s", record.name, exc)
        elif device is not None and device.record.address == record.address:
            device.leave(time.monotonic())

    def _registered(self, name: str, accepted: str) -> None:
        if accepted != name:
            logger.warning("%s is registered on %s as %r: the name is held there", name, self._options.to, accepted)
        with self._changed:
            self._names[name] = accepted
            self._changed.notify_all()

    def _presence(self) -> None:
        with self._changed:
            self._changed.notify_all()

    def _tick(self, now: float) -> float:
        due = math.inf
        for name, device in list(self._devices.items()):
            if device.leaving is not None and now >= device.leaving:
                with self._changed:
                    del self._devices[name]
                    self._names.pop(name, None)
                device.close()
                continue
            if now >= device.due:
                device.due = now + device.tick(now)
            due = min(due, device.due)
        return due - now
