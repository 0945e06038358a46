"""The asyncio client: any number of concurrent awaits, by name or through a generated client's methods.

Its requests travel as ``AsyncRequests`` sends them, over one connection on the
event loop. Properties of a generated client are ``AsyncProperty`` objects
(``await camera.mode.get()``), signals ``AsyncSignal``. It follows its device as
the blocking client does: when the signals lose their server, a follower task
handshakes again and the signals move with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from types import TracebackType
from typing import Any, Self

from runtime.client.aio_requests import AsyncRequests
from runtime.client.aio_signals import AsyncSignal, AsyncSignalHub
from runtime.client.aio_stream import AsyncStream, Inbox
from runtime.client.awaitables import AsyncProperty, AsyncReadOnlyProperty, Connecting
from runtime.client.core import (
    DEFAULT_TIMEOUT,
    OWN_TIMEOUT,
    REGISTRY_PATIENCE,
    OwnTimeout,
    Retries,
    curve_towards,
    device_patience,
)
from runtime.errors import ClientClosed, ZidlError
from runtime.protocol.names import CALL, GET, HELLO, SET, STREAM
from runtime.protocol.wire import DEFAULT_LIMITS, NO_BODY, Limits
from runtime.registry.client import lookup_async
from runtime.schema.interface import Interface
from runtime.transport.security import CurveClient
from runtime.transport.sockets import DEFAULT_HEARTBEAT, Heartbeat

logger = logging.getLogger(__name__)


class AsyncClient(AsyncRequests[AsyncSignal[...]]):
    """The base of every generated asyncio client, and a client of any device: ``await AsyncClient.connect(address)``.

    On this base class, ``await device.call(name, **args)``, ``await device.get(prop)``,
    ``await device.set(prop, value)`` and ``device.signal(name)`` reach whatever the
    server describes in its handshake, as ``Client``'s do.
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
        self._hub: AsyncSignalHub | None = None
        self._moving = asyncio.Lock()
        """Held while the client asks the registry and moves: concurrent requests move it once."""
        self._lost = asyncio.Event()
        self._follower: asyncio.Task[None] | None = None
        super().__init__(address, timeout, heartbeat, limits, curve)

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
            async def find(wait: float) -> tuple[str, CurveClient | None]:
                record = await lookup_async(name, registry=registry, timeout=wait, curve=curve)
                return record.address, curve_towards(curve, record.public_key)

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

    async def call(self, method: str, /, *, timeout: float | OwnTimeout | None = OWN_TIMEOUT, **args: Any) -> Any:
        """Call ``method`` with keyword ``args``, validated as a typed call's are (pydantic's ``ValidationError``
        before anything is sent); its result, as a generated client returns it (None for a oneway method, an
        ``AsyncStream`` for a stream, to use with ``async with`` or ``async for``).

        ``timeout`` defaults to the method's own, from its IDL; None waits for ever.
        """
        spec = self._method(method)
        wait = spec.timeout if timeout is OWN_TIMEOUT else timeout
        if spec.validate_item is not None:
            return self._stream(method, args, wait)
        return await self._call(method, args, wait)

    async def get(self, prop: str) -> Any:
        """Read property ``prop``: an enum as its member, a struct as its model."""
        return await self._get(prop)

    async def set(self, prop: str, value: Any) -> None:
        """Write property ``prop`` (an enum by member or value, a struct as a model or a dict); validated first, and
        the server's ``set_<prop>`` may refuse it."""
        await self._set(prop, value)

    async def close(self) -> None:
        """Close the connection; calls in flight end with ``ClientClosed``."""
        if self._closed:
            return
        self._closed = True
        if self._follower is not None:
            self._follower.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._follower
        await self._end_requests()
        if self._hub is not None:
            await self._hub.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        await self.close()

    # --- what generated code calls --------------------------------------------------------------------------

    async def _call(self, name: str, args: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT) -> Any:
        method = self._methods.get(name)
        if method is None:
            raise self._no_method(name)
        values = method.validate_args(args).__dict__
        if method.oneway:
            await self._request(CALL, name, values, timeout, oneway=True, write=method.write)
            return None
        return method.validate_result(await self._request(CALL, name, values, timeout, write=method.write))

    def _stream(
        self, name: str, args: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT
    ) -> AsyncStream[Any, Any]:
        """Stream ``name`` with ``args``, validated now; its request goes when it is first used."""
        method, values, state = self._new_stream(name, args)
        request_id = next(self._ids)

        async def open_(inbox: Inbox) -> None:
            await self._open_stream(request_id, name, values, timeout, method.write, inbox)

        return AsyncStream(state, self, request_id, self._where(STREAM, name), timeout, open_)

    async def _get(self, name: str) -> Any:
        value = self._value(name)
        return value.validate_python(await self._request(GET, name, NO_BODY, self._timeout))

    async def _set(self, name: str, value: Any) -> None:
        await self._request(SET, name, self._value(name).validate_python(value), self._timeout)

    # --- the connection -------------------------------------------------------------------------------------

    def _new_signal(self, name: str) -> AsyncSignal[...]:
        return AsyncSignal(name, self._signal_hub, lambda: self._timeout)

    def _members_as_attributes(self) -> bool:
        return type(self) is not AsyncClient

    def _make_members(self, interface: Interface) -> None:
        """The signals, and for a generated client the property objects (``await client.mode.get()``)."""
        super()._make_members(interface)
        if self._members_as_attributes():
            for prop in interface.properties:
                kind = AsyncProperty if prop.writable else AsyncReadOnlyProperty
                object.__setattr__(self, prop.name, kind(self, prop.name))

    def _signal_hub(self) -> AsyncSignalHub:
        if self._closed:
            raise ClientClosed(f"{self._what()} is closed")
        if self._hub is None:
            self._hub = self._new_hub(AsyncSignalHub, lost=self._signals_lost)
        return self._hub

    async def _handshake(self, timeout: float | None) -> None:
        """Exchange descriptions; the signals, if any are connected, move to the signal address the server names."""
        self._signal_address = self._greeted(await self._request(HELLO, None, self._hello(), timeout))
        if self._hub is not None:
            self._hub.move(self._signal_address, self._curve)

    async def _retarget(self, address: str, timeout: float | None) -> None:
        """Move to a new address (a device found again by name); the calls in flight there are lost."""
        logger.info("%s moved to %s", self._what(), address)
        self._drop_connection(f"the device moved to {address} during the call")
        self._address = address
        await self._handshake(timeout)

    async def _ask_registry(self, tried: str) -> None:
        """A request could not be sent to ``tried`` in time: move if the registry places the device elsewhere."""
        async with self._moving:
            if self._address != tried or self._locate is None:
                return  # another request moved the client meanwhile
            address = tried
            with self._or_stay():
                address = await self._locate(device_patience(self._timeout))
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
            retries = Retries(self._what())
            while True:
                try:
                    await self._rejoin()
                except ZidlError as exc:
                    pause = retries.failed(exc)
                else:
                    retries.succeeded()
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._lost.wait(), pause)  # lost again: try at once
                self._lost.clear()

    async def _rejoin(self) -> None:
        """Handshake again: where the registry now places the device (found by name), else where it was."""
        wait = device_patience(self._timeout)
        if self._locate is not None:
            async with self._moving:
                address = self._address
                with self._or_last_address():
                    address = await self._locate(min(wait, REGISTRY_PATIENCE))
                if address != self._address:
                    await self._retarget(address, wait)
                    return
        await self._handshake(wait)
