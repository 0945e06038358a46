"""A running server's signal publisher: its XPUB, owned by a thread of its own, and the subscriptions it applies.

The publisher's thread publishes the emissions queued from any thread (``post``) and
reads the subscriptions. A thread of its own, apart from the one that owns the
requests' socket, because libzmq files every subscription a subscriber sends in that
socket's owner thread: a flood of them (200,000 random topics take libzmq seconds)
delays no request.

The XPUB runs with ``XPUB_MANUAL``: libzmq applies no subscription by itself. The
thread reads each subscription message, the handler says what it means
(``Subscription``) and only that is applied: a signal topic of the interface (and
its unsubscription), or a welcome, published to that subscriber alone with its topic
dropped again at once. Anything else is ignored, so the topics the publisher matches
are only those a client can need. ``setsockopt(SUBSCRIBE)`` applies to the subscriber
of the message read last, so each one is applied as it is read.

Two things libzmq does regardless. It keeps its own record of every topic a subscriber
sent, to send the unsubscriptions when it leaves (``MAXMSGSIZE`` caps each topic's
length). And a message that is not a subscription (an XSUB may send one) is queued
with no subscriber of its own, so that until the queue is read empty each later
subscription would apply to the wrong subscriber: those are dropped, not misapplied
(their clients' ``connect()`` times out rather than another client's signals being lost).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

import zmq
from zmq import zmq_poll

from runtime.protocol.messages import read_subscription
from runtime.transport.sockets import NOBLOCK, Socket, Waker, send_frames

logger = logging.getLogger(__name__)

_HANDSHAKE: Final = 1024
"""Bytes above the longest subscription a frame to the XPUB may have: a ZMTP 3.1 command spells its name, and the
commands of a Curve handshake (some 400 bytes) pass the same check (``MAXMSGSIZE``)."""
_SIGNAL_HWM: Final = 10_000
"""Emissions queued per subscriber before the publisher drops, above libzmq's default of 1000: a burst from a
call reaches the publisher faster than a subscriber's Python callbacks take it. A stalled subscriber still loses
emissions, counted by ``missed``."""
_PER_TURN: Final = 64
"""Subscription messages read before the thread publishes what was queued meanwhile."""


class Subscription(NamedTuple):
    """What a subscription message asks that the publisher does: subscribe (``on``) or unsubscribe ``topic``; with
    ``answer``, publish it to this subscriber alone (a welcome), then drop the topic."""

    topic: bytes
    on: bool
    answer: list[Any] | None = None


class Publisher:
    """Publishes on one XPUB socket from a thread of its own, and applies the subscriptions ``judge`` returns."""

    hold: ClassVar[float] = 0.0
    """Seconds each signal subscription waits before it is applied, the subscriptions after it waiting too: 0, but
    for the test that proves a client waits for its welcome (``tests/test_runtime_signals.py``), which raises it."""

    @staticmethod
    def configure(sock: Socket, longest: int) -> None:
        """Set an XPUB up to be read by a ``Publisher``: subscriptions of up to ``longest`` bytes, none applied."""
        sock.setsockopt(zmq.SNDHWM, _SIGNAL_HWM)
        sock.setsockopt(zmq.XPUB_MANUAL, 1)
        sock.setsockopt(zmq.MAXMSGSIZE, longest + _HANDSHAKE)

    def __init__(self, sock: Socket, judge: Callable[[bytes], Subscription | None]) -> None:
        self.socket = sock
        self._judge = judge
        self._queue: queue.SimpleQueue[list[Any]] = queue.SimpleQueue()
        self._waker = Waker()
        self._asleep = False
        """Set by the thread before it waits, and cleared after: ``post`` wakes it only then."""
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="zidl-publisher", daemon=True)
        self.held: tuple[float, bytes] | None = None
        """When the held subscription is due (monotonic) and its topic; the socket is not read meanwhile."""
        self._applied: dict[bytes, int] = {}
        self._shifted = False
        """A message that is not a subscription was read since the queue was last empty (the module docstring)."""
        self._warned = False
        self.subscriptions = 0
        """Signal subscriptions applied now (a subscriber that leaves takes its own along: libzmq tells)."""
        self.ignored = 0

    def start(self) -> None:
        self._thread.start()

    def post(self, frames: list[Any]) -> None:
        """Queue an emission from any thread; the publisher's thread sends it, in the order queued."""
        self._queue.put(frames)
        if self._asleep:  # read after the put: a thread about to wait looks at the queue once more (``_run``)
            self._waker.wake()

    def close(self) -> None:
        """Send what is queued, close the socket and end the thread (the server stops)."""
        self._closing = True
        self._waker.wake()
        if self._thread.is_alive():
            self._thread.join()
        self._waker.close()

    def _run(self) -> None:
        sock, waker = self.socket, self._waker
        poller = zmq.Poller()
        poller.register(sock, zmq.POLLIN)
        poller.register(waker.fileno(), zmq.POLLIN)
        everything = poller.sockets  # handed straight to ``zmq.zmq_poll``, as the engine does
        quiet = [item for item in everything if item[0] is not sock]  # while a subscription is held
        try:
            while True:
                self._flush()
                if self._closing:
                    return
                self._asleep = True
                if not self._queue.empty():  # posted before ``_asleep`` was seen: no wake came for it
                    self._asleep = False
                    continue
                wait = -1 if self.held is None else int(self._due_in() * 1000) + 1
                ready: dict[Any, int] = dict(zmq_poll(everything if self.held is None else quiet, wait))
                self._asleep = False
                if waker.fileno() in ready:
                    waker.drain()
                if self.held is not None:
                    self._release()
                if sock in ready:
                    self.read()
        except zmq.ContextTerminated:
            pass
        except Exception:
            logger.exception("the signal publisher failed; signals are no longer sent")
        finally:
            sock.close(linger=0)

    def _flush(self) -> None:
        sock, get = self.socket, self._queue.get_nowait
        while True:
            try:
                frames = get()
            except queue.Empty:
                return
            try:
                send_frames(sock, frames, NOBLOCK)
            except zmq.Again:  # lossy: dropped for a subscriber at its high-water mark, which counts a gap
                pass
            except zmq.ZMQError as exc:
                logger.warning("could not publish an emission: %s", exc)

    def read(self) -> None:
        """Apply the subscription messages waiting, up to ``_PER_TURN`` of them; the next turn reads on."""
        sock = self.socket
        for _ in range(_PER_TURN):
            if self.held is not None:
                return
            try:
                message = sock.recv(NOBLOCK)
            except zmq.Again:
                self._shifted = self._warned = False  # nothing waits: libzmq pairs messages and subscribers again
                return
            if read_subscription(message) is None:
                self._shifted = True
                self.ignored += 1
                continue
            wanted = self._judge(message)
            if wanted is None:
                self.ignored += 1
            elif self._shifted:
                self._unattributed(wanted)
            elif wanted.answer is not None:
                sock.setsockopt(zmq.SUBSCRIBE, wanted.topic)
                send_frames(sock, wanted.answer, NOBLOCK)
                sock.setsockopt(zmq.UNSUBSCRIBE, wanted.topic)
            elif wanted.on and self.hold > 0:
                self.held = (time.monotonic() + self.hold, wanted.topic)
            else:
                self._apply(wanted.topic, wanted.on)

    def _due_in(self) -> float:
        return 0.0 if self.held is None else max(0.0, self.held[0] - time.monotonic())

    def _release(self) -> None:
        """Apply the held subscription if it is due."""
        if self.held is not None and time.monotonic() >= self.held[0]:
            self._apply(self.held[1], True)  # no message read since: it applies to the same subscriber
            self.held = None

    def _unattributed(self, wanted: Subscription) -> None:
        """A subscription read while libzmq cannot say whose it is: nothing applied, nothing answered; an
        unsubscription still counted (its subscriber takes the rest along when it leaves)."""
        self.ignored += 1
        if not self._warned:
            self._warned = True
            logger.warning("subscriptions dropped: a subscriber sent a message that is not one, just before them")
        if not wanted.on and wanted.answer is None:
            self._apply(wanted.topic, False, count_only=True)

    def _apply(self, topic: bytes, on: bool, *, count_only: bool = False) -> None:
        if not count_only:
            self.socket.setsockopt(zmq.SUBSCRIBE if on else zmq.UNSUBSCRIBE, topic)
        count = self._applied.get(topic, 0)
        if on:
            self._applied[topic] = count + 1
        elif count > 1:
            self._applied[topic] = count - 1
        else:
            self._applied.pop(topic, None)
        self.subscriptions += 1 if on else -1 if count else 0
