"""How a blocking client's requests travel: all of their I/O behind ``_request``.

Each thread that calls gets its own DEALER socket (made on first use, closed by
``close()``) and waits for its reply itself in a blocking receive of at most
``_SLICE`` seconds: no thread hop per call. A connection the socket's monitor saw
drop, looked at when a slice ends with no reply, raises ``ConnectionLost``; a
timeout raises ``CallTimeout`` and leaves the socket usable (a late reply is
recognised by its id and dropped). A request that cannot be sent within the
client's timeout asks the registry again (``_ask_registry``, a client found by name)
and goes to the new address; only a request never sent is retried, so a call never
runs twice. A call given up on (its timeout, a ``KeyboardInterrupt``) is cancelled on
the device; a stream gets a connection of its own (``_open_stream``).
"""

from __future__ import annotations

import abc
import logging
import threading
import time
from collections.abc import Callable
from typing import Any, Final

import zmq

from runtime.client.core import ClientCore, SignalT, device_patience
from runtime.client.streaming import CANCEL_PATIENCE, WINDOW
from runtime.errors import AuthenticationFailed, CallTimeout, ClientClosed, ConnectionLost, ProtocolError
from runtime.protocol.messages import cancel, read_reply, request, stream_request
from runtime.protocol.names import CALL, HELLO, OK, STREAM
from runtime.protocol.wire import Limits, Writer, encode
from runtime.transport.dealer import make_dealer
from runtime.transport.security import CurveClient
from runtime.transport.sockets import NOBLOCK, Heartbeat, nothing_listens, recv_frames, send_frames, translate

logger = logging.getLogger(__name__)

_SLICE: Final = 0.1
"""Longest single wait for a reply: after each, a call checks its deadline, its connection and ``close()``."""
_SLICE_MS: Final = int(_SLICE * 1000)


class _Moved(Exception):
    """The device was found at a new address before the request could be sent."""


class _Connection:
    """One thread's DEALER socket to the server and its monitor; only that thread uses them.

    A call waits for its reply in a blocking ``recv`` of at most ``_SLICE`` seconds
    (the socket's ``RCVTIMEO``), the cheapest wait pyzmq has, as a raw pyzmq client's;
    the monitor is read only before a request goes and when a slice ends with no reply,
    so a connection that drops during a call ends it within a slice.
    """

    def __init__(self, address: str, heartbeat: Heartbeat, curve: CurveClient | None = None) -> None:
        self.address = address
        self.socket, self.monitor = make_dealer(address, heartbeat, curve)
        self.slice_ms = 0
        self.wait_at_most(_SLICE)
        self.sending = zmq.Poller()  # waiting to connect: writable, or the monitor has news (a refused handshake)
        self.sending.register(self.socket, zmq.POLLOUT)
        self.sending.register(self.monitor.socket, zmq.POLLIN)
        self.reconnecting = zmq.Poller()  # waiting for a new connection after one dropped: the monitor's news
        self.reconnecting.register(self.monitor.socket, zmq.POLLIN)
        self.busy = threading.Lock()
        self.closed = False
        self._sockets_closed = False

    def wait_at_most(self, seconds: float) -> None:
        """Make the next wait for a reply last at most ``seconds`` (and never more than a slice)."""
        slice_ms = _SLICE_MS if seconds >= _SLICE else max(1, int(seconds * 1000) + 1)
        if slice_ms != self.slice_ms:
            self.socket.setsockopt(zmq.RCVTIMEO, slice_ms)
            self.slice_ms = slice_ms

    def close_sockets(self, linger: float = 0.0) -> None:
        """Close the socket and its monitor; ``linger`` seconds for what was just sent to go out."""
        if not self._sockets_closed:
            self._sockets_closed = True
            self.monitor.close()
            self.socket.close(linger=int(linger * 1000))


