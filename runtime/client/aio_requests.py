"""How an asyncio client's requests travel: all of their I/O behind ``_request``.

One DEALER socket belongs to the event loop. Each request gets a future keyed by
its id in the table of calls waiting (``_pending``); a reader task resolves them as
replies arrive, and a monitor task fails the calls in flight with ``ConnectionLost``
when the connection drops. The deadlines of the calls in flight share one loop timer
(``Deadlines``) that fails their futures; a late reply finds no future and is
dropped. A request that cannot be sent within the client's timeout asks the registry
again (``_ask_registry``, a client found by name); only a request never sent goes to
the new address. A call given up on (a task cancelled while it awaits, its timeout) is
cancelled on the device. A stream's entry in the table is its ``Inbox``.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import functools
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, cast

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from runtime.client.aio_stream import Inbox
from runtime.client.core import ClientCore, SignalT, device_patience
from runtime.client.deadlines import Deadlines
from runtime.client.streaming import WINDOW
from runtime.errors import AuthenticationFailed, CallTimeout, ClientClosed, ConnectionLost
from runtime.protocol.messages import cancel, read_reply, request, stream_request
from runtime.protocol.names import CALL, HELLO, OK, STREAM
from runtime.protocol.wire import Limits, Writer, encode
from runtime.transport.dealer import make_dealer
from runtime.transport.monitor import Monitor, handshake_failure
from runtime.transport.security import CurveClient
from runtime.transport.sockets import (
    NOBLOCK,
    Heartbeat,
    Socket,
    nothing_listens,
    readable,
    recv_frames,
    send_frames,
    translate,
)

logger = logging.getLogger(__name__)

_PROBE_AFTER: Final = 0.1
"""Seconds a first handshake by address waits for its connection before it asks whether anything listens."""

Reply = tuple[Any, Any]
"""A reply's kind and body, as a call's future receives it."""


class Waiter(Protocol):
    """An entry of the table of calls waiting: a call's future, or a stream's ``Inbox``."""

    def done(self) -> bool: ...

    def set_result(self, reply: Reply, /) -> None: ...

    def set_exception(self, error: BaseException, /) -> None: ...


class AsyncRequests(ClientCore[SignalT]):
    """An asyncio client's requests over one DEALER on its loop; ``AsyncClient`` builds on it."""

    def __init__(
        self, address: str, timeout: float | None, heartbeat: Heartbeat, limits: Limits, curve: CurveClient | None
    ) -> None:
        self._pending: dict[int, Waiter] = {}
        self._unsent: set[int] = set()
        """The requests in ``_pending`` still waiting to be sent; the others are in flight."""
        self._deadlines = Deadlines(self._expire, self._pending)
        self._sync: Socket | None = None
        self._looking = False
        """A look for replies is due in this turn of the loop (``_look_for_replies``)."""
        self._receiving: asyncio.Future[list[Any]] | None = None
        """The reader task's receive of the next message."""
        self._socket: zmq.asyncio.Socket | None = None
        self._monitor: Monitor | None = None
        self._monitor_socket: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._reconnected = asyncio.Event()
        """Clear from a drop of the connection until a new one is up: a message sent meanwhile may go down with the
        old one, so none is sent."""
        self._reconnected.set()
        self._locate: Callable[[float], Awaitable[str]] | None = None
        """Asks the registry where the device is now (a client found by name), given how long to wait."""
        super().__init__(address, timeout, heartbeat, limits, curve)

    @abc.abstractmethod
    async def _ask_registry(self, tried: str) -> None:
        """A request could not be sent to ``tried`` in time: move if the registry places the device elsewhere."""

    async def _end_requests(self) -> None:
        """The client is closed: stop reading, fail every call with ``ClientClosed``, close the socket."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_all(lambda: ClientClosed(f"{self._what()} was closed"), in_flight_only=False)
        self._deadlines.close()
        self._close_socket()

    def _drop_connection(self, why: str) -> None:
        """Leave the connection (the device moved): the calls in flight on it fail with ``ConnectionLost``; those not
        yet sent, and the next requests, go to ``_address`` on a new one."""
        for task in self._tasks:
            task.cancel()
        self._fail_all(lambda: ConnectionLost(f"{self._what()}: {why}"), in_flight_only=True)
        self._close_socket()

    def _close_socket(self) -> None:
        """Close the DEALER and its monitor (``close()``, or a move to a new address)."""
        if self._monitor is not None:
            self._monitor.stop()
        for each in (self._monitor_socket, self._socket):
            if each is not None:
                each.close(linger=0)
        if self._monitor is not None:
            self._monitor.close()
        self._reconnected.set()  # a new socket starts with no dropped connection
        if self._sync is not None:
            self._sync.close(linger=0)
        self._monitor_socket = self._socket = self._monitor = self._sync = None
        self._receiving = None

    def _ensure_socket(self) -> tuple[Socket, zmq.asyncio.Socket]:
        """The DEALER, made on first use: as a plain socket (to send and read what is there) and for awaiting."""
        if self._closed:
            raise ClientClosed(f"{self._what()} is closed")
        if self._sync is None or self._socket is None:
            self._sync, self._monitor = make_dealer(self._address, self._heartbeat, self._curve)
            self._socket = zmq.asyncio.Socket.from_socket(self._sync)
            self._monitor_socket = zmq.asyncio.Socket.from_socket(self._monitor.socket)
            loop = asyncio.get_running_loop()
            self._tasks = [
                loop.create_task(self._read(self._sync, self._socket)),
                loop.create_task(self._watch(self._monitor_socket)),
            ]
        return self._sync, self._socket

    async def _request(
        self,
        kind: str,
        name: str | None,
        body: Any,
        timeout: float | None,
        *,
        oneway: bool = False,
        write: Writer = encode,
    ) -> Any:
        """Encode, send at once when the socket takes it, and await one future.

        The reply's deadline goes to ``Deadlines``, whose one timer fails the future with
        ``CallTimeout``: a timer of its own (``asyncio.timeout()``) would be made and
        cancelled for every call. A late reply then finds no future and is dropped.
        """
        sync = self._ensure_socket()[0]
        request_id = next(self._ids)
        frames = request(request_id, kind, name, timeout, body, write)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        reply: asyncio.Future[Reply] = loop.create_future()
        self._pending[request_id] = reply
        try:
            try:
                if not self._reconnected.is_set():
                    raise zmq.Again
                send_frames(sync, frames, NOBLOCK)
            except zmq.Again:  # not connected yet, or at the high-water mark, or reconnecting
                await self._send_by(request_id, deadline, frames, reply, kind, name, timeout)
            except zmq.ZMQError as exc:
                raise translate(exc, self._where(kind, name)) from exc
            else:
                self._look_for_replies(loop)
            if oneway:
                return None
            if deadline is not None:
                self._deadlines.add(loop, deadline, request_id, kind, name, timeout)
            try:
                reply_kind, result = await reply
            except (asyncio.CancelledError, CallTimeout):
                if kind == CALL:  # given up on: the device need not go on
                    self.send_now(cancel(request_id))
                raise
        finally:
            del self._pending[request_id]
        if reply_kind == OK:
            return result
        return self._outcome(reply_kind, result, kind, name)

    async def _open_stream(
        self, request_id: int, name: str, body: Any, timeout: float | None, write: Writer, inbox: Inbox
    ) -> None:
        """Send the request that opens stream ``name``; its messages go to ``inbox`` from now on."""
        sync = self._ensure_socket()[0]
        frames = stream_request(request_id, name, timeout, WINDOW, body, write)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        self._pending[request_id] = inbox
        try:
            try:
                if not self._reconnected.is_set():
                    raise zmq.Again
                send_frames(sync, frames, NOBLOCK)
            except zmq.Again:  # not connected yet, or at the high-water mark, or reconnecting
                await self._send_by(request_id, deadline, frames, inbox.refused, STREAM, name, timeout)
            except zmq.ZMQError as exc:
                raise translate(exc, self._where(STREAM, name)) from exc
            else:
                self._look_for_replies(loop)
        except BaseException:
            self.forget(request_id)
            raise

    def send_now(self, frames: list[Any]) -> None:
        """Send a credit or a cancel at once; dropped when the socket cannot take it (the connection is down)."""
        if self._sync is None:
            return
        try:
            send_frames(self._sync, frames, NOBLOCK)
        except zmq.ZMQError as exc:
            logger.debug("%s: a message could not be sent: %s", self._what(), exc)
            return
        with contextlib.suppress(RuntimeError):  # no running loop: the client is being closed
            self._look_for_replies(asyncio.get_running_loop())

    def forget(self, request_id: int) -> None:
        """A stream ended: its entry leaves the table (a future's leaves as its ``_request`` returns)."""
        if isinstance(self._pending.get(request_id), Inbox):
            del self._pending[request_id]

    def _expire(self, request_id: int, kind: str, name: str | None, timeout: float | None) -> None:
        """A reply's deadline passed: the caller gets ``CallTimeout`` and the client stays usable."""
        reply = self._pending.get(request_id)
        if reply is not None and not reply.done():
            reply.set_exception(CallTimeout(f"{self._where(kind, name)}: no reply within {timeout} s"))

    async def _send_by(
        self,
        request_id: int,
        deadline: float | None,
        frames: list[Any],
        reply: asyncio.Future[Any],
        kind: str,
        name: str | None,
        timeout: float | None,
    ) -> None:
        """Send a request the socket could not take at once, giving up at ``deadline``; meanwhile it is in
        ``_unsent``, so a lost connection does not fail it."""
        self._unsent.add(request_id)
        try:
            async with asyncio.timeout_at(deadline):
                await self._send_when_connected(frames, reply, kind)
        except CallTimeout:  # nothing listens there (``_watch``): not the deadline's
            raise
        except TimeoutError:
            where = self._where(kind, name)
            raise CallTimeout(f"{where}: {self._address} could not be reached within {timeout} s") from None
        except zmq.ZMQError as exc:
            raise translate(exc, self._where(kind, name)) from exc
        finally:
            self._unsent.discard(request_id)

    async def _send_when_connected(self, frames: list[Any], reply: asyncio.Future[Any], kind: str) -> None:
        """Wait to send; a refused handshake (``_watch`` fails ``reply``) ends the wait at once.

        A client found by name asks the registry again after each ``timeout`` of the
        client's without sending, and sends to where the device is now. A send still
        waiting is cancelled, so it never reaches the old address: the request is sent once.
        """
        loop = asyncio.get_running_loop()
        follow = self._locate is not None and kind != HELLO
        ask_again = loop.time() + device_patience(self._timeout)
        refused = self._refused(kind, self._locate is not None)
        while True:
            tried = self._address
            socket = self._ensure_socket()[1]
            wait = max(0.0, ask_again - loop.time()) if follow else _PROBE_AFTER if refused is not None else None
            sending = None
            if self._reconnected.is_set():
                sending = asyncio.ensure_future(socket.send_multipart(frames, copy=False))  # a Future: no task
                waiting: asyncio.Future[Any] = sending
            else:
                waiting = asyncio.ensure_future(self._reconnected.wait())
            try:
                await asyncio.wait((waiting, reply), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not waiting.done():
                    waiting.cancel()
            if sending is not None and not sending.cancelled():
                sending.result()
                return
            if reply.done():
                reply.result()  # raises why the connection was refused
            unsendable = refused is not None and not int(self._ensure_socket()[0].get(zmq.EVENTS)) & zmq.POLLOUT
            if unsendable and await asyncio.to_thread(nothing_listens, tried):  # once: a connection up costs nothing
                raise CallTimeout(refused)
            refused = None
            if follow and tried == self._address and loop.time() >= ask_again:
                await self._ask_registry(tried)
                ask_again = loop.time() + device_patience(self._timeout)

    async def _read(self, sync: Socket, socket: zmq.asyncio.Socket) -> None:
        """Await a reply, then take every reply already waiting from the plain socket, without a future each."""
        while True:
            try:
                receiving = cast("asyncio.Future[list[Any]]", socket.recv_multipart(copy=False))  # a Future, typed less
                self._receiving = receiving
                self._resolve(await receiving)
                self._take_replies(sync)
            except zmq.ZMQError:
                return

    def _look_for_replies(self, loop: asyncio.AbstractEventLoop) -> None:
        """After a send on the plain socket: take the replies waiting, once the sends of this turn of the loop are made.

        The socket's file descriptor is edge-triggered, and a send may consume the notice
        that a reply arrived, which zmq.asyncio (not having made the send) would never see;
        reading until nothing is left re-arms it. The calls a batch of replies wakes send
        in the same turn of the loop, so one look serves them all.
        """
        if not self._looking:
            self._looking = True
            loop.call_soon(self._look)

    def _look(self) -> None:
        """Take the replies waiting, unless the reader task has received one it has not handled yet: it takes them
        itself right after, and a look now would hand on later messages before that one (a stream's, out of order)."""
        self._looking = False
        receiving = self._receiving
        if self._sync is not None and (receiving is None or not receiving.done()):  # else closed (or moving) since
            self._take_replies(self._sync)

    def _take_replies(self, sync: Socket) -> None:
        """Resolve every reply waiting on the plain socket."""
        while readable(sync):
            self._resolve(recv_frames(sync, flags=NOBLOCK))

    def _resolve(self, frames: list[Any]) -> None:
        try:
            request_id, kind, body = read_reply(frames, self._limits)
        except Exception:
            logger.exception("%s: dropped a reply that could not be read", self._what())
            return
        reply = self._pending.get(request_id)
        if reply is None or reply.done():
            logger.debug("%s: dropped a late reply (id %s)", self._what(), request_id)
            return
        reply.set_result((kind, body))

    async def _watch(self, monitor: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames: list[bytes] = await monitor.recv_multipart()
            except zmq.ZMQError:
                return
            event = parse_monitor_message(frames)
            refused = handshake_failure(event["event"], event["value"])
            if refused is not None:
                self._fail_all(
                    functools.partial(AuthenticationFailed, f"{self._what()}: {refused}"), in_flight_only=False
                )
            elif event["event"] == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self._reconnected.set()
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._reconnected.clear()
                self._fail_all(
                    lambda: ConnectionLost(f"{self._what()}: the connection was lost during the call"),
                    in_flight_only=True,
                )

    def _fail_all(self, error: Callable[[], Exception], *, in_flight_only: bool) -> None:
        for request_id, reply in list(self._pending.items()):
            if (not in_flight_only or request_id not in self._unsent) and not reply.done():
                reply.set_exception(error())
