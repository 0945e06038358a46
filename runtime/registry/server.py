"""The registry server: ``Registry`` owns its sockets and its loop, and only moves messages.

One thread owns a ROUTER for requests (polled: a lookup is answered at once), a
ROUTER for heartbeats (drained every ``batch_interval``: waking up once per
heartbeat would cost more than handling it) and a PUB for the change events.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import socket
import threading
import time
from collections.abc import Iterator
from types import FrameType
from typing import Any, Final

import zmq

from runtime.registry.book import Book
from runtime.registry.claims import Rules
from runtime.registry.dispatcher import MAX_REQUEST_BYTES, Dispatcher
from runtime.registry.handlers import Handlers, Settings
from runtime.transport.addresses import beside, connectable
from runtime.transport.security import CurveServer, Grant
from runtime.transport.sockets import bind
from runtime.transport.systemd import SystemdNotifier

__all__ = ["DEFAULT_REGISTRY", "Registry"]

log = logging.getLogger(__name__)

DEFAULT_REGISTRY: Final = "tcp://127.0.0.1:5555"
_BATCH: Final = 5000
_KERNEL_BUFFER: Final = 256 * 1024
"""The kernel's send buffer for each request connection, fixed: what a peer that never reads holds there."""
"""The most messages read from one socket in a row: a flood on one cannot keep the other waiting."""


