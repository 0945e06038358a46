"""The asyncio client base: any number of concurrent awaits over one connection.

One DEALER socket belongs to the event loop. Each request gets a future keyed by
its id; a reader task resolves them as replies arrive, and a monitor task fails the
calls in flight with ``ConnectionLost`` when the connection drops. Timeouts are
asyncio's; a late reply finds no future and is dropped. Properties are
``AsyncProperty`` objects (``await camera.mode.get()``), signals ``AsyncSignal``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, ClassVar, Generic, Self, TypeVar

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from ._client import DEFAULT_TIMEOUT, _outcome, hello_body, read_hello
from ._errors import AuthenticationFailed, CallTimeout, ClientClosed, ConnectionLost, ZidlError
from ._interface import Interface
from ._security import CurveClient
from ._signals import AsyncSignal, AsyncSignalHub
from ._transport import (
    DEFAULT_HEARTBEAT,
    Heartbeat,
    Monitor,
    Socket,
    handshake_failure,
    make_dealer,
    readable,
    recv_frames,
    send_frames,
    translate,
)
from ._validation import Tables, tables
from ._wire import _NOTHING, DEFAULT_LIMITS, PROTOCOL, Limits, decode, encode

logger = logging.getLogger(__name__)

T = TypeVar("T")
C = TypeVar("C", bound="AsyncClient")


class AsyncReadOnlyProperty(Generic[T]):
    """A read-only remote property: ``await client.rotation.get()``."""

    def __init__(self, client: AsyncClient, name: str) -> None:
        self._client = client
        self.name = name

    async def get(self) -> T:
        """Read the value from the device."""
        value: T = await self._client._get(self.name)
        return value

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name}>"


class AsyncProperty(AsyncReadOnlyProperty[T]):
    """A writable remote property: ``await client.mode.get()`` and ``await client.mode.set(value)``."""

    async def set(self, value: T) -> None:
        """Write the value (the device may refuse it)."""
        await self._client._set(self.name, value)


class Connecting(Generic[C]):
    """What ``AsyncClient.connect`` returns: await it for a client, or use it as ``async with``."""

    def __init__(self, connect: Callable[[], Awaitable[C]]) -> None:
        self._connect = connect
        self._client: C | None = None

    def __await__(self) -> Generator[Any, None, C]:
        return self._connect().__await__()

    async def __aenter__(self) -> C:
        self._client = await self._connect()
        return self._client

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        if self._client is not None:
            await self._client.close()


class AsyncClient:
    """The base of every generated asyncio client; ``await <Name>AsyncClient.connect(address)``."""

    _zidl_interface: ClassVar[Interface | None] = None
    _zidl_tables: ClassVar[Tables | None] = None

    def __init_subclass__(cls, *, interface: Interface | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if interface is not None:
            cls._zidl_interface = interface
            cls._zidl_tables = tables(interface)

    def __init__(
        self,
        address: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveClient | None = None,
    ) -> None:
        self._address = address
        self._timeout = timeout
        self._heartbeat = heartbeat
        self._limits = limits
        self._curve = curve
        self._tables: Tables | None = type(self)._zidl_tables
        self._server_interface: Interface | None = None
        self._signal_address: str | None = None
        self._signals: dict[str, AsyncSignal[...]] = {}
        self._hub: AsyncSignalHub | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], Any]]] = {}
        self._in_flight: set[int] = set()
        self._sync: Socket | None = None
        self._socket: zmq.asyncio.Socket | None = None
        self._monitor: Monitor | None = None
        self._monitor_socket: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        if self._tables is not None:
            self._make_members(self._tables.interface)

    # --- public surface -----------------------------------------------------------------------------

    @classmethod
    def connect(
        cls,
        address: str,
        *,
        timeout: float | None = DEFAULT_TIMEOUT,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveClient | None = None,
    ) -> Connecting[Self]:
        """Connect and handshake within ``timeout``; ``await`` it, or ``async with`` it to close on exit.

        ``curve`` switches CurveZMQ on, as for the blocking ``Client.connect``.
        """

        async def connect() -> Self:
            client = cls(address, timeout=timeout, heartbeat=heartbeat, limits=limits, curve=curve)
            try:
                await client._handshake()
            except BaseException:
                await client.close()
                raise
            return client

        return Connecting(connect)

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
    ) -> Connecting[Self]:
        """A client for the device registered as ``name`` (``registry=``, ``$ZIDL_REGISTRY`` or the default).

        ``curve`` works as for the blocking ``Client.lookup``. Raises ``DeviceNotFound`` or
        ``RegistryUnavailable``.
        """

        async def connect() -> Self:
            from ._directory import lookup_async

            record = await lookup_async(name, registry=registry, timeout=timeout or DEFAULT_TIMEOUT, curve=curve)
            device_curve = (curve or CurveClient(None)).towards(record.public_key)
            client = cls(record.address, timeout=timeout, heartbeat=heartbeat, limits=limits, curve=device_curve)
            try:
                await client._handshake()
            except BaseException:
                await client.close()
                raise
            return client

        return Connecting(connect)

    @property
    def address(self) -> str:
        return self._address

    @property
    def interface(self) -> Interface:
        """The server's interface description (from the handshake), or this client's before it."""
        if self._server_interface is not None:
            return self._server_interface
        if self._tables is None:
            raise ZidlError("the client has not connected yet")
        return self._tables.interface

    def signal(self, name: str) -> AsyncSignal[...]:
        try:
            return self._signals[name]
        except KeyError:
            raise ZidlError(f"{self._what()} has no signal {name!r}") from None

    async def close(self) -> None:
        """Close the connection; calls in flight end with ``ClientClosed``."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_all(lambda: ClientClosed(f"{self._what()} was closed"), in_flight_only=False)
        if self._hub is not None:
            await self._hub.close()
        if self._monitor_socket is not None:
            self._monitor_socket.close(linger=0)
        if self._monitor is not None:
            self._monitor.close()
        if self._socket is not None:
            self._socket.close(linger=0)
        if self._sync is not None:
            self._sync.close(linger=0)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._address}{' closed' if self._closed else ''}>"

    # --- what generated code calls --------------------------------------------------------------------------

    async def _call(self, name: str, args: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        table = self._table()
        method = table.methods.get(name)
        if method is None:
            raise ZidlError(f"{self._what()} has no method {name!r}")
        values = table.validate_args(name, args)
        result = await self._request("call", name, values, timeout, oneway=method.oneway)
        if method.oneway:
            return None
        return table.results[name].validate_python(result)

    async def _get(self, name: str) -> Any:
        table = self._table()
        if name not in table.values:
            raise ZidlError(f"{self._what()} has no property {name!r}")
        return table.values[name].validate_python(await self._request("get", name, _NOTHING, self._timeout))

    async def _set(self, name: str, value: Any) -> None:
        table = self._table()
        if name not in table.values:
            raise ZidlError(f"{self._what()} has no property {name!r}")
        await self._request("set", name, table.values[name].validate_python(value), self._timeout)

    # --- the connection -------------------------------------------------------------------------------------

    def _table(self) -> Tables:
        if self._tables is None:
            raise ZidlError(f"{self._what()}: not connected yet")
        return self._tables

    def _what(self) -> str:
        name = self._tables.interface.name if self._tables is not None else "device"
        return f"{name} at {self._address}"

    def _make_members(self, interface: Interface) -> None:
        for spec in interface.signals:
            signal: AsyncSignal[...] = AsyncSignal(spec.name, self._signal_hub, lambda: self._timeout)
            self._signals[spec.name] = signal
            if type(self) is not AsyncClient:
                object.__setattr__(self, spec.name, signal)
        if type(self) is not AsyncClient:
            for prop in interface.properties:
                kind = AsyncProperty if prop.writable else AsyncReadOnlyProperty
                object.__setattr__(self, prop.name, kind(self, prop.name))

    def _signal_hub(self) -> AsyncSignalHub:
        if self._closed:
            raise ClientClosed(f"{self._what()} is closed")
        if self._hub is None:
            if self._signal_address is None:
                raise ZidlError(f"{self._what()}: connect before using signals")
            self._hub = AsyncSignalHub(self._signal_address, self._table(), self._what(), self._curve)
        return self._hub

    async def _handshake(self) -> None:
        mine = self._tables.interface if self._tables is not None else None
        reply = await self._request("hello", None, hello_body(mine), self._timeout)
        theirs, self._signal_address = read_hello(reply, mine, self._address)
        self._server_interface = theirs
        if self._tables is None:
            self._tables = tables(theirs)
            self._make_members(theirs)

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

    def _where(self, kind: str, name: str | None) -> str:
        """A request as error messages name it; made only when one is needed."""
        return f"{self._what()}: {kind} {name}" if name else f"{self._what()}: {kind}"

    async def _request(
        self, kind: str, name: str | None, body: Any, timeout: float | None, *, oneway: bool = False
    ) -> Any:
        sync, socket = self._ensure_socket()
        request_id = next(self._ids)
        header: dict[str, Any] = {"v": PROTOCOL, "id": request_id, "k": kind, "n": name}
        if timeout is not None:
            header["t"] = timeout
        frames = encode(header, body)
        reply: asyncio.Future[tuple[dict[str, Any], Any]] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = reply
        sent = False
        try:
            async with asyncio.timeout(timeout):
                try:
                    await self._send(sync, socket, frames, reply)
                except zmq.ZMQError as exc:
                    raise translate(exc, self._where(kind, name)) from exc
                sent = True
                if oneway:
                    return None
                self._in_flight.add(request_id)
                header, result = await reply
        except TimeoutError:
            where = self._where(kind, name)
            if sent:
                raise CallTimeout(f"{where}: no reply within {timeout} s") from None
            raise CallTimeout(f"{where}: {self._address} could not be reached within {timeout} s") from None
        finally:
            self._pending.pop(request_id, None)
            self._in_flight.discard(request_id)
        if header.get("k") == "ok":
            return result
        return _outcome(header, result, self._tables, self._where(kind, name))

    async def _send(
        self,
        sync: Socket,
        socket: zmq.asyncio.Socket,
        frames: list[Any],
        reply: asyncio.Future[tuple[dict[str, Any], Any]],
    ) -> None:
        """Send once connected; a refused handshake (``_watch`` fails ``reply``) ends the wait at once.

        A connected socket takes the message at once: sent on the plain socket, it costs
        no future of zmq.asyncio's (which cost more than the rest of a pipelined call).
        """
        try:
            send_frames(sync, frames, zmq.NOBLOCK)
        except zmq.Again:
            pass  # not connected yet, or at the high-water mark: wait for it
        else:
            self._take_replies(sync)
            return
        sending = asyncio.ensure_future(socket.send_multipart(frames, copy=False))  # a Future already: no task
        if sending.done():
            sending.result()
            return
        try:
            await asyncio.wait((sending, reply), return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not sending.done():
                sending.cancel()
        if not sending.done() or sending.cancelled():
            reply.result()  # raises why the connection was refused
        sending.result()

    async def _read(self, sync: Socket, socket: zmq.asyncio.Socket) -> None:
        """Await a reply, then take every reply already waiting from the plain socket, without a future each."""
        while True:
            try:
                self._resolve(await socket.recv_multipart(copy=False))
                self._take_replies(sync)
            except zmq.ZMQError:
                return

    def _take_replies(self, sync: Socket) -> None:
        """Resolve every reply waiting on the plain socket.

        Also called after each send on it: the socket's file descriptor is edge-triggered,
        and a send may consume the notice that a reply arrived, which zmq.asyncio (not
        having made the send) would never see. Reading until nothing is left re-arms it.
        """
        while readable(sync):
            self._resolve(recv_frames(sync, flags=zmq.NOBLOCK))

    def _resolve(self, frames: list[Any]) -> None:
        try:
            header, body = decode(frames, self._limits)
        except Exception:
            logger.exception("%s: dropped a reply that could not be read", self._what())
            return
        reply = self._pending.get(header.get("id"))  # type: ignore[arg-type]
        if reply is None or reply.done():
            logger.debug("%s: dropped a late reply (id %s)", self._what(), header.get("id"))
            return
        reply.set_result((header, body))

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
            elif event["event"] == zmq.EVENT_DISCONNECTED:
                self._fail_all(
                    lambda: ConnectionLost(f"{self._what()}: the connection was lost during the call"),
                    in_flight_only=True,
                )

    def _fail_all(self, error: Callable[[], Exception], *, in_flight_only: bool) -> None:
        for request_id, reply in list(self._pending.items()):
            if (not in_flight_only or request_id in self._in_flight) and not reply.done():
                reply.set_exception(error())
