"""Signals: server-to-client events over a server's XPUB and each client's SUB socket.

A message on the publisher is ``[topic, header, *value frames]``; the topic is the
signal name and a NUL, the header carries the name, a per-signal sequence number
``s`` and the arguments ``b`` as a list. ``connect(callback)`` returns once the
subscription is live: after subscribing to the signal, the client subscribes to a
one-off welcome topic of its own; the server publishes on it when it sees that
subscription, and since one connection's subscriptions are processed in order, the
welcome proves the first one is in place.

* ``ServerSignal`` emits from any server thread (the server's I/O thread publishes).
* ``Signal`` and ``SignalHub``: a blocking client's signals; one thread owns the SUB
  socket and runs every callback.
* ``AsyncSignal`` and ``AsyncSignalHub``: an asyncio client's signals, run on its loop;
  coroutine callbacks are scheduled as tasks.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import os
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final, Generic, ParamSpec

import zmq
import zmq.asyncio

from ._errors import CallTimeout, ClientClosed, ProtocolError, ZidlError
from ._transport import Waker, make_socket, recv_frames, zmq_errors
from ._validation import Tables
from ._wire import decode_body, decode_header

if TYPE_CHECKING:
    from ._security import CurveClient

logger = logging.getLogger(__name__)

P = ParamSpec("P")

WELCOME: Final = b"\x01zidl-welcome:"
"""The prefix of a client's one-off welcome topic (signal names never start with it)."""


def topic(name: str) -> bytes:
    return name.encode() + b"\0"


def welcome_topic() -> bytes:
    return WELCOME + os.urandom(8).hex().encode()


class ServerSignal(Generic[P]):
    """A signal of a server: ``emit(*args, **kwargs)`` from any thread reaches every subscriber once."""

    def __init__(self, name: str, emit: Callable[[str, tuple[Any, ...], dict[str, Any]], None]) -> None:
        self.name = name
        self._emit = emit

    def emit(self, *args: P.args, **kwargs: P.kwargs) -> None:
        """Validate the arguments (IDL order, or by keyword) and publish them."""
        self._emit(self.name, args, kwargs)

    def __repr__(self) -> str:
        return f"<ServerSignal {self.name}>"


class _Deliveries:
    """Decodes emissions, counts missed ones from the sequence numbers, and holds the callbacks."""

    def __init__(self, tables: Tables, what: str) -> None:
        self.tables = tables
        self.what = what
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
            header = decode_header(frames[1])
            body = decode_body(header, frames[1:])
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

    def snapshot(self, name: str) -> tuple[Callable[..., object], ...]:
        return tuple(self.callbacks.get(name, ()))


# --- blocking clients ------------------------------------------------------------------------------


class SignalHub:
    """A blocking client's signals: one thread owns the SUB socket and runs the callbacks."""

    def __init__(self, address: str, tables: Tables, what: str, curve: CurveClient | None = None) -> None:
        self._address = address
        self._curve = curve
        self._deliveries = _Deliveries(tables, what)
        self._what = what
        self._lock = threading.Lock()
        self._commands: queue.SimpleQueue[tuple[str, Any, Any]] = queue.SimpleQueue()
        self._waker = Waker()
        self._thread: threading.Thread | None = None
        self._closed = False

    @property
    def missed(self) -> dict[str, int]:
        return self._deliveries.missed

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

    def close(self) -> None:
        with self._lock:
            self._closed = True
            thread = self._thread
            self._commands.put(("stop", None, None))
        self._waker.wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join()
        self._waker.close()

    def _run(self) -> None:
        sub = make_socket(zmq.SUB)
        pending: dict[bytes, threading.Event] = {}
        subscribed: set[str] = set()
        try:
            with zmq_errors(f"{self._what}: connecting to signals at {self._address}"):
                if self._curve is not None:
                    self._curve.apply(sub)
                sub.connect(self._address)
            poller = zmq.Poller()
            poller.register(sub, zmq.POLLIN)
            poller.register(self._waker.fileno(), zmq.POLLIN)
            while True:
                ready = dict(poller.poll())
                if self._waker.fileno() in ready:
                    self._waker.drain()
                    if not self._commands_done(sub, pending, subscribed):
                        return
                if sub in ready:
                    self._receive(sub, pending)
        except Exception:
            logger.exception("%s: the signal thread failed", self._what)
        finally:
            sub.close(linger=0)
            for event in pending.values():
                event.set()

    def _commands_done(
        self, sub: zmq.Socket[bytes], pending: dict[bytes, threading.Event], subscribed: set[str]
    ) -> bool:
        while True:
            try:
                command, name, live = self._commands.get_nowait()
            except queue.Empty:
                return True
            if command == "stop":
                return False
            if command == "sub":
                if name not in subscribed:
                    sub.subscribe(topic(name))
                    subscribed.add(name)
                token = welcome_topic()
                pending[token] = live
                sub.subscribe(token)
            elif command == "unsub" and name in subscribed:
                with self._lock:
                    still_wanted = bool(self._deliveries.callbacks.get(name))
                if not still_wanted:
                    sub.unsubscribe(topic(name))
                    subscribed.discard(name)

    def _receive(self, sub: zmq.Socket[bytes], pending: dict[bytes, threading.Event]) -> None:
        while True:
            try:
                frames = recv_frames(sub, copied=2, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            head = frames[0]
            if head.startswith(WELCOME):
                sub.unsubscribe(head)
                live = pending.pop(head, None)
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


class AsyncSignalHub:
    """An asyncio client's signals: a SUB socket and a reader task on the client's loop."""

    def __init__(self, address: str, tables: Tables, what: str, curve: CurveClient | None = None) -> None:
        self._address = address
        self._curve = curve
        self._deliveries = _Deliveries(tables, what)
        self._what = what
        self._sync: zmq.Socket[bytes] | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._reader: asyncio.Task[None] | None = None
        self._pending: dict[bytes, asyncio.Future[None]] = {}
        self._subscribed: set[str] = set()
        self._tasks: set[asyncio.Future[Any]] = set()
        self._closed = False

    @property
    def missed(self) -> dict[str, int]:
        return self._deliveries.missed

    def _socket(self) -> zmq.asyncio.Socket:
        if self._closed:
            raise ClientClosed(f"{self._what} is closed")
        if self._sub is None:
            self._sync = make_socket(zmq.SUB)
            with zmq_errors(f"{self._what}: connecting to signals at {self._address}"):
                if self._curve is not None:
                    self._curve.apply(self._sync)
                self._sync.connect(self._address)
            self._sub = zmq.asyncio.Socket.from_socket(self._sync)
            self._reader = asyncio.get_running_loop().create_task(self._read(self._sub))
        return self._sub

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

    async def close(self) -> None:
        self._closed = True
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
        for task in list(self._tasks):
            task.cancel()
        for live in self._pending.values():
            if not live.done():
                live.set_exception(ClientClosed(f"{self._what} is closed"))
        if self._sub is not None:
            self._sub.close(linger=0)
        if self._sync is not None:
            self._sync.close(linger=0)

    async def _read(self, sub: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames: list[Any] = await sub.recv_multipart(copy=False)
            except zmq.ZMQError:
                return
            head = frames[0].bytes
            if head.startswith(WELCOME):
                sub.unsubscribe(head)
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
