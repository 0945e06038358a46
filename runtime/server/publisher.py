"""The incoming side of a server's signal publisher: the subscriptions it is asked for, judged and applied.

The XPUB runs with ``XPUB_MANUAL``: libzmq applies no subscription by itself. The
thread that owns the sockets reads each subscription message, the handler says what
it means (``Subscription``) and only that is applied: a signal topic of the interface
(and its unsubscription), or a welcome, published to that subscriber alone with its
topic dropped again at once. Anything else is ignored, so the topics the publisher
matches are only those a client can need. ``setsockopt(SUBSCRIBE)`` applies to the
subscriber of the message read last, so each one is applied as it is read.

Two things libzmq does regardless. It keeps its own record of every topic a subscriber
sent, to send the unsubscriptions when it leaves (``MAXMSGSIZE`` caps each topic's
length). And a message that is not a subscription (an XSUB may send one) is queued
with no subscriber of its own, so that until the queue is read empty each later
subscription would apply to the wrong subscriber: those are dropped, not misapplied
(their clients' ``connect()`` times out rather than another client's signals being lost).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, ClassVar, Final, NamedTuple

import zmq

from runtime.protocol.messages import read_subscription
from runtime.transport.sockets import NOBLOCK, Socket, send_frames

logger = logging.getLogger(__name__)

_HANDSHAKE: Final = 1024
"""Bytes above the longest subscription a frame to the XPUB may have: a ZMTP 3.1 command spells its name, and the
commands of a Curve handshake (some 400 bytes) pass the same check (``MAXMSGSIZE``)."""
_SIGNAL_HWM: Final = 10_000
"""Emissions queued per subscriber before the publisher drops, above libzmq's default of 1000: a burst from a
call that runs inline reaches the publisher faster than a subscriber's Python callbacks take it. A stalled
subscriber still loses emissions, counted by ``missed``."""
_PER_TURN: Final = 64
"""Subscription messages read before the leader turns to its requests again: a flood of them delays no call."""


class Subscription(NamedTuple):
    """What a subscription message asks that the publisher does: subscribe (``on``) or unsubscribe ``topic``; with
    ``answer``, publish it to this subscriber alone (a welcome), then drop the topic."""

    topic: bytes
    on: bool
    answer: list[Any] | None = None


class Publisher:
    """Reads the subscriptions of one XPUB socket, in order, and applies those ``judge`` returns."""

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
        self.held: tuple[float, bytes] | None = None
        """When the held subscription is due (monotonic) and its topic; the socket is not read meanwhile."""
        self._applied: dict[bytes, int] = {}
        self._shifted = False
        """A message that is not a subscription was read since the queue was last empty (the module docstring)."""
        self._warned = False
        self.subscriptions = 0
        """Signal subscriptions applied now (a subscriber that leaves takes its own along: libzmq tells)."""
        self.ignored = 0

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

    def due_in(self) -> float:
        """Seconds until the held subscription is due (0 when there is none)."""
        return 0.0 if self.held is None else max(0.0, self.held[0] - time.monotonic())

    def release(self) -> bool:
        """Apply the held subscription if it is due; True when nothing is held any more."""
        if self.held is not None and time.monotonic() >= self.held[0]:
            self._apply(self.held[1], True)  # no message read since: it applies to the same subscriber
            self.held = None
        return self.held is None

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