class _StreamLink:
    """A stream's own connection (``runtime.client.blocking_stream.Link``), used under its ``busy`` lock as a
    call's is, so that ``close()`` of the client never closes it under a reader."""

    def __init__(self, connection: _Connection, where: str, forget: Callable[[_Connection], None]) -> None:
        self.connection = connection
        self._where = where
        self._forget = forget

    def receive(self, until: float | None) -> list[Any] | None:
        with self.connection.busy:
            return self._receive(until)

    def _receive(self, until: float | None) -> list[Any] | None:
        connection = self.connection
        sock = connection.socket
        while True:
            if until is None:
                connection.wait_at_most(_SLICE)
            else:
                left = until - time.monotonic()
                if left <= 0:
                    return None
                connection.wait_at_most(left)
            try:
                frame = sock.recv(copy=False)
            except zmq.Again:
                if connection.monitor.drain():
                    raise ConnectionLost(f"{self._where}: the connection to {connection.address} was lost") from None
                if connection.closed:
                    raise ClientClosed(f"{self._where}: the client was closed during the stream") from None
                continue
            except zmq.ZMQError as exc:
                raise translate(exc, self._where) from exc
            frames: list[Any] = [frame.bytes]
            while frame.more:
                frame = sock.recv(copy=False)
                frames.append(frame)
            return frames

    def waiting(self) -> list[Any] | None:
        with self.connection.busy:
            try:
                return recv_frames(self.connection.socket, flags=NOBLOCK)
            except zmq.Again:
                return None
            except zmq.ZMQError as exc:
                raise translate(exc, self._where) from exc

    def send(self, frames: list[Any]) -> None:
        try:
            with self.connection.busy:
                send_frames(self.connection.socket, frames, NOBLOCK)
        except zmq.ZMQError as exc:  # not connected, or closed: the stream learns it as it reads
            logger.debug("%s: a message could not be sent: %s", self._where, exc)

    def close(self, *, flush: bool) -> None:
        self._forget(self.connection)
        with self.connection.busy:
            self.connection.closed = True
            self.connection.close_sockets(CANCEL_PATIENCE if flush else 0.0)


