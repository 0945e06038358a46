"""The asyncio client base: any number of concurrent awaits over one connection.

One DEALER socket belongs to the event loop. Each request gets a future keyed by
its id; a reader task resolves them as replies arrive, and a monitor task fails the
calls in flight with ``ConnectionLost`` when the connection drops. The deadlines of
the calls in flight share one loop timer (``Deadlines``) that fails their futures;
a late reply finds no future and is dropped. Properties are ``AsyncProperty`` objects (``await camera.mode.get()``),
signals ``AsyncSignal``.

It follows its device as the blocking client does: a request that cannot be sent
within the client's timeout asks the registry again (a client found by name), and
only a request never sent goes to the new address; when the signals lose their
server, a follower task handshakes again and the signals move with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
from collections.abc import Awaitable, Callable, Generator
from types import TracebackType
from typing import Any, Generic, Self, TypeVar

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from runtime.client.blocking import (
    DEFAULT_TIMEOUT,
    FIRST_RETRY,
    LAST_RETRY,
    REGISTRY_PATIENCE,
    _outcome,
    device_patience,
    hello_body,
    read_hello,
    retry_level,
)
from runtime.client.core import ClientBase
from runtime.client.deadlines import Deadlines
from runtime.client.signals import AsyncSignal, AsyncSignalHub
from runtime.errors import (
    AuthenticationFailed,
    CallTimeout,
    ClientClosed,
    ConnectionLost,
    RegistryUnavailable,
    ZidlError,
)
from runtime.protocol.names import VERSION as PROTOCOL
from runtime.protocol.wire import DEFAULT_LIMITS, NO_BODY, WRITERS, Limits, Writer, decode, encode
from runtime.schema.interface import Interface
from runtime.transport.dealer import make_dealer
from runtime.transport.monitor import Monitor, handshake_failure
from runtime.transport.security import CurveClient
from runtime.transport.sockets import (
    DEFAULT_HEARTBEAT,
    NOBLOCK,
    Heartbeat,
    Socket,
    readable,
    recv_frames,
    send_frames,
    translate,
)

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


class AsyncClient(ClientBase[AsyncSignal[...]]):
    """The base of every generated asyncio client; ``await Async<Name>Client.connect(address)``."""

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
        self._hub: AsyncSignalHub | None = None
        self._pending: dict[int, asyncio.Future[tuple[dict[str, Any], Any]]] = {}
        self._unsent: set[int] = set()
        """The requests in ``_pending`` still waiting to be sent; the others are in flight."""
        self._deadlines = Deadlines(self._expire, self._pending)
        self._sync: Socket | None = None
        self._looking = False
        """A look for replies is due in this turn of the loop (``_look_for_replies``)."""
        self._socket: zmq.asyncio.Socket | None = None
        self._monitor: Monitor | None = None
        self._monitor_socket: zmq.asyncio.Socket | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._locate: Callable[[float], Awaitable[str]] | None = None
        """Asks the registry where the device is now (a client found by name), given how long to wait."""
        self._moving = asyncio.Lock()
        """Held while the client asks the registry and moves: concurrent requests move it once."""
        self._lost = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
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
                await client._handshake(timeout)
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

        It follows the device as the blocking ``Client.lookup`` does, signals included.
        ``curve`` works as for ``Client.lookup``. Raises ``DeviceNotFound`` or ``RegistryUnavailable``.
        """

        async def connect() -> Self:
            from runtime.registry.client import lookup_async

            async def find(wait: float) -> tuple[str, CurveClient | None]:
                record = await lookup_async(name, registry=registry, timeout=wait, curve=curve)
                return record.address, (curve or CurveClient(None)).towards(record.public_key)

            address, device_curve = await find(timeout or DEFAULT_TIMEOUT)
            client = cls(address, timeout=timeout, heartbeat=heartbeat, limits=limits, curve=device_curve)

            async def locate(wait: float) -> str:
                address, client._curve = await find(wait)
                return address

            client._locate = locate
            try:
                await client._handshake(timeout)
            except BaseException:
                await client.close()
                raise
            return client

        return Connecting(connect)

    async def close(self) -> None:
        """Close the connection; calls in flight end with ``ClientClosed``."""
        if self._closed:
            return
        self._closed = True
        tasks = self._tasks if self._follower is None else [*self._tasks, self._follower]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._fail_all(lambda: ClientClosed(f"{self._what()} was closed"), in_flight_only=False)
        self._deadlines.close()
        if self._hub is not None:
            await self._hub.close()
        self._close_socket()

    def _close_socket(self) -> None:
        """Close the DEALER and its monitor (``close()``, or a move to a new address)."""
        for each in (self._monitor_socket, self._socket):
            if each is not None:
                each.close(linger=0)
        if self._monitor is not None:
            self._monitor.close()
        if self._sync is not None:
            self._sync.close(linger=0)
        self._monitor_socket = self._socket = self._monitor = self._sync = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # --- what generated code calls --------------------------------------------------------------------------

    async def _call(self, name: str, args: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        plan = self._calls.get(name)
        if plan is None:
            raise self._no_method(name)
        oneway = plan.spec.oneway
        values = plan.validate_args(args).__dict__
        result = await self._request("call", name, values, timeout, oneway=oneway, write=WRITERS[plan.args_shape])
        return None if oneway else plan.validate_result(result)

    async def _get(self, name: str) -> Any:
        value = self._value(name)
        return value.validate_python(await self._request("get", name, NO_BODY, self._timeout))

    async def _set(self, name: str, value: Any) -> None:
        await self._request("set", name, self._value(name).validate_python(value), self._timeout)

    # --- the connection -------------------------------------------------------------------------------------

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
            self._hub = self._new_hub(AsyncSignalHub, patience=device_patience(self._timeout), lost=self._signals_lost)
        return self._hub

    async def _handshake(self, timeout: float | None) -> None:
        """Exchange descriptions; the signals, if any are connected, move to the signal address the server names."""
        mine = self._tables.interface if self._tables is not None else None
        reply = await self._request("hello", None, hello_body(mine), timeout)
        theirs, self._signal_address = read_hello(reply, mine, self._address)
        if self._adopt(theirs):
            self._make_members(theirs)
        if self._hub is not None:
            self._hub.move(self._signal_address, self._curve)

    async def _retarget(self, address: str, timeout: float | None) -> None:
        """Move to a new address (a device found again by name); the calls in flight there are lost."""
        logger.info("%s moved to %s", self._what(), address)
        for task in self._tasks:
            task.cancel()
        self._fail_all(
            lambda: ConnectionLost(f"{self._what()}: the device moved to {address} during the call"),
            in_flight_only=True,
        )
        self._close_socket()
        self._address = address
        await self._handshake(timeout)

    async def _ask_registry(self, tried: str) -> None:
        """A request could not be sent to ``tried`` in time: move if the registry places the device elsewhere."""
        async with self._moving:
            if self._address != tried or self._locate is None:
                return  # another request moved the client meanwhile
            try:
                address = await self._locate(device_patience(self._timeout))
            except ZidlError as exc:
                logger.info("%s: could not look the device up again: %s", self._what(), exc)
                return
            if address != tried:
                await self._retarget(address, self._timeout)

    # --- following the device when its signals are lost ---------------------------------------------

    def _signals_lost(self) -> None:
        """Called by the signal hub on the loop: wake the follower task (started on first need)."""
        if self._closed:
            return
        if self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow())
        self._lost.set()

    async def _follow(self) -> None:
        """The follower: after each loss of signals, find the device again, until the client closes."""
        while True:
            await self._lost.wait()
            self._lost.clear()
            delay = FIRST_RETRY
            for attempt in itertools.count(1):
                try:
                    await self._rejoin()
                except ZidlError as exc:
                    level = retry_level(attempt)
                    logger.log(level, "%s: the device is still away (attempt %d): %s", self._what(), attempt, exc)
                else:
                    logger.info("%s: found the device again", self._what())
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), delay)  # lost again: try at once
                self._lost.clear()
                delay = min(2 * delay, LAST_RETRY)

    async def _rejoin(self) -> None:
        """Handshake again: where the registry now places the device (found by name), else where it was.

        A registry that does not answer does not stop a try at the old address (the
        device may have restarted there); a device the registry does not know is not
        back yet.
        """
        wait = device_patience(self._timeout)
        if self._locate is not None:
            async with self._moving:
                try:
                    address = await self._locate(min(wait, REGISTRY_PATIENCE))
                except RegistryUnavailable as exc:
                    logger.info("%s: %s; trying the last address", self._what(), exc)
                else:
                    if address != self._address:
                        await self._retarget(address, wait)
                        return
        await self._handshake(wait)

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
        ``CallTimeout``: an ``asyncio.timeout()`` around every await cost more than the
        rest of a pipelined call. A late reply then finds no future and is dropped.
        """
        sync = self._ensure_socket()[0]
        request_id = next(self._ids)
        header: dict[str, Any] = {"v": PROTOCOL, "id": request_id, "k": kind, "n": name}
        if timeout is not None:
            header["t"] = timeout
        frames = write(header, body)
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        reply: asyncio.Future[tuple[dict[str, Any], Any]] = loop.create_future()
        self._pending[request_id] = reply
        try:
            try:
                send_frames(sync, frames, NOBLOCK)
            except zmq.Again:  # not connected yet, or at the high-water mark
                self._unsent.add(request_id)
                try:
                    await self._send_by(deadline, frames, reply, kind, name, timeout)
                finally:
                    self._unsent.discard(request_id)
            except zmq.ZMQError as exc:
                raise translate(exc, self._where(kind, name)) from exc
            else:
                self._look_for_replies(loop)
            if oneway:
                return None
            if deadline is not None:
                self._deadlines.add(loop, deadline, request_id, kind, name, timeout)
            header, result = await reply
        finally:
            del self._pending[request_id]
        if header.get("k") == "ok":
            return result
        return _outcome(header, result, self._tables, self._where(kind, name))

    def _expire(self, request_id: int, kind: str, name: str | None, timeout: float | None) -> None:
        """A reply's deadline passed: the caller gets ``CallTimeout`` and the client stays usable."""
        reply = self._pending.get(request_id)
        if reply is not None and not reply.done():
            reply.set_exception(CallTimeout(f"{self._where(kind, name)}: no reply within {timeout} s"))

    async def _send_by(
        self,
        deadline: float | None,
        frames: list[Any],
        reply: asyncio.Future[tuple[dict[str, Any], Any]],
        kind: str,
        name: str | None,
        timeout: float | None,
    ) -> None:
        """Send a request the socket could not take at once, giving up at ``deadline``."""
        try:
            async with asyncio.timeout_at(deadline):
                await self._send_when_connected(frames, reply, kind)
        except TimeoutError:
            where = self._where(kind, name)
            raise CallTimeout(f"{where}: {self._address} could not be reached within {timeout} s") from None
        except zmq.ZMQError as exc:
            raise translate(exc, self._where(kind, name)) from exc

    async def _send_when_connected(
        self, frames: list[Any], reply: asyncio.Future[tuple[dict[str, Any], Any]], kind: str
    ) -> None:
        """Wait to send; a refused handshake (``_watch`` fails ``reply``) ends the wait at once.

        A client found by name asks the registry again after each ``timeout`` of the
        client's without sending, and sends to where the device is now. A send still
        waiting is cancelled, so it never reaches the old address: the request is sent once.
        """
        loop = asyncio.get_running_loop()
        follow = self._locate is not None and kind != "hello"
        ask_again = loop.time() + device_patience(self._timeout)
        while True:
            tried = self._address
            socket = self._ensure_socket()[1]
            sending = asyncio.ensure_future(socket.send_multipart(frames, copy=False))  # a Future already: no task
            try:
                wait = max(0.0, ask_again - loop.time()) if follow else None
                await asyncio.wait((sending, reply), timeout=wait, return_when=asyncio.FIRST_COMPLETED)
            finally:
                if not sending.done():
                    sending.cancel()
            if not sending.cancelled():
                sending.result()
                return
            if reply.done():
                reply.result()  # raises why the connection was refused
            if follow and tried == self._address and loop.time() >= ask_again:
                await self._ask_registry(tried)
                ask_again = loop.time() + device_patience(self._timeout)

    async def _read(self, sync: Socket, socket: zmq.asyncio.Socket) -> None:
        """Await a reply, then take every reply already waiting from the plain socket, without a future each."""
        while True:
            try:
                self._resolve(await socket.recv_multipart(copy=False))
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
        self._looking = False
        if self._sync is not None:  # else closed (or moving) since
            self._take_replies(self._sync)

    def _take_replies(self, sync: Socket) -> None:
        """Resolve every reply waiting on the plain socket."""
        while readable(sync):
            self._resolve(recv_frames(sync, flags=NOBLOCK))

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
            if (not in_flight_only or request_id not in self._unsent) and not reply.done():
                reply.set_exception(error())