class Registry:
    """Maps unique device names to addresses; run it with ``serve(address)`` or ``running(address)``.

    ``ttl`` and ``heartbeat`` are the longest lease it gives: a device may ask for
    less, never more. ``probe_timeout`` bounds how long a name's holder has to
    answer its ping. ``events_bind`` is the PUB endpoint and ``heartbeats_bind`` the
    heartbeat endpoint (by default free ports on the request endpoint's host; the
    ``info`` and ``register`` replies say where), the latter drained every
    ``batch_interval`` seconds. ``curve`` switches CurveZMQ on for all three
    sockets: only allowed client keys can register, look up, list or watch, and a
    key registers only the names its key files give it (``docs/security.md``).

    The bounds (``docs/registry.md``, Limits): ``max_devices`` registered in all;
    ``max_pending`` registrations waiting on holder pings and ``max_probes`` pings
    in flight (past them: ``busy``); ``max_list_bytes`` of records in one ``list``
    reply (then ``more``); ``max_unread_bytes`` of large replies held for one peer
    that does not read them and ``max_unread_total`` for all (then ``busy``);
    ``max_unread_replies`` replies queued for one peer (then dropped, and counted).
    """

    def __init__(
        self,
        *,
        ttl: float = 3.0,
        heartbeat: float | None = None,
        events_bind: str | None = None,
        probe_timeout: float = 0.5,
        beat_interval: float = 1.0,
        heartbeats_bind: str | None = None,
        batch_interval: float = 0.025,
        curve: CurveServer | None = None,
        max_devices: int = 10_000,
        max_pending: int = 512,
        max_probes: int = 128,
        max_list_bytes: int = 256 * 1024,
        max_unread_bytes: int = 1024 * 1024,
        max_unread_total: int = 64 * 1024 * 1024,
        max_unread_replies: int = 1000,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        if heartbeat is not None and not 0 < heartbeat < ttl:
            raise ValueError(f"heartbeat must be positive and shorter than ttl ({ttl!r}), not {heartbeat!r}")
        if not batch_interval > 0:
            raise ValueError(f"batch_interval must be positive, not {batch_interval!r}")
        bounds = {
            "max_devices": max_devices,
            "max_pending": max_pending,
            "max_probes": max_probes,
            "max_list_bytes": max_list_bytes,
            "max_unread_bytes": max_unread_bytes,
            "max_unread_total": max_unread_total,
            "max_unread_replies": max_unread_replies,
        }
        for option, bound in bounds.items():
            if isinstance(bound, bool) or not isinstance(bound, int) or bound < 1:
                raise ValueError(f"{option} is a positive integer, not {bound!r}")
        self.ttl = float(ttl)
        self.heartbeat = float(heartbeat) if heartbeat is not None else self.ttl / 3
        self.events_bind = events_bind
        self.probe_timeout = probe_timeout
        self.beat_interval = beat_interval
        self.heartbeats_bind = heartbeats_bind
        self.batch_interval = float(batch_interval)
        self.curve = curve
        self.max_devices = max_devices
        self.max_pending = max_pending
        self.max_probes = max_probes
        self.max_list_bytes = max_list_bytes
        self.max_unread_bytes = max_unread_bytes
        self.max_unread_total = max_unread_total
        self.max_unread_replies = max_unread_replies
        self._grant: Grant | None = None
        self._address: str | None = None
        self._events_address: str | None = None
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._router: zmq.Socket[bytes] | None = None
        self._beats: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._handlers: Handlers | None = None

    # -- lifetime ---------------------------------------------------------

    @property
    def address(self) -> str:
        """The connectable request address (wildcards and port 0 resolved) once bound."""
        if self._address is None:
            raise RuntimeError("the registry is not serving yet")
        return self._address

    @property
    def events_address(self) -> str:
        """The connectable PUB address once bound."""
        if self._events_address is None:
            raise RuntimeError("the registry is not serving yet")
        return self._events_address

    def serve(self, address: str = DEFAULT_REGISTRY) -> None:
        """Serve requests at ``address`` until ``stop()``; in the main thread SIGINT and SIGTERM stop it too.

        Under systemd (``NOTIFY_SOCKET`` set) it reports ready once it serves and feeds the watchdog from its loop.
        """
        self._serve(address, SystemdNotifier.from_env())

    def _serve(self, address: str, systemd: SystemdNotifier | None) -> None:
        restore: list[tuple[int, Any]] = []
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: FrameType | None) -> None:
                log.info("registry: signal %d, stopping", signum)
                self.stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                restore.append((sig, signal.signal(sig, on_signal)))
        try:
            try:
                handlers = self._open(address)
            except BaseException as exc:
                self._bind_error = exc
                raise
            finally:
                self._bound.set()
            if systemd is not None:
                systemd.ready()
            self._loop(handlers, systemd)
        finally:
            if systemd is not None:
                systemd.notify("STOPPING=1")
                systemd.close()
            self._close()
            for old_sig, handler in restore:
                signal.signal(old_sig, handler)

    @contextlib.contextmanager
    def running(self, address: str = DEFAULT_REGISTRY) -> Iterator[str]:
        """Serve at ``address`` in a background thread; yield the connectable address; stop on exit."""
        thread = threading.Thread(target=self._serve_quietly, args=(address,), name="zidl-registry", daemon=True)
        thread.start()
        self._bound.wait()
        if self._bind_error is not None:
            thread.join()
            raise self._bind_error
        try:
            yield self.address
        finally:
            self.stop()
            thread.join()

    def stop(self) -> None:
        """Ask the serving loop to stop; safe from any thread and from a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _serve_quietly(self, address: str) -> None:
        with contextlib.suppress(Exception):
            self._serve(address, None)

    def _open(self, address: str) -> Handlers:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        router, beats = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
        for owned in (router, beats):
            owned.setsockopt(zmq.LINGER, 0)
            owned.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_REQUEST_BYTES)
            owned.setsockopt(zmq.ROUTER_MANDATORY, 1)  # a reply that cannot be queued raises: it is counted
            owned.setsockopt(zmq.SNDHWM, self.max_unread_replies)
        router.copy_threshold = 0  # a tracked reply is never copied: its tracker tells when libzmq lets go of it
        router.setsockopt(zmq.SNDBUF, _KERNEL_BUFFER)
        pub: zmq.Socket[bytes] = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        self._router, self._beats, self._pub = router, beats, pub
        if self.curve is not None:
            self._grant = self.curve.secure(router, beats, pub)
        bind(router, address)
        endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._address = connectable(endpoint)
        bind(pub, self.events_bind or beside(endpoint, ".events"))
        events_bound = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._events_address = connectable(events_bound)
        heartbeats_bound = bind(beats, self.heartbeats_bind or beside(endpoint, ".heartbeats"))
        log.info("registry serving at %s, events at %s, heartbeats at %s", endpoint, events_bound, heartbeats_bound)
        self._poller.register(router, zmq.POLLIN)
        self._poller.register(self._wake_r.fileno(), zmq.POLLIN)
        names = self.curve.names if self.curve is not None else None
        settings = Settings(
            rules=Rules(self.ttl, self.heartbeat, names),
            beat_interval=self.beat_interval,
            probe_timeout=self.probe_timeout,
            curve=self.curve,
            events=events_bound,
            heartbeats=heartbeats_bound,
            max_devices=self.max_devices,
            max_pending=self.max_pending,
            max_probes=self.max_probes,
            max_list_bytes=self.max_list_bytes,
            max_unread_bytes=self.max_unread_bytes,
            max_unread_total=self.max_unread_total,
        )
        self._handlers = Handlers(settings, Book(self._publish), self._poller, self._reply, self._reply_tracked)
        return self._handlers

    def _close(self) -> None:
        if self._handlers is not None:
            self._handlers.probes.close()
            self._handlers = None
        for owned in (self._router, self._beats, self._pub):
            if owned is not None:
                owned.close(0)
        self._router = self._beats = self._pub = None
        if self._grant is not None:
            self._grant.close()
            self._grant = None
        self._poller = zmq.Poller()
        self._wake_r.close()
        self._wake_w.close()
        log.info("registry stopped")

    # -- the loop ---------------------------------------------------------

    def _loop(self, handlers: Handlers, systemd: SystemdNotifier | None) -> None:
        router = self._router
        assert router is not None
        book, probes = handlers.book, handlers.probes
        dispatcher = Dispatcher(book.by_lease, handlers.table())
        answer = dispatcher.answer
        send = self._send
        poll = self._poller.poll

        def ready() -> int:
            return int(router.get(zmq.EVENTS))

        recv = router.recv_multipart
        wake = self._wake_r.fileno()
        sweep_every = min(0.5, max(0.02, self.ttl / 20))
        next_sweep = next_beat = next_drain = time.monotonic()
        while not self._stopping:
            deadline = min(next_sweep, next_beat, next_drain)
            if systemd is not None:
                deadline = min(deadline, time.monotonic() + systemd.tick())
            if probes.sockets:
                deadline = min(deadline, probes.deadline())
            events = poll(max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            # The hot path: read every waiting request, with no exception raised at the end.
            for _ in range(_BATCH):
                if not ready() & zmq.POLLIN:
                    break
                frames = recv(zmq.NOBLOCK, copy=False)
                try:
                    reply = answer(frames, False)
                    if reply is not None:
                        send(router, reply)
                except Exception:
                    log.exception("registry: a request failed")
            for sock, _ in events:
                if sock is wake:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif sock in probes.sockets:
                    probes.on_reply(sock, time.monotonic())
            now = time.monotonic()
            if now < deadline:
                continue
            if probes.sockets:
                probes.expire(now)
            if now >= next_drain or now >= next_sweep:  # before a sweep: a heartbeat in the queue still counts
                self._drain_heartbeats(dispatcher)
                next_drain = now + self.batch_interval
            if now >= next_sweep:
                book.sweep(now)
                next_sweep = now + sweep_every
            if now >= next_beat:
                book.beat()
                next_beat = now + self.beat_interval

    def _drain_heartbeats(self, dispatcher: Dispatcher) -> None:
        """Answer what queued since the last drain (one zmq.Again ends a batch: no exception per message)."""
        beats = self._beats
        assert beats is not None
        recv, answer, send = beats.recv_multipart, dispatcher.answer, self._send
        for _ in range(_BATCH):
            try:
                frames = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                reply = answer(frames, True)
                if reply is not None:
                    send(beats, reply)
            except Exception:
                log.exception("registry: a heartbeat failed")

    def _send(self, sock: zmq.Socket[bytes], frames: list[bytes]) -> None:
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the peer is gone, or does not read and its queue is full
            if self._handlers is not None:
                self._handlers.dropped += 1
            log.debug("registry: reply dropped: %s", exc)

    def _reply(self, frames: list[bytes]) -> None:
        """Send an answer that comes later than its request (a register that waited on probes)."""
        assert self._router is not None
        self._send(self._router, frames)

    def _reply_tracked(self, frames: list[bytes]) -> zmq.MessageTracker | None:
        """Send a large reply on the request socket, tracked (``backlog.py``); None when it was dropped."""
        assert self._router is not None
        try:
            return self._router.send_multipart(frames, zmq.NOBLOCK, copy=False, track=True)
        except zmq.ZMQError as exc:
            if self._handlers is not None:
                self._handlers.dropped += 1
            log.debug("registry: reply dropped: %s", exc)
            return None

    def _publish(self, event: bytes) -> None:
        assert self._pub is not None
        try:
            self._pub.send(event, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("registry: event dropped: %s", exc)
