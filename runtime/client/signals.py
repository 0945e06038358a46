"""Signals: server-to-client events over a server's XPUB and each client's SUB socket.

A message on the publisher is ``[topic, header, *value frames]``; the topic is the
signal name and a NUL, the header carries the name, a per-signal sequence number
``s`` and the arguments ``b`` as a list. ``connect(callback)`` returns once the
subscription is live: after subscribing to the signal, the client subscribes to a
one-off welcome topic of its own; the server publishes on it when it sees that
subscription, and since one connection's subscriptions are processed in order, the
welcome proves the first one is in place.

* ``Signal`` and ``SignalHub``: a blocking client's signals; one thread owns the SUB
  socket and runs every callback.
* ``AsyncSignal`` and ``AsyncSignalHub``: an asyncio client's signals, run on its loop;
  coroutine callbacks are scheduled as tasks.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, ParamSpec

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from runtime.errors import CallTimeout, ClientClosed, ProtocolError, ZidlError
from runtime.protocol.messages import WELCOME_PREFIX as WELCOME
from runtime.protocol.messages import topic, welcome_topic
from runtime.protocol.wire import DEFAULT_LIMITS, Limits, decode
from runtime.schema.validation import Tables
from runtime.transport.monitor import Monitor
from runtime.transport.sockets import Heartbeat, Waker, make_socket, recv_frames, zmq_errors

if TYPE_CHECKING:
    from runtime.transport.security import CurveClient

logger = logging.getLogger(__name__)

P = ParamSpec("P")


class _Deliveries:
    """Decodes emissions, counts missed ones from the sequence numbers, and holds the callbacks."""

    def __init__(self, tables: Tables, what: str, limits: Limits) -> None:
        self.tables = tables
        self.what = what
        self.limits = limits
        self.callbacks: dict[str, list[Callable[..., object]]] = {}
        self.last: dict[str, int] = {}
        self.missed: dict[str, int] = {}

    def add(self, name: str, callback: Callable[..., object]) -> None:
        if name not in self.tables.signals:
            raise ZidlError(f"{self.what} has no signal {name!r}")
        self.callbacks.setdefault(name, []).append(callback)

    def remove(self, name: str, callback: Callable[..., object]) -> bool:
        """Forget ``callback``; True when ``name`` has no callbacks left."""
        callbacks = self.callbacks.get(name, [])
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)
        return not callbacks

    def decode(self, frames: list[Any]) -> tuple[str, list[Any]] | None:
        try:
            header, body = decode(frames[1:], self.limits)
            name = header.get("n")
            if not isinstance(name, str) or name not in self.tables.signals or not isinstance(body, list):
                raise ProtocolError(f"emission of unknown signal {name!r}")
            self._count(name, header.get("s"))
            return name, self.tables.validate_signal(name, tuple(body), {})
        except Exception:
            logger.exception("%s: dropped an emission that could not be read", self.what)
            return None

    def _count(self, name: str, seq: Any) -> None:
        if type(seq) is not int:
            return
        last = self.last.get(name)
        self.last[name] = seq
        if last is None:
            return
        if seq > last + 1:
            self.missed[name] = self.missed.get(name, 0) + seq - last - 1
            logger.warning("%s: missed %d emission(s) of %s", self.what, seq - last - 1, name)
        elif seq <= last:
            logger.info("%s: the sequence of %s restarted (the server restarted)", self.what, name)

    def restart(self) -> None:
        """Forget the last sequence numbers: a new server counts from 1, which is not a loss."""
        self.last.clear()

    def snapshot(self, name: str) -> tuple[Callable[..., object], ...]:
        return tuple(self.callbacks.get(name, ()))


# --- blocking clients ------------------------------------------------------------------------------


class _Subscriber:
    """The hub's SUB socket to one signal address, with heartbeats and a monitor; made anew when the device moves.

    A fresh socket (rather than reconnecting the old one) carries no stale Curve keys,
    queued messages or monitor events of the server it leaves.
    """

    def __init__(self, address: str, curve: CurveClient | None, heartbeat: Heartbeat, what: str) -> None:
        self.address = address
        self.socket = make_socket(zmq.SUB, heartbeat)
        self.monitor = Monitor(self.socket)
        try:
            with zmq_errors(f"{what}: connecting to signals at {address}"):
                if curve is not None:
                    curve.apply(self.socket)
                self.socket.connect(address)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.monitor.close()
        self.socket.close(linger=0)


class HubBase(abc.ABC):
    """What both hubs keep: where the signals are and how to reach them, how emissions are read, whom to tell of a
    loss. Each hub sets up the rest of its state in ``_init_state``."""

    def __init__(
        self,
        address: str,
        tables: Tables,
        what: str,
        *,
        curve: CurveClient | None,
        heartbeat: Heartbeat,
        patience: float,
        lost: Callable[[], None],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._address = address
        self._curve = curve
        self._heartbeat = heartbeat
        self._patience = patience
        self._lost = lost
        self._deliveries = _Deliveries(tables, what, limits)
        self._what = what
        self._subscribed: set[str] = set()
        self._closed = False
        self._init_state()

    @abc.abstractmethod
    def _init_state(self) -> None: ...

    @property
    def missed(self) -> dict[str, int]:
        return self._deliveries.missed


class SignalHub(HubBase):
    """A blocking client's signals: one thread owns the SUB socket and runs the callbacks.

    The hub follows its device without blocking a callback: ``move(address)`` re-subscribes
    every topic at a new signal address (a server restarted or found elsewhere), confirmed
    by a welcome; a lost connection (seen by the SUB's monitor, or by its heartbeats when
    the peer falls silent) or a move left unconfirmed for ``patience`` seconds is reported
    through ``lost()``, for the client to find its device again on a thread of its own.
    """

    def _init_state(self) -> None:
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        self._waker = Waker()
        self._thread: threading.Thread | None = None
        # owned by the hub thread
        self._pending: dict[bytes, threading.Event] = {}
        self._confirming: tuple[bytes, float] | None = None
        """The welcome topic that confirms a move, and by when (``time.monotonic()``) it must arrive."""

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
            if self._closed or address == self._address:
                return
            self._address, self._curve = address, curve
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

    def _connect(self) -> _Subscriber:
        with self._lock:
            address, curve = self._address, self._curve
        return _Subscriber(address, curve, self._heartbeat, self._what)

    def _run(self) -> None:
        subscriber: _Subscriber | None = None
        try:
            subscriber = self._connect()
            poller = self._poller(subscriber)
            while True:
                ready = dict(poller.poll(self._wait()))
                if subscriber.socket in ready:
                    self._receive(subscriber.socket)
                if subscriber.monitor.socket in ready and subscriber.monitor.drain():
                    self._report_lost(f"lost the connection to {subscriber.address}")
                if self._confirming is not None and time.monotonic() > self._confirming[1]:
                    subscriber.socket.unsubscribe(self._confirming[0])
                    self._confirming = None
                    self._report_lost(f"{subscriber.address} did not confirm the subscriptions in time")
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

    def _poller(self, subscriber: _Subscriber) -> zmq.Poller:
        poller = zmq.Poller()
        poller.register(subscriber.socket, zmq.POLLIN)
        poller.register(subscriber.monitor.socket, zmq.POLLIN)
        poller.register(self._waker.fileno(), zmq.POLLIN)
        return poller

    def _wait(self) -> int | None:
        """Milliseconds the hub may sleep: until a move must be confirmed, else until something happens."""
        if self._confirming is None:
            return None
        return int(max(0.0, self._confirming[1] - time.monotonic()) * 1000) + 1

    def _report_lost(self, why: str) -> None:
        """Tell the client, which looks for the device on its own thread.

        The sequence numbers are kept: a subscriber that stalled long enough for its
        heartbeats to fail comes back to the same server, and counts what it missed.
        """
        logger.info("%s: signals: %s; finding the device again", self._what, why)
        self._lost()

    def _commands_done(self, subscriber: _Subscriber) -> _Subscriber | None:
        """Carry out the queued commands; the subscriber to go on with (a new one after a move), None to stop."""
        while True:
            try:
                command, name, live = self._commands.get_nowait()
            except queue.Empty:
                return subscriber
            sub = subscriber.socket
            if command == "stop":
                return None
            if command == "move":
                subscriber = self._moved(subscriber)
            elif command == "sub":
                if name not in self._subscribed:
                    sub.subscribe(topic(name))
                    self._subscribed.add(name)
                token = welcome_topic()
                self._pending[token] = live
                sub.subscribe(token)
            elif command == "unsub" and name in self._subscribed:
                with self._lock:
                    still_wanted = bool(self._deliveries.callbacks.get(name))
                if not still_wanted:
                    sub.unsubscribe(topic(name))
                    self._subscribed.discard(name)

    def _moved(self, old: _Subscriber) -> _Subscriber:
        """A subscriber at the new address with every topic, then the welcomes still awaited and one for the move.

        A new connection gets its socket's subscriptions before any made later, so the
        move's welcome proves every topic is subscribed at the new server.
        """
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
        for name in self._subscribed:
            new.socket.subscribe(topic(name))
        for token in self._pending:
            new.socket.subscribe(token)
        token = welcome_topic()
        new.socket.subscribe(token)
        self._confirming = (token, time.monotonic() + self._patience)
        self._deliveries.restart()
        logger.info("%s: signals move to %s", self._what, address)
        return new

    def _receive(self, sub: zmq.Socket[bytes]) -> None:
        while True:
            try:
                frames = recv_frames(sub, copied=2, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            head = frames[0]
            if head.startswith(WELCOME):
                sub.unsubscribe(head)
                if self._confirming is not None and head == self._confirming[0]:
                    self._confirming = None
                    logger.info("%s: signals are live again (%d topic(s))", self._what, len(self._subscribed))
                live = self._pending.pop(head, None)
                if live is not None:
                    live.set()
                continue
            if len(frames) < 2:
                continue
            decoded = self._deliveries.decode(frames)
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


# --- asyncio clients ------------------------------------------------------------------------------


class AsyncSignalHub(HubBase):
    """An asyncio client's signals: a SUB socket, its reader and its monitor on the client's loop.

    It follows its device as ``SignalHub`` does: ``move(address)`` re-subscribes every topic
    at a new signal address, confirmed by a welcome, and a lost connection (the monitor,
    or heartbeats for a silent peer) or a move unconfirmed for ``patience`` seconds is
    reported through ``lost()``.
    """

    def _init_state(self) -> None:
        self._subscriber: _Subscriber | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._watched: zmq.asyncio.Socket | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._confirming: tuple[bytes, asyncio.TimerHandle] | None = None
        self._tasks: set[asyncio.Future[Any]] = set()

    def _socket(self) -> zmq.asyncio.Socket:
        """The SUB socket, connected on first use, and again after a move with every topic and awaited welcome."""
        if self._closed:
            raise ClientClosed(f"{self._what} is closed")
        if self._sub is None:
            subscriber = _Subscriber(self._address, self._curve, self._heartbeat, self._what)
            sub = zmq.asyncio.Socket.from_socket(subscriber.socket)
            watched = zmq.asyncio.Socket.from_socket(subscriber.monitor.socket)
            for name in self._subscribed:
                sub.subscribe(topic(name))
            for token in self._pending:
                sub.subscribe(token)
            loop = asyncio.get_running_loop()
            self._readers = [loop.create_task(self._read(sub)), loop.create_task(self._watch(watched))]
            self._subscriber, self._sub, self._watched = subscriber, sub, watched
        return self._sub

    def _close_socket(self) -> list[asyncio.Task[None]]:
        """Close the SUB socket and its monitor; the reader tasks, cancelled, are returned to be awaited."""
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        for each in (self._watched, self._sub):
            if each is not None:
                each.close(linger=0)
        if self._subscriber is not None:
            self._subscriber.close()
        self._subscriber = self._sub = self._watched = None
        return readers

    async def subscribe(self, name: str, callback: Callable[..., object], timeout: float | None) -> None:
        sub = self._socket()
        self._deliveries.add(name, callback)
        if name not in self._subscribed:
            sub.subscribe(topic(name))
            self._subscribed.add(name)
        token = welcome_topic()
        live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending[token] = live
        sub.subscribe(token)
        try:
            await asyncio.wait_for(live, timeout)
        except TimeoutError:
            raise CallTimeout(
                f"{self._what}: the subscription to {name} was not confirmed within {timeout} s"
            ) from None
        finally:
            self._pending.pop(token, None)

    async def unsubscribe(self, name: str, callback: Callable[..., object]) -> None:
        if self._deliveries.remove(name, callback) and name in self._subscribed and self._sub is not None:
            self._sub.unsubscribe(topic(name))
            self._subscribed.discard(name)

    def move(self, address: str, curve: CurveClient | None) -> None:
        """Take the signals from ``address`` from now on (the handshake's signal address).

        A new connection gets its socket's subscriptions before any made later, so the
        move's welcome proves every topic is subscribed at the new server.
        """
        if self._closed or address == self._address:
            return
        self._address, self._curve = address, curve
        if self._sub is None:
            return  # nothing subscribed yet: the first subscription connects there
        self._close_socket()
        self._deliveries.restart()
        logger.info("%s: signals move to %s", self._what, address)
        token = welcome_topic()
        self._socket().subscribe(token)
        self._unconfirm()
        self._confirming = (token, asyncio.get_running_loop().call_later(self._patience, self._unconfirmed, token))

    def _unconfirm(self) -> None:
        if self._confirming is not None:
            self._confirming[1].cancel()
            self._confirming = None

    def _unconfirmed(self, token: bytes) -> None:
        if self._confirming is None or self._confirming[0] != token:
            return
        self._confirming = None
        if self._sub is not None:
            self._sub.unsubscribe(token)
        self._report_lost(f"{self._address} did not confirm the subscriptions in time")

    def _report_lost(self, why: str) -> None:
        """Tell the client, which looks for the device in a task of its own (sequence numbers are kept)."""
        logger.info("%s: signals: %s; finding the device again", self._what, why)
        self._lost()

    async def close(self) -> None:
        self._closed = True
        self._unconfirm()
        for reader in self._close_socket():
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for task in list(self._tasks):
            task.cancel()
        for live in self._pending.values():
            if not live.done():
                live.set_exception(ClientClosed(f"{self._what} is closed"))

    async def _watch(self, watched: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames: list[bytes] = await watched.recv_multipart()
            except zmq.ZMQError:
                return
            if parse_monitor_message(frames)["event"] == zmq.EVENT_DISCONNECTED:
                self._report_lost(f"lost the connection to {self._address}")

    async def _read(self, sub: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames: list[Any] = await sub.recv_multipart(copy=False)
            except zmq.ZMQError:
                return
            head = frames[0].bytes
            if head.startswith(WELCOME):
                sub.unsubscribe(head)
                if self._confirming is not None and head == self._confirming[0]:
                    self._unconfirm()
                    logger.info("%s: signals are live again (%d topic(s))", self._what, len(self._subscribed))
                live = self._pending.pop(head, None)
                if live is not None and not live.done():
                    live.set_result(None)
                continue
            if len(frames) < 2:
                continue
            decoded = self._deliveries.decode(frames)
            if decoded is None:
                continue
            name, values = decoded
            for callback in self._deliveries.snapshot(name):
                try:
                    result = callback(*values)
                except Exception:
                    logger.exception("%s: a callback of %s raised", self._what, name)
                    continue
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: a signal callback raised", self._what, exc_info=task.exception())


class AsyncSignal(Generic[P]):
    """A signal of an asyncio client: ``await connect(callback)``; plain or coroutine callbacks run on the loop."""

    def __init__(self, name: str, hub: Callable[[], AsyncSignalHub], timeout: Callable[[], float | None]) -> None:
        self.name = name
        self._hub = hub
        self._timeout = timeout

    async def connect(self, callback: Callable[P, object]) -> None:
        """Call ``callback(*args)`` on each emission (awaiting it when it is a coroutine); returns once live."""
        await self._hub().subscribe(self.name, callback, self._timeout())

    async def disconnect(self, callback: Callable[P, object]) -> None:
        """Stop calling ``callback``."""
        await self._hub().unsubscribe(self.name, callback)

    @property
    def missed(self) -> int:
        """How many emissions were lost (counted from sequence numbers)."""
        return self._hub().missed.get(self.name, 0)

    def __repr__(self) -> str:
        return f"<AsyncSignal {self.name}>"
