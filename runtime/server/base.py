"""The server base: property storage, signal emission, and the engine that serves requests.

A generated ``CameraServer(Server, interface=INTERFACE)`` declares abstract methods,
annotated properties and signals; this module supplies the behaviour.

The engine has two threads that take turns owning the sockets (the ROUTER for
requests, the XPUB for signals, the registration DEALER): the leader polls them
and answers handshakes, pings and property reads itself; it runs a method call
inline and sends its reply directly, so that a short call makes no thread hop.
Should the call still run after ``_HANDOFF`` seconds, the other thread takes the
sockets over, so handshakes, property reads and other clients are still answered
while a long call runs (``_Engine`` explains the handoff). Method calls run one at
a time in arrival order; ``concurrent`` methods and property writes go to a small
pool. Replies and emissions made by a thread that does not own the sockets reach
the owner through a queue and a ``Waker``. Methods and properties are found in
tables built from the interface description, never by ``getattr`` of a name that
came off the wire.
"""

from __future__ import annotations

import abc
import contextlib
import logging
import math
import os
import queue
import signal as signals
import threading
import time
import traceback as tb
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

import numpy as np
import zmq
from pydantic import ValidationError
from zmq import zmq_poll

from runtime.errors import ProtocolError, ZidlError
from runtime.protocol.error_bodies import describe_exception, describe_protocol, describe_validation
from runtime.protocol.messages import WELCOME_PREFIX as WELCOME
from runtime.protocol.messages import topic
from runtime.protocol.names import VERSION as PROTOCOL
from runtime.protocol.wire import (
    DEFAULT_LIMITS,
    WRITERS,
    Limits,
    check_limits,
    decode_body,
    decode_header,
    encode,
    request_id_of,
)
from runtime.schema.interface import MethodSpec
from runtime.schema.validation import InterfaceBound, Tables
from runtime.server.signal import ServerSignal
from runtime.server.systemd import SystemdNotifier
from runtime.transport.addresses import beside, connectable
from runtime.transport.security import CurveClient, CurveServer, Grant
from runtime.transport.sockets import (
    DEFAULT_HEARTBEAT,
    NOBLOCK,
    Heartbeat,
    Waker,
    bind,
    make_socket,
    send_frames,
    zmq_errors,
)

if TYPE_CHECKING:
    from runtime.registry.registration import Registration

logger = logging.getLogger(__name__)

