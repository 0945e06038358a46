"""The blocking client base: typed calls, property access and signals over one connection per thread.

A generated ``CameraClient(Client, interface=INTERFACE)`` declares methods that call
``self._call(name, args, timeout)`` and properties that call ``self._get`` and
``self._set``. Each thread that calls gets its own DEALER socket (made on first use,
closed by ``close()``) and waits for its reply itself in a blocking receive of at
most ``_SLICE`` seconds: no thread hop per call. A connection the socket's monitor
saw drop, looked at when a slice ends with no reply, raises ``ConnectionLost``; a
timeout raises ``CallTimeout`` and leaves the socket usable (a late reply is
recognised by its id and dropped). Signals run on
one thread of the client (``SignalHub``).

A client follows its device. A request that cannot be sent within the client's
timeout asks the registry again (a client found by name) and goes to the new
address; only a request never sent is retried, so a call never runs twice. When
the signal side loses its server, a thread of the client (the follower) handshakes
again, where the registry now places the device or at the same address, and the
signals move to the signal address the handshake names: a restarted server binds
its publisher anew.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any, Final, Self

import zmq

from runtime.client.core import ClientBase
from runtime.client.signals import Signal, SignalHub
from runtime.errors import (
    AuthenticationFailed,
    CallTimeout,
    ClientClosed,
    ConnectionLost,
    ProtocolError,
    RegistryUnavailable,
    ZidlError,
)
from runtime.protocol.error_bodies import rebuild
from runtime.protocol.names import VERSION as PROTOCOL
from runtime.protocol.wire import DEFAULT_LIMITS, NO_BODY, WRITERS, Limits, Writer, decode, encode
from runtime.schema.compat import check
from runtime.schema.interface import Interface
from runtime.schema.validation import Tables
from runtime.transport.addresses import substitute_host
from runtime.transport.dealer import make_dealer
from runtime.transport.security import CurveClient
from runtime.transport.sockets import (
    DEFAULT_HEARTBEAT,
    NOBLOCK,
    Heartbeat,
    send_frames,
    translate,
)

logger = logging.getLogger(__name__)


DEFAULT_TIMEOUT: Final = 5.0
"""Seconds a handshake, property read or write, or subscription waits unless ``timeout=`` says otherwise."""

_SLICE: Final = 0.1
"""Longest single wait for a reply: after each, a call checks its deadline, its connection and ``close()``."""
_SLICE_MS: Final = int(_SLICE * 1000)

FIRST_RETRY: Final = 0.1
"""Seconds before a follower tries again to find a device it lost, doubled after each failure..."""

LAST_RETRY: Final = 5.0
"""...up to this: a device that stays away costs a handshake (and a registry lookup) every 5 s."""

WARN_AFTER: Final = 3
"""Failed attempts after which a follower warns that the device is still away (once per loss)."""

REGISTRY_PATIENCE: Final = 1.0
"""Longest wait of a follower for the registry, which answers in milliseconds: ``close()`` waits for it."""


def device_patience(timeout: float | None) -> float:
    """How long following waits for a device: the client's timeout, or the default when it has none."""
    return timeout if timeout is not None else DEFAULT_TIMEOUT


def retry_level(attempt: int) -> int:
    """The log level of a follower's failed attempt: INFO, one WARNING, then quiet (it goes on every 5 s)."""
    if attempt == WARN_AFTER:
        return logging.WARNING
    return logging.INFO if attempt < WARN_AFTER else logging.DEBUG


def _outcome(header: dict[str, Any], body: Any, table: Tables | None, where: str) -> Any:
    kind = header.get("k")
    if kind == "ok":
        return body
    if kind == "err":
        raise rebuild(body, table.declared if table is not None else {}, where)
    raise ProtocolError(f"{where}: reply of unknown kind {kind!r}")


def hello_body(interface: Interface | None) -> dict[str, Any]:
    return {"interface": interface.to_dict() if interface is not None else None, "protocol": PROTOCOL}