class BlockingRequests(ClientCore[SignalT]):
    """A blocking client's requests, one connection per thread; ``Client`` builds on it."""

    def __init__(
        self, address: str, timeout: float | None, heartbeat: Heartbeat, limits: Limits, curve: CurveClient | None
    ) -> None:
        self._lock = threading.Lock()
        """Guards the client's shared state: the address, the connections, the signal hub, ``close()``."""
        self._local = threading.local()
        self._connections: dict[threading.Thread, _Connection] = {}
        self._stream_connections: set[_Connection] = set()
        """The connections of the streams still open: ``close()`` ends them too."""
        self._locate: Callable[[float], str] | None = None
        """Asks the registry where the device is now (a client found by name), given how long to wait."""
        super().__init__(address, timeout, heartbeat, limits, curve)

    @abc.abstractmethod
    def _ask_registry(self, tried: str) -> bool:
        """A request could not be sent to ``tried`` in time: True when the client has moved elsewhere."""

    def _end_connections(self) -> None:
        """Close every thread's connection (the client is closed): a call in flight ends with ``ClientClosed``."""
        with self._lock:
            connections = [*self._connections.values(), *self._stream_connections]
            self._connections.clear()
            self._stream_connections.clear()
        for connection in connections:
            connection.closed = True
            if connection.busy.acquire(blocking=False):
                try:
                    connection.close_sockets()
                finally:
                    connection.busy.release()

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None and not connection.closed and connection.address == self._address:
            return connection
        with self._lock:
            if self._closed:
                raise ClientClosed(f"{self._what()} is closed")
            for thread, other in list(self._connections.items()):
                if not thread.is_alive() or other is connection:
                    del self._connections[thread]
                    other.closed = True
                    other.close_sockets()
            connection = _Connection(self._address, self._heartbeat, self._curve)
            self._connections[threading.current_thread()] = connection
        self._local.connection = connection
        return connection

    def _request(
        self,
        kind: str,
        name: str | None,
        body: Any,
        timeout: float | None,
        *,
        oneway: bool = False,
        write: Writer = encode,
    ) -> Any:
        """Send a request and wait for its reply; ``write`` encodes it (``encode_plain`` when the types allow)."""
        while True:
            connection = self._connection()
            with connection.busy:
                try:
                    return self._exchange(connection, kind, name, body, timeout, oneway, write)
                except _Moved:
                    continue  # not sent: send it to where the device is now
                except zmq.ZMQError as exc:
                    raise translate(exc, self._where(kind, name)) from exc
                finally:
                    if connection.closed:
                        connection.close_sockets()

    def _exchange(
        self,
        connection: _Connection,
        kind: str,
        name: str | None,
        body: Any,
        timeout: float | None,
        oneway: bool,
        write: Writer,
    ) -> Any:
        request_id = next(self._ids)
        frames = request(request_id, kind, name, timeout, body, write)
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = connection.socket
        connection.monitor.drain()  # forget what happened between calls: only a loss during this one counts
        if connection.monitor.dropped:  # the old connection's pipe may still take the message, and lose it
            self._send(connection, frames, deadline, timeout, kind, name)
        else:
            try:  # the common case inline: connected, the message goes at once
                send_frames(sock, frames, NOBLOCK)
            except zmq.Again:
                self._send(connection, frames, deadline, timeout, kind, name)
        if oneway:
            return None
        try:
            while True:
                if deadline is None:
                    connection.wait_at_most(_SLICE)
                else:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise CallTimeout(f"{self._where(kind, name)}: no reply within {timeout} s")
                    connection.wait_at_most(left)
                try:
                    frame = sock.recv(copy=False)  # the header; ``Frame.more`` costs less than an RCVMORE getsockopt
                except zmq.Again:
                    self._still_waiting(connection, kind, name)
                    continue
                reply: list[Any] = [frame.bytes]
                while frame.more:
                    frame = sock.recv(copy=False)
                    reply.append(frame)
                reply_id, reply_kind, result = read_reply(reply, self._limits)
                if reply_id != request_id:
                    logger.debug("%s: dropped a late reply (id %s)", self._where(kind, name), reply_id)
                    continue
                if reply_kind == OK:
                    return result
                return self._outcome(reply_kind, result, kind, name)
        except (CallTimeout, KeyboardInterrupt) as exc:
            if kind == CALL:  # given up on: the device need not go on
                self._cancel_call(connection, request_id, confirm=isinstance(exc, KeyboardInterrupt))
            raise

    def _cancel_call(self, connection: _Connection, request_id: int, *, confirm: bool) -> None:
        """Tell the device to cancel a call; an interrupted caller (``confirm``) waits, within reason, until it says
        so, so that the device knows before a process that is stopping goes."""
        try:
            send_frames(connection.socket, cancel(request_id), NOBLOCK)
            if not confirm:
                return
            connection.wait_at_most(CANCEL_PATIENCE)
            give_up = time.monotonic() + CANCEL_PATIENCE
            while time.monotonic() < give_up:
                reply_id, _kind, _body = read_reply(recv_frames(connection.socket), self._limits)
                if reply_id == request_id:
                    return
        except (zmq.ZMQError, ProtocolError) as exc:  # no answer in time, or none readable: the caller goes on
            logger.debug("%s: a cancel was not confirmed: %s", self._what(), exc)

    def _open_stream(self, name: str, body: Any, timeout: float | None, write: Writer) -> tuple[_StreamLink, int]:
        """Open stream ``name`` on a connection of its own, its request sent (within ``timeout``): the connection
        and the request id."""
        request_id = next(self._ids)
        frames = stream_request(request_id, name, timeout, WINDOW, body, write)
        deadline = None if timeout is None else time.monotonic() + timeout
        where = self._where(STREAM, name)
        while True:
            with self._lock:
                if self._closed:
                    raise ClientClosed(f"{self._what()} is closed")
                connection = _Connection(self._address, self._heartbeat, self._curve)
                self._stream_connections.add(connection)
            try:
                self._send(connection, frames, deadline, timeout, STREAM, name)
            except _Moved:
                connection.close_sockets()
                continue
            except BaseException as exc:
                connection.close_sockets()
                if isinstance(exc, zmq.ZMQError):
                    raise translate(exc, where) from exc
                raise
            return _StreamLink(connection, where, self._forget_stream), request_id

    def _forget_stream(self, connection: _Connection) -> None:
        with self._lock:
            self._stream_connections.discard(connection)

    def _still_waiting(self, connection: _Connection, kind: str, name: str | None) -> None:
        """A slice ended with no reply: raise when the connection dropped since the request went, or the client
        closed."""
        if connection.monitor.drain():
            where = self._where(kind, name)
            raise ConnectionLost(f"{where}: the connection to {connection.address} was lost during the call")
        if connection.closed:
            raise ClientClosed(f"{self._where(kind, name)}: the client was closed during the call")

    def _send(
        self,
        connection: _Connection,
        frames: list[Any],
        deadline: float | None,
        timeout: float | None,
        kind: str,
        name: str | None,
    ) -> None:
        ask_again = time.monotonic() + device_patience(self._timeout)
        probed = False
        while True:
            dropped = connection.monitor.dropped  # then only a new connection's handshake lets the message go
            if not dropped:
                try:
                    send_frames(connection.socket, frames, zmq.NOBLOCK)
                    return
                except zmq.Again:
                    pass  # not connected (yet): messages only go to a completed connection
            where = self._where(kind, name)
            wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            if wait <= 0:
                raise CallTimeout(f"{where}: {connection.address} could not be reached within {timeout} s")
            ready = (connection.reconnecting if dropped else connection.sending).poll(int(wait * 1000) + 1)
            connection.monitor.drain()
            if connection.monitor.refused is not None:
                raise AuthenticationFailed(f"{where}: {connection.address}: {connection.monitor.refused}")
            refused = None if probed or ready else self._refused(kind, self._locate is not None)
            if refused is not None:  # once, after a first slice with no connection: one that came up costs nothing
                probed = True
                if nothing_listens(connection.address):
                    raise CallTimeout(refused)
            if connection.closed:
                raise ClientClosed(f"{where}: the client was closed during the call")
            if connection.address != self._address:
                raise _Moved  # the follower moved the client: send there
            if kind != HELLO and self._locate is not None and time.monotonic() > ask_again:
                if self._ask_registry(connection.address):
                    raise _Moved
                ask_again = time.monotonic() + device_patience(self._timeout)
