"""A blocking client's signals: ``Signal``, and ``SignalHub``, whose one thread owns the SUB socket and runs every
callback (how subscriptions are confirmed: ``runtime.client.hub``)."""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Generic, ParamSpec

import zmq

from runtime.client.hub import HubBase, Subscriber
from runtime.errors import CallTimeout, ClientClosed, ZidlError
from runtime.transport.security import CurveClient
from runtime.transport.sockets import Waker, recv_frames

logger = logging.getLogger(__name__)

P = ParamSpec("P")


class SignalHub(HubBase[threading.Event]):
    """A blocking client's signals: one thread owns the SUB socket and runs the callbacks.

    Other threads reach it through a queue of commands and a waker; ``move(address)``
    returns at once, and the hub thread subscribes again at the new address.
    """

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        self._waker = Waker()
        self._thread: threading.Thread | None = None
        self._confirm_by = math.inf
        """When (``time.monotonic()``) the welcome confirming a move must have arrived; owned by the hub thread."""

    def subscribe(self, name: str, callback: Callable[..., object], timeout: float | None) -> None:
        live = threading.Event()
        with self._lock:
            if self._closed:
                raise ClientClosed(f"{self._what} is closed")
            self._deliveries.add(name, callback)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="zidl-signals", daemon=True)
                self._thread.start()
            self._commands.put(("sub", name, live))
        self._waker.wake()
        if threading.current_thread() is self._thread:
            return  # a callback subscribing: the hub cannot wait for itself
        if not live.wait(timeout):
            raise CallTimeout(f"{self._what}: the subscription to {name} was not confirmed within {timeout} s")

    def unsubscribe(self, name: str, callback: Callable[..., object]) -> None:
        with self._lock:
            if self._deliveries.remove(name, callback) and self._thread is not None:
                self._commands.put(("unsub", name, None))
                self._waker.wake()

    def move(self, address: str, curve: CurveClient | None) -> None:
        """Take the signals from ``address`` from now on (the handshake's signal address); returns at once."""
        with self._lock:
            if not self._take_address(address, curve):
                return
            if self._thread is not None:
                self._commands.put(("move", None, None))
        self._waker.wake()

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._commands.put(("stop", None, None))
        self._waker.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._waker.close()

    def _now_live(self, live: threading.Event) -> None:
        live.set()

    def _start_confirming(self) -> None:
        self._confirm_by = time.monotonic() + self._patience

    def _stop_confirming(self) -> None:
        self._confirm_by = math.inf

    def _connect(self) -> Subscriber:
        with self._lock:
            return self._new_subscriber()

    def _run(self) -> None:
        subscriber: Subscriber | None = None
        try:
            subscriber = self._connect()
            poller = self._poller(subscriber)
            while True:
                ready = dict(poller.poll(self._wait()))
                if subscriber.socket in ready:
                    self._receive(subscriber.socket)
                if subscriber.monitor.socket in ready and subscriber.monitor.drain():
                    self._report_lost(f"lost the connection to {subscriber.address}")
                if self._confirming is not None and time.monotonic() > self._confirm_by:
                    self._not_confirmed(subscriber.socket, subscriber.address)
                if self._waker.fileno() in ready:
                    self._waker.drain()
                    following = self._commands_done(subscriber)
                    if following is None:
                        return
                    if following is not subscriber:
                        subscriber.close()
                        subscriber, poller = following, self._poller(following)
        except Exception:
            logger.exception("%s: the signal thread failed", self._what)
        finally:
            if subscriber is not None:
                subscriber.close()
            for event in self._pending.values():
                event.set()

    def _poller(self, subscriber: Subscriber) -> zmq.Poller:
        poller = zmq.Poller()
        poller.register(subscriber.socket, zmq.POLLIN)
        poller.register(subscriber.monitor.socket, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        return poller

    def _wait(self) -> int | None:
        """Milliseconds the hub may sleep: until a move must be confirmed, else until something happens."""
        if self._confirm_by == math.inf:
            return None
        return int(max(0.0, self._confirm_by - time.monotonic()) * 1000) + 1

    def _commands_done(self, subscriber: Subscriber) -> Subscriber | None:
        """Carry out the queued commands; the subscriber to go on with (a new one after a move), None to stop."""
        while True:
            try:
                command, name, live = self._commands.get_nowait()
            except queue.Empty:
                return subscriber
            if command == "stop":
                return None
            if command == "move":
                subscriber = self._moved(subscriber)
            elif command == "sub":
                self._subscribe_on(subscriber.socket, name, live)
            elif command == "unsub":
                with self._lock:
                    still_wanted = bool(self._deliveries.callbacks.get(name))
                if not still_wanted:
                    self._unsubscribe_on(subscriber.socket, name)

    def _moved(self, old: Subscriber) -> Subscriber:
        """A subscriber at the new address, subscribed again; the old one when the address is the same or
        cannot be connected to (reported lost)."""
        with self._lock:
            address = self._address
        if address == old.address:
            return old
        try:
            new = self._connect()
        except ZidlError as exc:
            logger.warning("%s: signals: %s", self._what, exc)
            self._lost()
            return old
        self._resubscribe(new.socket)
        return new

    def _receive(self, sub: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = recv_frames(sub, copied=2, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            decoded = self._take(sub, frames[0], frames)
            if decoded is None:
                continue
            name, values = decoded
            with self._lock:
                callbacks = self._deliveries.snapshot(name)
            for callback in callbacks:
                try:
                    callback(*values)
                except Exception:
                    logger.exception("%s: a callback of %s raised", self._what, name)


class Signal(Generic[P]):
    """A signal of a blocking client: ``connect(callback)`` to receive its emissions on the client's signal thread."""

    def __init__(self, name: str, hub: Callable[[], SignalHub], timeout: Callable[[], float | None]) -> None:
        self.name = name
        self._hub = hub
        self._timeout = timeout

    def connect(self, callback: Callable[P, object]) -> None:
        """Call ``callback(*args)`` on each emission; returns once the subscription is live."""
        self._hub().subscribe(self.name, callback, self._timeout())

    def disconnect(self, callback: Callable[P, object]) -> None:
        """Stop calling ``callback``."""
        self._hub().unsubscribe(self.name, callback)

    @property
    def missed(self) -> int:
        """How many emissions were lost (counted from sequence numbers) since the first one received."""
        return self._hub().missed.get(self.name, 0)

    def __repr__(self) -> str:
        return f"<Signal {self.name}>"