_MISSING: Any = object()
_REGISTER_WAIT = 2.0
"""Seconds ``running()`` waits for the registry to accept the device before going on without it."""
_HANDOFF: Final = 0.0015
"""Seconds a method call runs inline on the thread that owns the sockets before the standby takes them over:
long enough for a typical short call to reply with no thread hop, short enough not to delay other requests."""
_WATCH: Final = 0.1
"""Seconds after an inline call starts during which the standby checks every ``_TICK`` seconds instead of
sleeping until woken: waking it for every call would cost two context switches per call (9 instead of 4)."""
_TICK: Final = 0.005
"""How often a watching standby looks for an inline call; a takeover comes at most ``_TICK + _HANDOFF`` late."""
_SIGNAL_HWM: Final = 10_000
"""Emissions queued per subscriber before the publisher drops (libzmq's default is 1000): a burst from a call
that runs inline reaches the publisher faster than a subscriber's Python callbacks take it, and 1000 lost some
of a 10,000-emission burst at 40,000/s. A stalled subscriber still loses emissions, counted by ``missed``."""


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
        curve: CurveServer | None = None,
        registry_curve: CurveClient | None = None,
        advertise: str | None = None,
    ) -> None:
        """Serve on ``address`` until ``stop()``, SIGINT or SIGTERM.

        With ``name`` (or ``registry``) the device registers with the registry at
        ``registry`` (default: ``$ZIDL_REGISTRY``, else ``tcp://127.0.0.1:5555``) under
        ``name`` (default: the interface name in lower case) and stays registered;
        ``advertise`` names the host other computers reach it at (default: the address
        the registry sees it from). ``curve`` switches CurveZMQ on (requests and
        signals; the registry hands out its public key); ``registry_curve`` reaches a
        registry that has Curve on. Under systemd (``NOTIFY_SOCKET`` set) it reports
        ready once it serves and feeds the watchdog from its own loop.
        """
        engine = self._zidl_start(
            address, heartbeat, limits, self._zidl_registration(registry, name, advertise), curve, registry_curve
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
    ) -> Iterator[str]:
        """Serve in background threads for the duration of the block; yields a connectable address.

        ``registry``, ``name``, ``curve``, ``registry_curve`` and ``advertise`` work as in ``serve()``.
        """
        engine = self._zidl_start(
            address, heartbeat, limits, self._zidl_registration(registry, name, advertise), curve, registry_curve
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
        from runtime.registry.server import DEFAULT_REGISTRY

        return (
            registry or os.environ.get("ZIDL_REGISTRY") or DEFAULT_REGISTRY,
            name or self._zidl_table().interface.name.lower(),
            advertise,
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

    @property
    def registered_name(self) -> str | None:
        """The name the registry accepted (``cam-1`` when ``cam`` was taken), else None."""
        engine: _Engine | None = self.__dict__.get("_zidl_engine")
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
    ) -> _Engine:
        self._zidl_setup()
        with self.__dict__["_zidl_lock"]:
            if self.__dict__["_zidl_engine"] is not None:
                raise ZidlError(f"{type(self).__name__} is already serving on {self.address}")
            engine = _Engine(self, address, heartbeat, limits, curve)
            if register is not None:
                engine.register(*register, curve=registry_curve)
            self.__dict__["_zidl_engine"] = engine
        engine.start()
        return engine

    def _zidl_stop_engine(self, engine: _Engine) -> None:
        engine.close()
        with self.__dict__["_zidl_lock"]:
            if self.__dict__["_zidl_engine"] is engine:
                self.__dict__["_zidl_engine"] = None


# --- the engine ---------------------------------------------------------------------------------

_Runner = Callable[[Any, dict[str, Any], float | None], list[Any] | None]
"""A method's runner (``_Engine._runner``): runs one call, given its request id, arguments and deadline."""
_Job = tuple[bytes, _Runner, Any, dict[str, Any], float | None]
"""A call to run: the caller's identity, the method's runner, then the runner's request id, arguments and deadline."""


class _Engine:
    """The sockets and threads of one running server.

    Two threads run ``_serve``. At any moment one of them, the leader, owns the
    sockets: only it polls, receives and sends. The other stands by. The leader runs
    a serial method call inline and replies directly. If the call is still running
    ``_HANDOFF`` seconds after it started (or the engine is stopping), the standby
    takes the sockets over and becomes the leader; the deposed thread, when its call
    returns, queues the reply in the outbox for the new leader, then runs the calls
    that arrived meanwhile (the backlog, in arrival order, replying through the
    outbox), then stands by.

    Why this is race-free: ``leader``, ``inline``, ``serial_busy``, ``backlog`` and
    the standby's bookkeeping change only under ``turn``. A takeover needs ``inline``
    set, and the leader clears it, under ``turn``, as its call returns: either the
    leader clears it first, stays leader and replies directly, or the standby took
    over first, and the deposed thread sees ``leader`` is no longer itself and
    touches no socket again. A leader that is not inside an inline call cannot be
    deposed, so it may read ``leader`` without the lock. Acquiring and releasing
    ``turn`` is a full memory barrier, which is what libzmq asks for before a socket
    changes threads. Messages queued by a thread that does not own the sockets are
    put in the outbox first and the owner is woken after, and a new leader flushes
    the outbox before it polls, so nothing queued around a takeover is left behind.
    Serial calls keep their order: while one runs (``serial_busy``), later ones
    wait in the backlog, which only the thread that ran the earlier call empties.
    """

    def __init__(
        self, server: Server, address: str, heartbeat: Heartbeat, limits: Limits, curve: CurveServer | None = None
    ) -> None:
        self.server = server
        self.table = server._zidl_table()
        self.interface = self.table.interface
        self.limits = limits
        self.curve = curve
        self.grant: Grant | None = None
        self.router = make_socket(zmq.ROUTER, heartbeat)
        self.xpub = make_socket(zmq.XPUB)
        try:
            with zmq_errors(f"serving on {address}"):
                self.router.setsockopt(zmq.ROUTER_MANDATORY, 0)
                self.xpub.setsockopt(zmq.XPUB_VERBOSE, 1)
                self.xpub.setsockopt(zmq.SNDHWM, _SIGNAL_HWM)
                if curve is not None:
                    self.grant = curve.secure(self.router, self.xpub)
            self.address = bind(self.router, address)
            self.pub_address = bind(self.xpub, beside(self.address, ".signals"))
        except BaseException:
            self.router.close(linger=0)
            self.xpub.close(linger=0)
            if self.grant is not None:
                self.grant.close()
            raise
        self.hello = {"interface": self.interface.to_dict(), "signals": self.pub_address, "protocol": PROTOCOL}
        self.outbox: queue.SimpleQueue[tuple[bytes | None, list[Any]]] = queue.SimpleQueue()
        self.waker = Waker()
        self.pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="zidl-pool")
        self.sequence: dict[str, int] = {}
        self.publish_lock = threading.Lock()
        self.stopping = threading.Event()
        # what the wire may reach: built from the description, never from a received name
        self.methods = {m.name: (m, self._runner(m, getattr(server, m.name))) for m in self.interface.methods}
        self.setters = {p.name: getattr(server, f"set_{p.name}", None) for p in self.interface.properties if p.writable}
        self.registration: Registration | None = None
        self.registered = threading.Event()
        self.systemd: SystemdNotifier | None = None
        self.poller = zmq.Poller()
        self.threads = [threading.Thread(target=self._serve, name=f"zidl-io-{n}", daemon=True) for n in (1, 2)]
        # the handoff state, guarded by ``turn`` (see the class docstring)
        self.turn_lock = threading.Lock()
        """``turn``'s lock, taken directly on the hot path (``Condition.__enter__`` is a Python frame)."""
        self.turn = threading.Condition(self.turn_lock)
        self.leader = self.threads[0]
        self.inline: float | None = None
        """When the serial call the leader runs inline started (monotonic), or None."""
        self.serial_busy = False
        self.backlog: deque[_Job] = deque()
        self.standby_asleep = False
        self.watch_until = 0.0

    def register(self, registry: str, name: str, advertise: str | None, curve: CurveClient | None = None) -> None:
        """Keep the device registered as ``name`` while serving (driven by the I/O thread)."""
        from runtime.registry.registration import Registration

        self.registration = Registration(
            registry,
            name,
            self.interface.name,
            self.interface.version,
            self.interface.hash,
            self.address,
            advertise=advertise,
            on_accepted=lambda accepted: self.registered.set(),
            public_key=self.curve.public_key if self.curve is not None else None,
            curve=curve,
        )

    def notify_systemd(self) -> None:
        """Tell systemd the service is ready, and have the socket owner feed its watchdog."""
        self.systemd = SystemdNotifier.from_env()
        if self.systemd is not None:
            self.systemd.ready()
            self.waker.wake()  # the leader picks up the watchdog's first deadline

    def start(self) -> None:
        for sock in (self.router, self.xpub, self.waker.fileno()):
            self.poller.register(sock, zmq.POLLIN)
        if self.registration is not None:
            self.poller.register(self.registration.socket, zmq.POLLIN)
        for thread in self.threads:
            thread.start()

    def request_stop(self) -> None:
        self.stopping.set()
        self.waker.wake()
        with self.turn:
            self.turn.notify_all()

    def wait(self) -> None:
        while not self.stopping.wait(0.5):
            pass

    def close(self) -> None:
        self.request_stop()
        for thread in self.threads:
            if thread is not threading.current_thread():
                thread.join()
        self.pool.shutdown(wait=True, cancel_futures=True)
        self.waker.close()
        if self.systemd is not None:
            self.systemd.notify("STOPPING=1")
            self.systemd.close()
        if self.grant is not None:
            self.grant.close()  # after the threads closed the sockets

    # --- the two engine threads ---------------------------------------------------------------------

    def _serve(self) -> None:
        """What both engine threads run: lead while owning the sockets, otherwise stand by."""
        me = threading.current_thread()
        while self._stand_by(me):
            self._lead(me)
            if self.leader is me:  # stopping: the owner closes the sockets
                self._close_sockets()
                return
            self._drain_backlog()

    def _stand_by(self, me: threading.Thread) -> bool:
        """Wait until this thread owns the sockets (True), or the engine stops while the leader polls (False)."""
        with self.turn:
            while self.leader is not me:
                started = self.inline
                now = time.monotonic()
                if started is None:
                    if self.stopping.is_set():
                        return False
                    if now < self.watch_until:
                        self.turn.wait(_TICK)
                    else:
                        self.standby_asleep = True
                        self.turn.wait()
                        self.standby_asleep = False
                elif self.stopping.is_set() or now - started >= _HANDOFF:
                    self.leader = me
                    self.inline = None
                else:
                    self.turn.wait(started + _HANDOFF - now)
        return True

    def _lead(self, me: threading.Thread) -> None:
        """Serve the sockets until the engine stops or the standby takes them over during an inline call."""
        registration = self.registration
        router, xpub, waker_fd, outbox = self.router, self.xpub, self.waker.fileno(), self.outbox
        items = self.poller.sockets  # handed straight to ``zmq.zmq_poll``: ``zmq.Poller`` adds Python frames
        stopping = self.stopping.is_set
        try:
            while self.leader is me and not stopping():
                if not outbox.empty():
                    self._flush()
                if registration is None and self.systemd is None:
                    timeout = -1
                else:
                    due = self._next_timer(registration)
                    timeout = -1 if due is None else due
                ready = dict(zmq_poll(items, timeout))
                try:
                    if registration is not None and registration.socket in ready:
                        registration.handle_readable()
                    if waker_fd in ready:
                        self.waker.drain()
                    if router in ready:
                        # the one request the poll said is waiting; the next poll (level-triggered) finds the others:
                        # asking for more first would cost as much as the poll (a read that finds none raises)
                        try:
                            # identity and header copied, the value frames not (``recv_frames(copied=2)``, inline,
                            # with ``Frame.more`` instead of an RCVMORE getsockopt)
                            frame = router.recv(NOBLOCK, copy=False)
                            frames: list[Any] = [frame.bytes]
                            while frame.more:
                                frame = router.recv(copy=False)
                                frames.append(frame.bytes if len(frames) < 2 else frame)
                            self._request(me, frames)
                        except Exception:
                            logger.exception("a request could not be handled")
                    if xpub in ready and self.leader is me:
                        self._subscriptions()
                except zmq.ContextTerminated:
                    raise
                except Exception:  # one bad message never stops the server
                    logger.exception("the I/O thread of %s met an error; serving on", self.interface.name)
        except Exception:
            logger.exception("the I/O thread of %s failed", self.interface.name)
            self.stopping.set()

    def _next_timer(self, registration: Registration | None) -> int | None:
        """Milliseconds until the registration or the systemd watchdog next needs the loop, or None."""
        due = min(
            registration.tick() if registration is not None else math.inf,
            self.systemd.tick() if self.systemd is not None else math.inf,
            3600.0,
        )
        return None if due == 3600.0 else int(due * 1000) + 1

    def _close_sockets(self) -> None:
        self.stopping.set()
        if self.registration is not None:
            self.registration.close()
        self.router.close(linger=0)
        self.xpub.close(linger=0)

    def _drain_backlog(self) -> None:
        """In a deposed thread: run the serial calls that arrived during its call, in order, then stand by."""
        while True:
            with self.turn:
                if not self.backlog:
                    self.serial_busy = False
                    return
                job = self.backlog.popleft()
            self._run_elsewhere(job)

    def _flush(self) -> None:
        while not self.outbox.empty():
            identity, frames = self.outbox.get_nowait()
            if identity is None:
                self._send(self.xpub, frames)
            else:
                self._send(self.router, [identity, *frames])

    def _send(self, sock: zmq.Socket[bytes], frames: list[Any]) -> None:
        try:
            send_frames(sock, frames, NOBLOCK)
        except zmq.Again:
            logger.warning("dropped a message: the peer is not reading (high-water mark)")
        except zmq.ZMQError as exc:
            logger.warning("could not send a message: %s", exc)

    def _answer(self, identity: bytes, frames: list[Any]) -> None:
        """Send a reply from any thread: at once from the socket owner, else through the outbox."""
        if self.leader is threading.current_thread():
            if not self.outbox.empty():
                self._flush()  # what the call emitted goes first, as it would through the outbox
            self._send(self.router, [identity, *frames])
        else:
            self.outbox.put((identity, frames))
            self.waker.wake()

    def _run_elsewhere(self, job: _Job) -> None:
        """Run a call on a thread that does not own the sockets; its reply goes through the outbox."""
        identity, run, request_id, args, deadline = job
        frames = run(request_id, args, deadline)
        if frames is not None:
            self._answer(identity, frames)

    def _reply(
        self, identity: bytes, request_id: Any, *, result: Any = None, error: dict[str, Any] | None = None
    ) -> None:
        self._answer(identity, self._reply_frames(request_id, result, error))

    def _reply_frames(
        self, request_id: Any, result: Any, error: dict[str, Any] | None, write: Callable[..., list[Any]] = encode
    ) -> list[Any]:
        """The frames of a reply; ``write`` is how its result is encoded (``encode_plain`` when the type allows)."""
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
            return write({"v": PROTOCOL, "id": request_id, "k": "ok"}, result)
        except (TypeError, ValueError) as exc:
            logger.error("a result could not be sent: %s", exc)
            error = {"kind": "remote", "type": "SerializationError", "message": f"the result could not be sent: {exc}"}
            return encode({"v": PROTOCOL, "id": request_id, "k": "err"}, error)

    def _request(self, me: threading.Thread, frames: list[Any]) -> None:
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
            if request_id is None:
                request_id = request_id_of(frames[1])
            self._reply(identity, request_id, error=describe_protocol(str(exc)))
            return
        kind = header.get("k")
        name = header.get("n")
        if kind == "call":
            self._call(me, identity, request_id, name, body, header.get("t"))
        elif kind == "get":
            self._get(identity, request_id, name)
        elif kind == "set":
            self._set(identity, request_id, name, body)
        elif kind == "hello":
            self._reply(identity, request_id, result=self.hello)
        else:
            self._reply(identity, request_id, error=describe_protocol(f"unknown request kind {kind!r}"))

    def _call(self, me: threading.Thread, identity: bytes, request_id: Any, name: Any, args: Any, timeout: Any) -> None:
        entry = self.methods.get(name) if isinstance(name, str) else None
        if entry is None:
            self._reply(identity, request_id, error=describe_protocol(f"{self.interface.name} has no method {name!r}"))
            return
        if not isinstance(args, dict):
            self._reply(identity, request_id, error=describe_protocol(f"the arguments of {name} are not an object"))
            return
        spec, run = entry
        deadline = time.monotonic() + timeout if isinstance(timeout, int | float) and timeout >= 0 else None
        job = (identity, run, request_id, args, deadline)
        if spec.concurrent:
            self.pool.submit(self._run_elsewhere, job)
        else:
            self._serial(me, job)

    def _serial(self, me: threading.Thread, job: _Job) -> None:
        """Run a serial call inline, or put it in the backlog when another one is running."""
        with self.turn_lock:
            if self.serial_busy:
                self.backlog.append(job)
                return
            self.serial_busy = True
            self.inline = now = time.monotonic()
            self.watch_until = now + _WATCH
            if self.standby_asleep:
                self.turn.notify()
        identity, run, request_id, args, deadline = job
        frames = None
        try:
            frames = run(request_id, args, deadline)
        finally:
            with self.turn_lock:
                if self.leader is me:  # not deposed: nobody else polled, so the backlog is empty
                    self.inline = None
                    self.serial_busy = False
        if frames is not None:
            self._answer(identity, frames)

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
        # checked after the put: a leader deposed meanwhile left it to the new one, which flushes first
        if self.leader is not threading.current_thread():
            self.waker.wake()

    def _runner(self, spec: MethodSpec, implementation: Callable[..., Any]) -> _Runner:
        """The runner of one method, built once: a function that runs one call on the thread it is called on.

        It takes the request id, the arguments as received and the deadline, and
        returns the frames of the reply, or None when nothing is to be sent. What
        depends only on the method (its validators, how its result is written) is
        looked up here, once, instead of on every call.
        """
        name, oneway = spec.name, spec.oneway
        plan = self.table.calls[name]
        validate_args, validate_result, write = plan.validate_args, plan.validate_result, WRITERS[plan.result_shape]
        stopping = self.stopping.is_set

        def run(request_id: Any, args: dict[str, Any], deadline: float | None) -> list[Any] | None:
            if stopping():
                return None
            error: dict[str, Any]
            if deadline is not None and time.monotonic() > deadline:
                logger.info("%s not started: its caller's deadline passed while it was queued", name)
                error = {"kind": "expired", "message": f"{name} not started: deadline passed"}
            else:
                try:
                    values = validate_args(args).__dict__
                except ValidationError as exc:
                    error = describe_validation(exc)
                else:
                    try:
                        result = implementation(**values)
                    except Exception as exc:
                        logger.info("%s raised %s: %s", name, type(exc).__name__, exc)
                        error = self._describe(exc)
                    else:
                        if oneway:
                            return None
                        try:
                            result = validate_result(result)
                        except ValidationError as exc:
                            logger.error("%s returned a value that does not match its declared type: %s", name, exc)
                            error = {
                                "kind": "remote",
                                "type": "ResultValidationError",
                                "message": f"{name} returned a value that does not match its declared type: {exc}",
                            }
                        else:
                            return self._reply_frames(request_id, result, None, write)
            return None if oneway else self._reply_frames(request_id, None, error)

        return run

    def _run_set(self, identity: bytes, request_id: Any, name: str, value: Any) -> None:
        try:
            validated = self.table.values[name].validate_python(value)
        except ValidationError as exc:
            self._reply(identity, request_id, error=describe_validation(exc))
            return
        setter = self.setters[name]
        try:
            if setter is None:
                self.server._zidl_store(name, validated)
            else:
                setter(validated)
        except Exception as exc:
            logger.info("a write of %s was refused: %s: %s", name, type(exc).__name__, exc)
            self._reply(identity, request_id, error=self._describe(exc))
            return
        self._reply(identity, request_id)

    def _describe(self, exc: Exception) -> dict[str, Any]:
        out = describe_exception(exc, tb.format_exc())
        if out["kind"] == "declared" and out["type"] not in self.table.errors:
            out["kind"] = "remote"
        return out
