"""The engine of a running server: it owns the sockets and the two I/O threads, and only moves messages.

It hands each request to its ``Handler`` (the dispatcher) and sends what it is given:
replies to their caller, emissions to the signal publisher (``runtime.server.publisher``,
whose thread owns the XPUB). A serial call runs inline
on the thread that owns the sockets, so that a short call makes no thread hop; during
a long one the other thread takes the sockets over (``Engine`` explains the handoff).
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from typing import Any, Final

import zmq
from zmq import zmq_poll

from runtime.protocol.limits import DEFAULT_LIMITS, Limits
from runtime.protocol.messages import longest_subscription
from runtime.registry.registration import Registration
from runtime.schema.interface import Interface
from runtime.server.backlog import Backlog
from runtime.server.handler import Handler
from runtime.server.intake import configure, drop_rest
from runtime.server.publisher import Publisher
from runtime.server.replies import Replies
from runtime.server.runners import Call
from runtime.transport.addresses import beside
from runtime.transport.callers import Callers
from runtime.transport.security import CurveClient, CurveServer, Grant
from runtime.transport.sockets import NOBLOCK, Heartbeat, Waker, bind, make_socket, zmq_errors
from runtime.transport.systemd import SystemdNotifier

logger = logging.getLogger(__name__)

_HANDOFF: Final = 0.0015
"""Seconds a method call runs inline on the thread that owns the sockets before the standby takes them over:
long enough for a typical short call to reply with no thread hop, short enough not to delay other requests."""
_WATCH: Final = 0.1
"""Seconds after an inline call starts during which the standby checks every ``_TICK`` seconds instead of
sleeping until woken: waking it for every call would add two context switches to each call."""
_TICK: Final = 0.005
"""How often a watching standby looks for an inline call; a takeover comes at most ``_TICK + _HANDOFF`` late."""


class Engine:
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

    handler: Handler
    """Set by ``start``."""

    def __init__(
        self,
        interface: Interface,
        address: str,
        heartbeat: Heartbeat,
        curve: CurveServer | None = None,
        limits: Limits = DEFAULT_LIMITS,
        signals_bind: str | None = None,
    ) -> None:
        self.interface = interface
        self.curve = curve
        self.limits = limits
        self.grant: Grant | None = None
        self.router = make_socket(zmq.ROUTER, heartbeat)
        self.xpub = make_socket(zmq.XPUB, heartbeat)
        try:
            with zmq_errors(f"serving on {address}"):
                self.replies = Replies(self.router, limits)
                configure(self.router, limits)
                Publisher.configure(self.xpub, longest_subscription(interface))
                if curve is not None:
                    self.grant = curve.secure(self.router, self.xpub)
            self.address = bind(self.router, address)
            self.pub_address = bind(self.xpub, signals_bind or beside(self.address, ".signals"))
            self.callers = Callers(self.router)
        except BaseException:
            self.router.close(linger=0)
            self.xpub.close(linger=0)
            if self.grant is not None:
                self.grant.close()
            raise
        self.outbox: queue.SimpleQueue[tuple[bytes, list[Any]]] = queue.SimpleQueue()
        self.waker = Waker()
        self.stopping = threading.Event()
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
        self.backlog = Backlog(limits)
        self.standby_asleep = False
        self.watch_until = 0.0
        self.publisher: Publisher
        """Set by ``start``, with the handler that judges subscriptions; its thread owns the XPUB from then on."""

    def register(self, registry: str, name: str, advertise: str | None, curve: CurveClient | None = None) -> None:
        """Keep the device registered as ``name`` while serving (driven by the I/O thread)."""
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

    def start(self, handler: Handler) -> None:
        """Start serving, handing each request to ``handler``."""
        self.handler = handler
        self.publisher = Publisher(self.xpub, handler.subscribed)
        self.publisher.start()
        for sock in (self.callers.socket, self.router, self.waker.fileno()):
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
        self.handler.close()  # before the waker closes: what still runs replies through it
        self.publisher.close()  # after the handler: what still ran may have emitted
        self.waker.close()
        if self.systemd is not None:
            self.systemd.notify("STOPPING=1")
            self.systemd.close()
        if self.grant is not None:
            self.grant.close()  # after the threads closed the sockets

    # --- what the handler asks of the engine ----------------------------------------------------

    def serial(self, me: threading.Thread, call: Call) -> bool:
        """Run a serial call inline on ``me``, the leader, or put it in the backlog when another one is running.

        False, and nothing done, when the call's connection has its share of the backlog (``Backlog.offer``).
        """
        with self.turn_lock:
            if self.serial_busy:
                return self.backlog.offer(call)
            self.serial_busy = True
            self.inline = now = time.monotonic()
            self.watch_until = now + _WATCH
            if self.standby_asleep:
                self.turn.notify()
        frames = None
        try:
            frames = self.handler.run(call)
        finally:
            with self.turn_lock:
                if self.leader is me:  # not deposed: nobody else polled, so the backlog is empty
                    self.inline = None
                    self.serial_busy = False
        if frames is not None:
            self.reply(call.caller, frames)
        return True

    def run_elsewhere(self, call: Call) -> None:
        """Run a call on a thread that does not own the sockets; its reply goes through the outbox."""
        frames = self.handler.run(call)
        if frames is not None:
            self.reply(call.caller, frames)

    def reply(self, caller: bytes, frames: list[Any]) -> None:
        """Send a reply from any thread: at once from the socket owner, else through the outbox."""
        if self.leader is threading.current_thread():
            if not self.outbox.empty():
                self._flush()  # replies queued before this one go first
            self.replies.send(caller, frames)
        else:
            self.outbox.put((caller, frames))
            self.waker.wake()

    def post(self, frames: list[Any]) -> None:
        """Queue an emission from any thread, for the publisher's thread to send in the order queued."""
        self.publisher.post(frames)

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
        router, waker_fd, outbox, replies = self.router, self.waker.fileno(), self.outbox, self.replies
        connections, sources = self.callers.socket, self.callers.sources
        items = self.poller.sockets  # handed straight to ``zmq.zmq_poll``: ``zmq.Poller`` adds Python frames
        limits, stopping = self.limits, self.stopping.is_set
        max_header, max_bytes, max_frames = limits.max_header_bytes, limits.max_bytes, limits.max_frames
        handle, refuse = self.handler.request, self.handler.refused
        try:
            while self.leader is me and not stopping():
                if not outbox.empty():
                    self._flush()
                while replies.departed:
                    self._gone(replies.departed.pop())
                if self.callers.departed:  # found as a new caller was noted
                    for gone in self.callers.dropped():
                        self._gone(gone)
                if registration is None and self.systemd is None and not replies.unread:
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
                    if connections in ready:  # before the ROUTER: see ``runtime.transport.callers``
                        for gone in self.callers.dropped():
                            self._gone(gone)
                    if router in ready:
                        # the one request the poll said is waiting; the next poll (level-triggered) finds the
                        # others, where reading on until a read finds none would raise once per turn
                        try:
                            # the identity and the header copied, the value frames not (as ``recv_frames``, written
                            # out here); the limits checked as the frames come (``runtime.server.intake``)
                            frame = router.recv(NOBLOCK, copy=False)
                            caller = frame.bytes
                            if caller not in sources:
                                self.callers.note(caller, frame)
                            if frame.more:
                                frame = router.recv(copy=False)
                                if len(frame) > max_header:
                                    refuse(caller, frame, drop_rest(router, frame, frame, 1, len(frame), limits))
                                else:
                                    message: list[Any] = [frame.bytes]
                                    size = len(message[0])
                                    while frame.more:
                                        frame = router.recv(copy=False)
                                        message.append(frame)
                                        size += len(frame)
                                        if size > max_bytes or len(message) > max_frames:
                                            head, count = message[0], len(message)
                                            refuse(caller, head, drop_rest(router, head, frame, count, size, limits))
                                            break
                                    else:
                                        handle(me, caller, message)
                        except Exception:
                            logger.exception("a request could not be handled")
                except zmq.ContextTerminated:
                    raise
                except Exception:  # one bad message never stops the server
                    logger.exception("the I/O thread of %s met an error; serving on", self.interface.name)
        except Exception:
            logger.exception("the I/O thread of %s failed", self.interface.name)
            self.stopping.set()

    def _next_timer(self, registration: Registration | None) -> int | None:
        """Milliseconds until the registration, the systemd watchdog or the count of unread replies next needs the
        loop (each does what is due first), or None."""
        due = min(
            registration.tick() if registration is not None else math.inf,
            self.systemd.tick() if self.systemd is not None else math.inf,
            self.replies.tick() if self.replies.unread else math.inf,
            3600.0,
        )
        return None if due == 3600.0 else int(due * 1000) + 1

    def _close_sockets(self) -> None:
        self.stopping.set()
        if self.registration is not None:
            self.registration.close()
        self.callers.close()
        self.router.close(linger=0)  # the publisher's thread closes the XPUB

    def _drain_backlog(self) -> None:
        """In a deposed thread: run the serial calls that arrived during its call, in order, then stand by."""
        while True:
            with self.turn:
                call = self.backlog.take()
                if call is None:
                    self.serial_busy = False
                    return
            self.run_elsewhere(call)

    def _flush(self) -> None:
        while not self.outbox.empty():
            caller, frames = self.outbox.get_nowait()
            self.replies.send(caller, frames)

    def _gone(self, caller: bytes) -> None:
        """``caller``'s connection dropped, or a reply found it gone: its calls are cancelled, and those still in the
        backlog would reply to nobody, so they never run."""
        self.callers.forget(caller)
        self.handler.gone(caller)
        with self.turn_lock:
            dropped = self.backlog.drop_caller(caller)
        for call in dropped:
            self.handler.forget(call)
        if dropped:
            logger.info("dropped %d queued call(s) of a caller that is gone", len(dropped))