def read_hello(reply: Any, mine: Interface | None, address: str) -> tuple[Interface, str]:
    """The server's interface and signal address from a handshake reply, checked against ``mine``."""
    try:
        theirs = Interface.from_dict(reply["interface"])
        signals = str(reply["signals"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{address}: malformed handshake reply ({exc!r})") from None
    if mine is not None:
        differences = check(mine, theirs)
        if differences:
            logger.warning(
                "client %s v%d / server %s v%d at %s differ (compatible): %s",
                mine.name,
                mine.version,
                theirs.name,
                theirs.version,
                address,
                "; ".join(differences),
            )
    return theirs, substitute_host(signals, address)


class _Moved(Exception):
    """The device was found at a new address before the request could be sent."""


class _Connection:
    """One thread's DEALER socket to the server and its monitor; only that thread uses them.

    A call waits for its reply in a blocking ``recv`` of at most ``_SLICE`` seconds
    (the socket's ``RCVTIMEO``), as a raw pyzmq client would: a ``zmq.poll`` of the
    socket and its monitor cost a fifth of a small call's client time. The monitor is
    read before a request goes and when a slice ends with no reply, so a connection
    that drops during a call ends it within a slice.
    """

    def __init__(self, address: str, heartbeat: Heartbeat, curve: CurveClient | None = None) -> None:
        self.address = address
        self.socket, self.monitor = make_dealer(address, heartbeat, curve)
        self.slice_ms = 0
        self.wait_at_most(_SLICE)
        self.sending = zmq.Poller()  # waiting to connect: writable, or the monitor has news (a refused handshake)
        self.sending.register(self.socket, zmq.POLLOUT)
        self.sending.register(self.monitor.socket, zmq.POLLIN)
        self.busy = threading.Lock()
        self.closed = False
        self._sockets_closed = False

    def wait_at_most(self, seconds: float) -> None:
        """Make the next wait for a reply last at most ``seconds`` (and never more than a slice)."""
        slice_ms = _SLICE_MS if seconds >= _SLICE else max(1, int(seconds * 1000) + 1)
        if slice_ms != self.slice_ms:
            self.socket.setsockopt(zmq.RCVTIMEO, slice_ms)
            self.slice_ms = slice_ms

    def close_sockets(self) -> None:
        if not self._sockets_closed:
            self._sockets_closed = True
            self.monitor.close()
            self.socket.close(linger=0)


class Client(ClientBase[Signal[...]]):
    """The base of every generated blocking client; use ``<Name>Client.connect(address)``.

    ``Client.connect(address)`` on this base class makes a client for whatever the
    server describes (the command line uses it): its methods are reached with
    ``_call``, its properties with ``_get`` and ``_set``, its signals with ``signal(name)``.
    """

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveClient | None = None,
    ) -> None:
        super().__init__(address, timeout, heartbeat, limits, curve)
        self._hub: SignalHub | None = None
        self._local = threading.local()
        self._connections: dict[threading.Thread, _Connection] = {}
        self._lock = threading.Lock()
        self._locate: Callable[[float], str] | None = None
        """Asks the registry where the device is now (a client found by name), given how long to wait."""
        self._lost = threading.Event()
        self._follower: threading.Thread | None = None
        if self._tables is not None:
            self._make_signals(self._tables.interface)

    # --- public surface ---------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveClient | None = None,
    ) -> Self:
        """A client connected to ``address``, its handshake done within ``timeout`` seconds.

        ``timeout`` is also the default for property reads and writes and signal
        subscriptions. ``curve`` switches CurveZMQ on (the server's public key and this
        client's key pair). Raises ``InterfaceMismatch`` when the server is incompatible,
        ``AuthenticationFailed`` when the Curve handshake fails and ``CallTimeout`` when
        nothing answers.
        """
        client = cls(address, timeout=timeout, heartbeat=heartbeat, limits=limits, curve=curve)
        try:
            client._handshake(timeout)
        except BaseException:
            client.close()
            raise
        return client

    @classmethod
    def lookup(
        cls,
        name: str,
        *,
        registry: str | None = None,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveClient | None = None,
    ) -> Self:
        """A client for the device registered as ``name`` in the registry (``registry=``, ``$ZIDL_REGISTRY``
        or ``tcp://127.0.0.1:5555``). It follows the device: when the device cannot be reached within
        ``timeout``, or its signals are lost, the client asks the registry again and moves to the new
        address, signal callbacks included.
        With ``curve``, its ``server_key`` is the registry's (None: the registry has no Curve) and
        the device's public key comes from the registry; a device registered with a public key is
        reached over Curve even without ``curve`` (with a new key pair, for ``allow_any`` devices).
        Raises ``DeviceNotFound`` or ``RegistryUnavailable``."""
        from runtime.registry.client import lookup

        def find(wait: float) -> tuple[str, CurveClient | None]:
            record = lookup(name, registry=registry, timeout=wait, curve=curve)
            return record.address, (curve or CurveClient(None)).towards(record.public_key)

        address, device_curve = find(timeout or DEFAULT_TIMEOUT)
        client = cls(address, timeout=timeout, heartbeat=heartbeat, limits=limits, curve=device_curve)

        def locate(wait: float) -> str:
            address, client._curve = find(wait)
            return address

        client._locate = locate
        try:
            client._handshake(timeout)
        except BaseException:
            client.close()
            raise
        return client

    def close(self) -> None:
        """Close every socket and the signal thread; calls in flight end with ``ClientClosed``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            connections = list(self._connections.values())
            self._connections.clear()
            hub, self._hub = self._hub, None
            follower = self._follower
        self._lost.set()  # wakes the follower, which sees the client closed
        for connection in connections:
            connection.closed = True
            if connection.busy.acquire(blocking=False):
                try:
                    connection.close_sockets()
                finally:
                    connection.busy.release()
        if hub is not None:
            hub.close()
        if follower is not None and follower is not threading.current_thread():
            follower.join()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.close()

    # --- what generated code calls ---------------------------------------------------------------------

    def _call(self, name: str, args: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        """Call method ``name`` with ``args``; returns the validated result (None for a oneway method)."""
        plan = self._calls.get(name)
        if plan is None:
            raise self._no_method(name)
        oneway = plan.spec.oneway
        values = plan.validate_args(args).__dict__
        result = self._request("call", name, values, timeout, oneway=oneway, write=WRITERS[plan.args_shape])
        return None if oneway else plan.validate_result(result)

    def _get(self, name: str) -> Any:
        """Read property ``name``."""
        value = self._value(name)
        return value.validate_python(self._request("get", name, NO_BODY, self._timeout))

    def _set(self, name: str, value: Any) -> None:
        """Write property ``name`` (the server's ``set_<name>`` may refuse it)."""
        self._request("set", name, self._value(name).validate_python(value), self._timeout)

    # --- the connection ---------------------------------------------------------------------------------

    def _make_signals(self, interface: Interface) -> None:
        for spec in interface.signals:
            signal: Signal[...] = Signal(spec.name, self._signal_hub, lambda: self._timeout)
            self._signals[spec.name] = signal
            if type(self) is not Client:
                object.__setattr__(self, spec.name, signal)

    def _signal_hub(self) -> SignalHub:
        with self._lock:
            if self._closed:
                raise ClientClosed(f"{self._what()} is closed")
            if self._hub is None:
                self._hub = self._new_hub(SignalHub, patience=device_patience(self._timeout), lost=self._signals_lost)
            return self._hub

    def _handshake(self, timeout: float | None) -> None:
        """Exchange descriptions; the signals, if any are connected, move to the signal address the server names."""
        mine = self._tables.interface if self._tables is not None else None
        reply = self._request("hello", None, hello_body(mine), timeout)
        theirs, signals = read_hello(reply, mine, self._address)
        if self._adopt(theirs):
            self._make_signals(theirs)
        with self._lock:
            self._signal_address = signals
            hub = self._hub
        if hub is not None:
            hub.move(signals, self._curve)

    def _retarget(self, address: str, timeout: float | None) -> None:
        """Point the client at a new address (a device found again by name); each thread reconnects on next use."""
        logger.info("%s moved to %s", self._what(), address)
        with self._lock:
            self._address = address
        self._handshake(timeout)

    def _moved(self, connection: _Connection) -> bool:
        """Ask the registry where the device is now; True when it has moved (and the client with it)."""
        if self._locate is None:
            return False
        try:
            address = self._locate(device_patience(self._timeout))
        except ZidlError as exc:
            logger.info("%s: could not look the device up again: %s", self._what(), exc)
            return False
        if address == connection.address:
            return False
        if address != self._address:  # else the follower has moved the client meanwhile
            self._retarget(address, self._timeout)
        return True

    # --- following the device when its signals are lost ---------------------------------------------

    def _signals_lost(self) -> None:
        """Called on the signal thread: wake the follower (started on first need), which never blocks that thread."""
        with self._lock:
            if self._closed:
                return
            if self._follower is None:
                self._follower = threading.Thread(target=self._follow, name="zidl-follow", daemon=True)
                self._follower.start()
        self._lost.set()

    def _follow(self) -> None:
        """The follower: after each loss of signals, find the device again, until the client closes."""
        while True:
            self._lost.wait()
            self._lost.clear()
            if self._closed:
                return
            delay = FIRST_RETRY
            for attempt in itertools.count(1):
                try:
                    self._rejoin()
                except ZidlError as exc:
                    if self._closed:
                        return
                    level = retry_level(attempt)
                    logger.log(level, "%s: the device is still away (attempt %d): %s", self._what(), attempt, exc)
                else:
                    logger.info("%s: found the device again", self._what())
                    break
                if self._lost.wait(delay):  # closed, or lost again: try at once
                    self._lost.clear()
                    if self._closed:
                        return
                delay = min(2 * delay, LAST_RETRY)

    def _rejoin(self) -> None:
        """Handshake again: where the registry now places the device (found by name), else where it was.

        A registry that does not answer does not stop a try at the old address (the
        device may have restarted there); a device the registry does not know is not
        back yet.
        """
        wait = device_patience(self._timeout)
        if self._locate is not None:
            try:
                address = self._locate(min(wait, REGISTRY_PATIENCE))
            except RegistryUnavailable as exc:
                logger.info("%s: %s; trying the last address", self._what(), exc)
            else:
                if address != self._address:
                    self._retarget(address, wait)
                    return
        self._handshake(wait)

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
        header: dict[str, Any] = {"v": PROTOCOL, "id": request_id, "k": kind, "n": name}
        if timeout is not None:
            header["t"] = timeout
        frames = write(header, body)
        deadline = None if timeout is None else time.monotonic() + timeout
        sock = connection.socket
        connection.monitor.drain()  # forget what happened between calls: only a loss during this one counts
        try:  # the common case inline: connected, the message goes at once
            send_frames(sock, frames, NOBLOCK)
        except zmq.Again:
            self._send(connection, frames, deadline, timeout, kind, name)
        if oneway:
            return None
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
            header, result = decode(reply, self._limits)
            if header.get("id") != request_id:
                logger.debug("%s: dropped a late reply (id %s)", self._where(kind, name), header.get("id"))
                continue
            if header.get("k") == "ok":
                return result
            return _outcome(header, result, self._tables, self._where(kind, name))

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
        while True:
            try:
                send_frames(connection.socket, frames, zmq.NOBLOCK)
                return
            except zmq.Again:
                pass  # not connected (yet): messages only go to a completed connection
            where = self._where(kind, name)
            wait = _SLICE if deadline is None else min(_SLICE, deadline - time.monotonic())
            if wait <= 0:
                raise CallTimeout(f"{where}: {connection.address} could not be reached within {timeout} s")
            connection.sending.poll(int(wait * 1000) + 1)
            connection.monitor.drain()
            if connection.monitor.refused is not None:
                raise AuthenticationFailed(f"{where}: {connection.address}: {connection.monitor.refused}")
            if connection.closed:
                raise ClientClosed(f"{where}: the client was closed during the call")
            if connection.address != self._address:
                raise _Moved  # the follower moved the client: send there
            if kind != "hello" and self._locate is not None and time.monotonic() > ask_again:
                if self._moved(connection):
                    raise _Moved
                ask_again = time.monotonic() + device_patience(self._timeout)
