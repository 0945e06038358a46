"""The server base: property storage, signal emission, and the engine that serves requests.

A generated ``CameraServer(Server, interface=INTERFACE)`` declares abstract methods,
annotated properties and signals; this module supplies the behaviour.

The engine has one I/O thread that owns the ROUTER (requests) and the XPUB
(signals). It answers handshakes and property reads itself; method calls go in
arrival order to one worker thread, ``concurrent`` methods and property writes to
a small pool. Replies and emissions made on other threads come back to the I/O
thread through a queue and a ``Waker``; no other thread touches its sockets.
Methods and properties are found in tables built from the interface description,
never by ``getattr`` of a name that came off the wire.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import os
import queue
import signal as signals
import threading
import time
import traceback as tb
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import zmq
from pydantic import ValidationError

from ._errors import ProtocolError, ZidlError, describe_exception, describe_protocol, describe_validation
from ._interface import Interface
from ._signals import WELCOME, ServerSignal, topic
from ._transport import (
    DEFAULT_HEARTBEAT,
    Heartbeat,
    Waker,
    bind,
    connectable,
    make_socket,
    recv_frames,
    send_frames,
    signal_address,
    zmq_errors,
)
from ._validation import Tables, tables
from ._wire import DEFAULT_LIMITS, PROTOCOL, Limits, check_limits, decode_body, decode_header, encode

if TYPE_CHECKING:
    from ._registration import Registration

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


class Server(abc.ABC):  # noqa: B024 - the generated subclasses declare the abstract methods
    """The base of every generated server skeleton.

    Subclass the generated ``<Name>Server``, implement its methods, then ``serve()``
    (blocking) or ``with server.running(address) as address:`` (background thread).
    Assigning a property (``self.mode = value``) validates, stores and notifies.
    """

    _zidl_interface: ClassVar[Interface | None] = None
    _zidl_tables: ClassVar[Tables | None] = None

    def __init_subclass__(cls, *, interface: Interface | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if interface is not None:
            cls._zidl_interface = interface
            cls._zidl_tables = tables(interface)

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
        value = table.values[name].validate_python(value)
        spec = table.properties[name]
        with self.__dict__["_zidl_lock"]:
            changed = _differs(self.__dict__.get(name, _MISSING), value)
            self.__dict__[name] = value
            if changed and spec.notify:
                self._zidl_emit(spec.notify, (value,), {})

    def _zidl_emit(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        values = self._zidl_table().validate_signal(name, args, kwargs)
        engine: _Engine | None = self.__dict__.get("_zidl_engine")
        if engine is None:
            logger.debug("%s not published: the server is not running", name)
            return
        engine.publish(name, values)

    # --- running ----------------------------------------------------------------------------------

    def serve(
        self,
        address: str,
        *,
        registry: str | None = None,
        name: str | None = None,
        heartbeat: Heartbeat = DEFAULT_HEARTBEAT,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        """Serve on ``address`` until ``stop()``, SIGINT or SIGTERM.

        With ``name`` (or ``registry``) the device registers with the registry at
        ``registry`` (default: ``$ZIDL_REGISTRY``, else ``tcp://127.0.0.1:5555``) under
        ``name`` (default: the interface name in lower case) and stays registered.
        """
        engine = self._zidl_start(address, heartbeat, limits, self._zidl_registration(registry, name))
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
    ) -> Iterator[str]:
        """Serve in background threads for the duration of the block; yields a connectable address.

        ``registry`` and ``name`` register the device as ``serve()`` does.
        """
        engine = self._zidl_start(address, heartbeat, limits, self._zidl_registration(registry, name))
        try:
            if engine.registration is not None and not engine.registered.wait(_REGISTER_WAIT):
                logger.warning("not registered with %s yet; serving on and retrying", engine.registration.registry_url)
            yield connectable(engine.address)
        finally:
            self._zidl_stop_engine(engine)

    def _zidl_registration(self, registry: str | None, name: str | None) -> tuple[str, str] | None:
        if registry is None and name is None:
            return None
        from ._registry import DEFAULT_REGISTRY

        return (
            registry or os.environ.get("ZIDL_REGISTRY") or DEFAULT_REGISTRY,
            name or self._zidl_table().interface.name.lower(),
        )

    def stop(self) -> None:
        """Stop serving (from any thread); ``serve()`` returns."""
        engine: _Engine | None = self.__dict__.get("_zidl_engine")
        if engine is not None:
            engine.request_stop()

    @property
    def address(self) -> str | None:
        """The bound address while serving (port 0 resolved), else None."""
        engine: _Engine | None = self.__dict__.get("_zidl_engine")
        return engine.address if engine is not None else None

    def _zidl_start(
        self, address: str, heartbeat: Heartbeat, limits: Limits, register: tuple[str, str] | None = None
    ) -> _Engine:
        self._zidl_setup()
        with self.__dict__["_zidl_lock"]:
            if self.__dict__["_zidl_engine"] is not None:
                raise ZidlError(f"{type(self).__name__} is already serving on {self.address}")
            engine = _Engine(self, address, heartbeat, limits)
            if register is not None:
                engine.register(*register)
            self.__dict__["_zidl_engine"] = engine
        engine.start()
        return engine

    def _zidl_stop_engine(self, engine: _Engine) -> None:
        engine.close()
        with self.__dict__["_zidl_lock"]:
            if self.__dict__["_zidl_engine"] is engine:
                self.__dict__["_zidl_engine"] = None


# --- the engine ---------------------------------------------------------------------------------


class _Engine:
    """The sockets and threads of one running server."""

    def __init__(self, server: Server, address: str, heartbeat: Heartbeat, limits: Limits) -> None:
        self.server = server
        self.table = server._zidl_table()
        self.interface = self.table.interface
        self.limits = limits
        self.router = make_socket(zmq.ROUTER, heartbeat)
        self.xpub = make_socket(zmq.XPUB)
        try:
            with zmq_errors(f"serving on {address}"):
                self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
                self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
            self.address = bind(self.router, address)
            self.pub_address = bind(self.xpub, signal_address(self.address))
        except BaseException:
            self.router.close(linger=0)
            self.xpub.close(linger=0)
            raise
        # what the wire may reach: built from the description, never from a received name
        self.methods = {m.name: (m, getattr(server, m.name)) for m in self.interface.methods}
        self.setters = {p.name: getattr(server, f"set_{p.name}", None) for p in self.interface.properties if p.writable}
        self.hello = {"interface": self.interface.to_dict(), "signals": self.pub_address, "protocol": PROTOCOL}
        self.outbox: queue.SimpleQueue[tuple[bytes | None, list[Any]]] = queue.SimpleQueue()
        self.waker = Waker()
        self.serial: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="zidl-pool")
        self.sequence: dict[str, int] = {}
        self.publish_lock = threading.Lock()
        self.stopping = threading.Event()
        self.stopped = threading.Event()
        self.registration: Registration | None = None
        self.registered = threading.Event()
        self.io = threading.Thread(target=self._io, name="zidl-io", daemon=True)
        self.worker = threading.Thread(target=self._work, name="zidl-worker", daemon=True)

    def register(self, registry: str, name: str) -> None:
        """Keep the device registered as ``name`` while serving (driven by the I/O thread)."""
        from ._registration import Registration

        self.registration = Registration(
            registry,
            name,
            self.interface.name,
            self.interface.version,
            self.interface.hash,
            self.address,
            on_accepted=lambda accepted: self.registered.set(),
        )

    def start(self) -> None:
        self.worker.start()
        self.io.start()

    def request_stop(self) -> None:
        self.stopping.set()
        self.waker.wake()

    def wait(self) -> None:
        while not self.stopping.wait(0.5):
            pass

    def close(self) -> None:
        self.request_stop()
        if self.io is not threading.current_thread():
            self.io.join()
        self.serial.put(None)
        if self.worker is not threading.current_thread():
            self.worker.join()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.waker.close()

    # --- the I/O thread ---------------------------------------------------------------------------

    def _io(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        poller.register(self.xpub, zmq.POLLIN)
        poller.register(self.waker.fileno(), zmq.POLLIN)
        registration = self.registration
        if registration is not None:
            poller.register(registration.socket, zmq.POLLIN)
        try:
            while not self.stopping.is_set():
                wait = None if registration is None else int(min(registration.tick(), 3600.0) * 1000) + 1
                ready = dict(poller.poll(wait))
                try:
                    if registration is not None and registration.socket in ready:
                        registration.handle_readable()
                    if self.waker.fileno() in ready:
                        self.waker.drain()
                    if self.router in ready:
                        self._requests()
                    if self.xpub in ready:
                        self._subscriptions()
                    self._flush()
                except zmq.ContextTerminated:
                    raise
                except Exception:  # one bad message never stops the server
                    logger.exception("the I/O thread of %s met an error; serving on", self.interface.name)
        except Exception:
            logger.exception("the I/O thread of %s failed", self.interface.name)
        finally:
            self.stopping.set()
            if registration is not None:
                registration.close()
            self.router.close(linger=0)
            self.xpub.close(linger=0)
            self.stopped.set()

    def _flush(self) -> None:
        while True:
            try:
                identity, frames = self.outbox.get_nowait()
            except queue.Empty:
                return
            try:
                if identity is None:
                    send_frames(self.xpub, frames, zmq.NOBLOCK)
                else:
                    send_frames(self.router, [identity, *frames], zmq.NOBLOCK)
            except zmq.Again:
                logger.warning("dropped a message: the peer is not reading (high-water mark)")
            except zmq.ZMQError as exc:
                logger.warning("could not send a message: %s", exc)

    def _requests(self) -> None:
        for _ in range(100):  # then let the outbox and the publisher have a turn
            try:
                frames = recv_frames(self.router, copied=2, flags=zmq.NOBLOCK)
            except zmq.Again:
                return
            try:
                self._request(frames)
            except Exception:
                logger.exception("a request could not be handled")

    def _reply(
        self, identity: bytes, request_id: Any, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        """Queue a reply from any thread; the I/O thread sends it."""
        frames = self._reply_frames(request_id, result, error)
        self.outbox.put((identity, frames))
        if threading.current_thread() is not self.io:
            self.waker.wake()

    def _reply_frames(self, request_id: Any, result: Any, error: dict[str, Any] | None) -> list[Any]:
        if error is not None:
            try:
                return encode({"v": PROTOCOL, "id": request_id, "k": "err"}, error)
            except (TypeError, ValueError) as exc:
                error = {
                    "kind": "remote",
                    "type": error.get("type", "Exception"),
                    "message": f"{error.get('message')} ({exc})",
                }
                return encode({"v": PROTOCOL, "id": request_id, "k": "err"}, error)
        try:
            return encode({"v": PROTOCOL, "id": request_id, "k": "ok"}, result)
        except (TypeError, ValueError) as exc:
            logger.error("a result could not be sent: %s", exc)
            error = {"kind": "remote", "type": "SerializationError", "message": f"the result could not be sent: {exc}"}
            return encode({"v": PROTOCOL, "id": request_id, "k": "err"}, error)

    def _request(self, frames: list[Any]) -> None:
        identity = frames[0]
        if len(frames) < 2:
            return
        request_id: Any = None
        try:
            check_limits(frames[1:], self.limits)
            header = decode_header(frames[1])
            request_id = header.get("id")
            body = decode_body(header, frames[1:])
        except ProtocolError as exc:
            self._reply(identity, request_id, error=describe_protocol(str(exc)))
            return
        kind = header.get("k")
        name = header.get("n")
        if kind == "call":
            self._call(identity, request_id, name, body, header.get("t"))
        elif kind == "get":
            self._get(identity, request_id, name)
        elif kind == "set":
            self._set(identity, request_id, name, body)
        elif kind == "hello":
            self._reply(identity, request_id, result=self.hello)
        else:
            self._reply(identity, request_id, error=describe_protocol(f"unknown request kind {kind!r}"))

    def _call(self, identity: bytes, request_id: Any, name: Any, args: Any, timeout: Any) -> None:
        entry = self.methods.get(name) if isinstance(name, str) else None
        if entry is None:
            self._reply(identity, request_id, error=describe_protocol(f"{self.interface.name} has no method {name!r}"))
            return
        if not isinstance(args, dict):
            self._reply(identity, request_id, error=describe_protocol(f"the arguments of {name} are not an object"))
            return
        spec, implementation = entry
        deadline = time.monotonic() + timeout if isinstance(timeout, int | float) and timeout >= 0 else None

        def run() -> None:
            self._run_call(identity, request_id, spec.name, spec.oneway, implementation, args, deadline)

        if spec.concurrent:
            self.pool.submit(run)
        else:
            self.serial.put(run)

    def _get(self, identity: bytes, request_id: Any, name: Any) -> None:
        if not isinstance(name, str) or name not in self.table.properties:
            self._reply(
                identity, request_id, error=describe_protocol(f"{self.interface.name} has no property {name!r}")
            )
            return
        self._reply(identity, request_id, result=self.server.__dict__.get(name))

    def _set(self, identity: bytes, request_id: Any, name: Any, value: Any) -> None:
        if not isinstance(name, str) or name not in self.table.properties:
            self._reply(
                identity, request_id, error=describe_protocol(f"{self.interface.name} has no property {name!r}")
            )
            return
        if name not in self.setters:
            self._reply(identity, request_id, error=describe_protocol(f"property {name} is read-only"))
            return
        self.pool.submit(self._run_set, identity, request_id, name, value)

    def _subscriptions(self) -> None:
        while True:
            try:
                message = self.xpub.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if message[:1] == b"\x01" and message[1:].startswith(WELCOME):
                send_frames(self.xpub, [message[1:], *encode({"v": PROTOCOL, "k": "welcome"})], zmq.NOBLOCK)

    # --- other threads --------------------------------------------------------------------------

    def publish(self, name: str, values: list[Any]) -> None:
        """Queue an emission from any thread; numbered in the order queued."""
        with self.publish_lock:
            seq = self.sequence.get(name, 0) + 1
            self.sequence[name] = seq
            frames = encode({"v": PROTOCOL, "k": "sig", "n": name, "s": seq}, values)
            self.outbox.put((None, [topic(name), *frames]))
        if threading.current_thread() is not self.io:
            self.waker.wake()

    def _work(self) -> None:
        while True:
            job = self.serial.get()
            if job is None:
                return
            job()

    def _run_call(
        self,
        identity: bytes,
        request_id: Any,
        name: str,
        oneway: bool,
        implementation: Callable[..., Any],
        args: dict[str, Any],
        deadline: float | None,
    ) -> None:
        if self.stopping.is_set():
            return
        if deadline is not None and time.monotonic() > deadline:
            logger.info("%s not started: its caller's deadline passed while it was queued", name)
            if not oneway:
                self._reply(
                    identity, request_id, error={"kind": "expired", "message": f"{name} not started: deadline passed"}
                )
            return
        try:
            values = self.table.validate_args(name, args)
        except ValidationError as exc:
            if not oneway:
                self._reply(identity, request_id, error=describe_validation(exc))
            return
        try:
            result = implementation(**values)
        except Exception as exc:
            logger.info("%s raised %s: %s", name, type(exc).__name__, exc)
            if not oneway:
                self._reply(identity, request_id, error=self._describe(exc))
            return
        if oneway:
            return
        try:
            result = self.table.results[name].validate_python(result)
        except ValidationError as exc:
            logger.error("%s returned a value that does not match its declared type: %s", name, exc)
            self._reply(
                identity,
                request_id,
                error={
                    "kind": "remote",
                    "type": "ResultValidationError",
                    "message": f"{name} returned a value that does not match its declared type: {exc}",
                },
            )
            return
        self._reply(identity, request_id, result=result)

    def _run_set(self, identity: bytes, request_id: Any, name: str, value: Any) -> None:
        try:
            validated = self.table.values[name].validate_python(value)
        except ValidationError as exc:
            self._reply(identity, request_id, error=describe_validation(exc))
            return
        setter = self.setters[name]
        try:
            if setter is None:
                setattr(self.server, name, validated)
            else:
                setter(validated)
        except Exception as exc:
            logger.info("a write of %s was refused: %s: %s", name, type(exc).__name__, exc)
            self._reply(identity, request_id, error=self._describe(exc))
            return
        self._reply(identity, request_id)

    def _describe(self, exc: Exception) -> dict[str, Any]:
        def fields(values: dict[str, Any]) -> Any:
            return values  # encoded with the reply

        out = describe_exception(exc, tb.format_exc(), fields)
        if out["kind"] == "declared" and out["type"] not in self.table.errors:
            out["kind"] = "remote"
        return out
