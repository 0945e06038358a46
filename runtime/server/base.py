"""The server base: what a generated skeleton inherits (property storage and notification, signal emission, serving).

A generated ``CameraServer(Server, interface=INTERFACE)`` declares abstract methods,
annotated properties and signals; this module supplies the behaviour. Serving is
three layers: ``engine`` moves the messages (the sockets and the leader/standby
handoff), ``dispatcher`` says what each means and keeps the table of calls in
flight, ``runners`` run the implementations.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import signal as signals
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

import numpy as np

from runtime.errors import ZidlError
from runtime.protocol.wire import DEFAULT_LIMITS, Limits
from runtime.registry.client import registry_address
from runtime.schema.validation import InterfaceBound, Tables
from runtime.server.dispatcher import Dispatcher
from runtime.server.engine import Engine
from runtime.server.quotas import Usage
from runtime.server.signal import ServerSignal
from runtime.transport.addresses import connectable
from runtime.transport.security import CurveClient, CurveServer
from runtime.transport.sockets import DEFAULT_HEARTBEAT, Heartbeat

logger = logging.getLogger(__name__)

_MISSING: Any = object()
_REGISTER_WAIT = 2.0
"""Seconds ``running()`` waits for the registry to accept the device before going on without it."""


def _differs(old: Any, new: Any) -> bool:
    if old is new:
        return False
    if isinstance(old, np.ndarray) or isinstance(new, np.ndarray):
        return not (isinstance(old, np.ndarray) and isinstance(new, np.ndarray) and np.array_equal(old, new))
    try:
        return bool(old != new)
    except Exception:
        return True


class Server(InterfaceBound, abc.ABC):
    """The base of every generated server skeleton.

    Subclass the generated ``<Name>Server``, implement its methods, then ``serve()``
    (blocking) or ``with server.running(address) as address:`` (background thread).
    Assigning a property (``self.mode = value``) validates, stores and notifies.
    """

    def __init__(self) -> None:
        self._zidl_setup()

    # --- properties and signals ---------------------------------------------------------------

    def _zidl_setup(self) -> None:
        state = self.__dict__
        if "_zidl_lock" in state:
            return
        table = self._zidl_table()
        state["_zidl_lock"] = threading.RLock()
        state["_zidl_engine"] = None
        state["_zidl_dispatcher"] = None
        for name, value in table.defaults.items():
            state.setdefault(name, value)
        for name in table.signals:
            state[name] = ServerSignal(name, self._zidl_emit)

    @classmethod
    def _zidl_table(cls) -> Tables:
        if cls._zidl_tables is None:
            raise TypeError(f"{cls.__name__} has no interface: subclass a generated server class")
        return cls._zidl_tables

    def __getattr__(self, name: str) -> Any:
        # only reached when an attribute is missing: a subclass that skipped Server.__init__
        if name.startswith("__") or "_zidl_lock" in self.__dict__:
            raise AttributeError(name)
        self._zidl_setup()
        return object.__getattribute__(self, name)

    def __setattr__(self, name: str, value: Any) -> None:
        table = type(self)._zidl_tables
        if table is None or name not in table.properties:
            object.__setattr__(self, name, value)
            return
        self._zidl_setup()
        self._zidl_store(name, table.values[name].validate_python(value))

    def _zidl_store(self, name: str, value: Any) -> None:
        """Store an already validated property value and notify its change."""
        spec = self._zidl_table().properties[name]
        with self.__dict__["_zidl_lock"]:
            changed = _differs(self.__dict__.get(name, _MISSING), value)
            self.__dict__[name] = value
            if changed and spec.notify:
                self._zidl_emit(spec.notify, (value,), {})

    def _zidl_emit(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        values = self._zidl_table().validate_signal(name, args, kwargs)
        dispatcher: Dispatcher | None = self.__dict__.get("_zidl_dispatcher")
        if dispatcher is None:
            logger.debug("%s not published: the server is not running", name)
            return
        dispatcher.publish(name, values)

    # --- running ----------------------------------------------------------------------------------

    def serve(
        self,
        address: str,
        *,
        registry: str | None = None,
        name: str | None = None,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveServer | None = None,
        registry_curve: CurveClient | None = None,
        advertise: str | None = None,
        signals_bind: str | None = None,
    ) -> None:
        """Serve on ``address`` until ``stop()``, SIGINT or SIGTERM.

        With ``name`` (or ``registry``) the device registers with the registry at
        ``registry`` (default: ``$ZIDL_REGISTRY``, else ``tcp://127.0.0.1:5555``) under
        ``name`` (default: the interface name in lower case) and stays registered;
        ``advertise`` names the host other computers reach it at (default: the address
        the registry sees it from). ``signals_bind`` is where signals are published
        (default: a free port on ``address``'s host), so that a firewall can allow a
        fixed port. ``curve`` switches CurveZMQ on (requests and
        signals; the registry hands out its public key); ``registry_curve`` reaches a
        registry that has Curve on. Under systemd (``NOTIFY_SOCKET`` set) it reports
        ready once it serves and feeds the watchdog from its own loop.
        """
        engine = self._zidl_start(
            address,
            heartbeat,
            limits,
            self._zidl_registration(registry, name, advertise),
            curve,
            registry_curve,
            signals_bind,
        )
        engine.notify_systemd()
        previous: dict[signals.Signals, Any] = {}
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: FrameType | None) -> None:
                logger.info("signal %d: stopping", signum)
                engine.request_stop()

            for number in (signals.SIGINT, signals.SIGTERM):
                previous[number] = signals.signal(number, on_signal)
        try:
            logger.info("%s serving on %s", self._zidl_table().interface.name, engine.address)
            engine.wait()
        finally:
            for number, handler in previous.items():
                signals.signal(number, handler)
            self._zidl_stop_engine(engine)

    @contextlib.contextmanager
    def running(
        self,
        address: str,
        *,
        registry: str | None = None,
        name: str | None = None,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
        curve: CurveServer | None = None,
        registry_curve: CurveClient | None = None,
        advertise: str | None = None,
        signals_bind: str | None = None,
    ) -> Iterator[str]:
        """Serve in background threads for the duration of the block; yields a connectable address.

        ``registry``, ``name``, ``curve``, ``registry_curve``, ``advertise`` and ``signals_bind`` work as in
        ``serve()``.
        """
        engine = self._zidl_start(
            address,
            heartbeat,
            limits,
            self._zidl_registration(registry, name, advertise),
            curve,
            registry_curve,
            signals_bind,
        )
        try:
            if engine.registration is not None and not engine.registered.wait(_REGISTER_WAIT):
                logger.warning("not registered with %s yet; serving on and retrying", engine.registration.registry_url)
            yield connectable(engine.address)
        finally:
            self._zidl_stop_engine(engine)

    def _zidl_registration(
        self, registry: str | None, name: str | None, advertise: str | None
    ) -> tuple[str, str, str | None] | None:
        if registry is None and name is None:
            return None
        return (
            registry_address(registry),
            name or self._zidl_table().interface.name.lower(),
            advertise,
        )

    def stop(self) -> None:
        """Stop serving (from any thread); ``serve()`` returns."""
        engine: Engine | None = self.__dict__.get("_zidl_engine")
        if engine is not None:
            engine.request_stop()

    @property
    def address(self) -> str | None:
        """The bound address while serving (port 0 resolved), else None."""
        engine: Engine | None = self.__dict__.get("_zidl_engine")
        return engine.address if engine is not None else None

    @property
    def usage(self) -> Usage | None:
        """What the running server holds for its peers now (calls, queues, subscriptions, unread replies), else None.

        Each count is bounded by the ``limits=`` it serves with, and falls back once the peers leave.
        """
        dispatcher: Dispatcher | None = self.__dict__.get("_zidl_dispatcher")
        return dispatcher.usage() if dispatcher is not None else None

    @property
    def registered_name(self) -> str | None:
        """The name the registry accepted (``cam-1`` when ``cam`` was taken), else None."""
        engine: Engine | None = self.__dict__.get("_zidl_engine")
        if engine is None or engine.registration is None:
            return None
        return engine.registration.accepted_name

    def _zidl_start(
        self,
        address: str,
        heartbeat: Heartbeat,
        limits: Limits,
        register: tuple[str, str, str | None] | None = None,
        curve: CurveServer | None = None,
        registry_curve: CurveClient | None = None,
        signals_bind: str | None = None,
    ) -> Engine:
        self._zidl_setup()
        table = self._zidl_table()
        with self.__dict__["_zidl_lock"]:
            if self.__dict__["_zidl_engine"] is not None:
                raise ZidlError(f"{type(self).__name__} is already serving on {self.address}")
            engine = Engine(table.interface, address, heartbeat, curve, limits, signals_bind)
            dispatcher = Dispatcher(self, table, engine, limits, self._zidl_store)
            if register is not None:
                engine.register(*register, curve=registry_curve)
            self.__dict__["_zidl_engine"] = engine
            self.__dict__["_zidl_dispatcher"] = dispatcher
        engine.start(dispatcher)
        return engine

    def _zidl_stop_engine(self, engine: Engine) -> None:
        engine.close()
        with self.__dict__["_zidl_lock"]:
            if self.__dict__["_zidl_engine"] is engine:
                self.__dict__["_zidl_engine"] = None
                self.__dict__["_zidl_dispatcher"] = None
