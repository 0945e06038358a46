"""The blocking client: calls, property access and signals by name or through a generated client's methods.

Its requests travel as ``BlockingRequests`` sends them, one connection per thread.
Signals run on one thread of the client (``SignalHub``). A client follows its
device: when the signal side loses its server, a thread of the client (the
follower) handshakes again, where the registry now places the device or at the
same address, and the signals move to the signal address the handshake names: a
restarted server binds its publisher anew.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Any, Self

from runtime.client.blocking_requests import BlockingRequests
from runtime.client.blocking_stream import Stream
from runtime.client.core import (
    DEFAULT_TIMEOUT,
    OWN_TIMEOUT,
    REGISTRY_PATIENCE,
    OwnTimeout,
    Retries,
    curve_towards,
    device_patience,
)
from runtime.client.signals import Signal, SignalHub
from runtime.errors import ClientClosed, ZidlError
from runtime.protocol.names import CALL, GET, HELLO, SET, STREAM
from runtime.protocol.wire import DEFAULT_LIMITS, NO_BODY, Limits
from runtime.registry.client import lookup
from runtime.transport.security import CurveClient
from runtime.transport.sockets import DEFAULT_HEARTBEAT, Heartbeat

logger = logging.getLogger(__name__)


class Client(BlockingRequests[Signal[...]]):
    """The base of every generated blocking client, and a client of any device: ``Client.connect(address)``.

    On this base class, ``connect`` and ``lookup`` make a client for whatever the
    server describes in its handshake (``interface``): ``call``, ``get`` and ``set``
    reach its methods and properties by name, ``signal(name)`` its signals. A
    generated ``<Name>Client`` has them as typed methods and attributes too.
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
        self._hub: SignalHub | None = None
        self._lost = threading.Event()
        self._follower: threading.Thread | None = None
        super().__init__(address, timeout, heartbeat, limits, curve)

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

        def find(wait: float) -> tuple[str, CurveClient | None]:
            record = lookup(name, registry=registry, timeout=wait, curve=curve)
            return record.address, curve_towards(curve, record.public_key)

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

    def call(self, method: str, /, *, timeout: float | OwnTimeout | None = OWN_TIMEOUT, **args: Any) -> Any:
        """Call ``method`` with keyword ``args``, validated as a typed call's are (pydantic's ``ValidationError``
        before anything is sent); its result, as a generated client returns it (None for a oneway method, a
        ``Stream`` for a stream).

        ``timeout`` defaults to the method's own, from its IDL; None waits for ever.
        """
        spec = self._method(method)
        wait = spec.timeout if timeout is OWN_TIMEOUT else timeout
        if spec.validate_item is not None:
            return self._stream(method, args, wait)
        return self._call(method, args, wait)

    def get(self, prop: str) -> Any:
        """Read property ``prop``: an enum as its member, a struct as its model."""
        return self._get(prop)

    def set(self, prop: str, value: Any) -> None:
        """Write property ``prop`` (an enum by member or value, a struct as a model or a dict); validated first, and
        the server's ``set_<prop>`` may refuse it."""
        self._set(prop, value)

    def close(self) -> None:
        """Close every socket and the signal thread; calls in flight end with ``ClientClosed``."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            hub, self._hub = self._hub, None
            follower = self._follower
        self._lost.set()  # wakes the follower, which sees the client closed
        self._end_connections()
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
        method = self._methods.get(name)
        if method is None:
            raise self._no_method(name)
        values = method.validate_args(args).__dict__
        if method.oneway:
            self._request(CALL, name, values, timeout, oneway=True, write=method.write)
            return None
        return method.validate_result(self._request(CALL, name, values, timeout, write=method.write))

    def _stream(self, name: str, args: dict[str, Any], timeout: float | None = DEFAULT_TIMEOUT) -> Stream[Any, Any]:
        """Open stream ``name`` with ``args``: its request is sent, its items are read as the stream is iterated."""
        method, values, state = self._new_stream(name, args)
        link, request_id = self._open_stream(name, values, timeout, method.write)
        return Stream(state, link, request_id, self._where(STREAM, name), timeout, self._limits)

    def _get(self, name: str) -> Any:
        """Read property ``name``."""
        value = self._value(name)
        return value.validate_python(self._request(GET, name, NO_BODY, self._timeout))

    def _set(self, name: str, value: Any) -> None:
        """Write property ``name`` (the server's ``set_<name>`` may refuse it)."""
        self._request(SET, name, self._value(name).validate_python(value), self._timeout)

    # --- the connection ---------------------------------------------------------------------------------

    def _new_signal(self, name: str) -> Signal[...]:
        return Signal(name, self._signal_hub, lambda: self._timeout)

    def _members_as_attributes(self) -> bool:
        return type(self) is not Client

    def _signal_hub(self) -> SignalHub:
        with self._lock:
            if self._closed:
                raise ClientClosed(f"{self._what()} is closed")
            if self._hub is None:
                self._hub = self._new_hub(SignalHub, lost=self._signals_lost)
            return self._hub

    def _handshake(self, timeout: float | None) -> None:
        """Exchange descriptions; the signals, if any are connected, move to the signal address the server names."""
        signals = self._greeted(self._request(HELLO, None, self._hello(), timeout))
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

    def _ask_registry(self, tried: str) -> bool:
        """A request could not be sent to ``tried`` in time: True when the registry places the device elsewhere,
        where the client now is."""
        if self._locate is None:
            return False
        address = tried
        with self._or_stay():
            address = self._locate(device_patience(self._timeout))
        if address == tried:
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
            retries = Retries(self._what())
            while True:
                try:
                    self._rejoin()
                except ZidlError as exc:
                    if self._closed:
                        return
                    pause = retries.failed(exc)
                else:
                    retries.succeeded()
                    break
                if self._lost.wait(pause):  # closed, or lost again: try at once
                    self._lost.clear()
                    if self._closed:
                        return

    def _rejoin(self) -> None:
        """Handshake again: where the registry now places the device (found by name), else where it was."""
        wait = device_patience(self._timeout)
        address = self._address
        if self._locate is not None:
            with self._or_last_address():
                address = self._locate(min(wait, REGISTRY_PATIENCE))
        if address != self._address:
            self._retarget(address, wait)
        else:
            self._handshake(wait)
