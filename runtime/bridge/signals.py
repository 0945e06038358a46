"""A bridged device's signals: an XSUB towards the device's publisher and an XPUB on B's side, a forwarder.

As ``zmq.proxy`` joins an XSUB and an XPUB, each emission crosses the bridge once
(the device publishes it to the bridge's one XSUB) and the XPUB hands it to every
subscriber on B's side. The XPUB is not verbose: a topic's first subscription goes
on to the device, later ones stay in the bridge, and its last unsubscription goes
on. Only what can match an emission or proves a subscription is forwarded: a signal
of the interface and the one-off welcome topics, which the device answers; so a
client's ``connect()`` returns once its subscription is live at the device itself,
through the bridge. A message that is no (un)subscription at all is never forwarded
(the device's publisher drops the subscriptions it reads just after one), nor is one
longer than the device takes (its libzmq would drop the bridge's connection). The bridge
unsubscribes a welcome at the device as soon as its answer passes (the client's own
unsubscription stays in the bridge), so the device holds none for B's side. A
subscriber that sends other topics keeps them to itself.

The XSUB keeps what it was told to subscribe and subscribes it again at a new
publisher, so a device that restarts (on a new signal port) is subscribed again
without a word from B's side.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Final

import zmq

from runtime.protocol.messages import WELCOME_PREFIX, longest_subscription, topic
from runtime.schema.interface import Interface
from runtime.transport.security import CurveClient
from runtime.transport.sockets import NOBLOCK, Socket, bind, make_socket, readable, recv_frames, send_frames

logger = logging.getLogger(__name__)

_HWM: Final = 10_000
"""Emissions queued per subscriber, and from the device, before ZeroMQ drops: as a device's own publisher keeps."""
_BATCH: Final = 256
"""Messages moved in one turn of the loop before the bridge's other sockets are looked at."""
_SUBSCRIBE: Final = b"\x01"
_SUBSCRIPTION_KINDS: Final = frozenset({_SUBSCRIBE, b"\x00"})
"""The first byte of a subscription and an unsubscription; an XPUB also hands on any other message a peer sends."""
_LONGEST: Final = 4096
"""The longest subscription B's side may send (libzmq drops a connection that sends more): topics are names."""


class SignalRelay:
    """The signal forwarder of one bridged device."""

    def __init__(self, xpub: Socket, what: str) -> None:
        """``xpub`` is made, with Curve if B's side has it, but not bound."""
        self.what = what
        self.xpub = xpub
        self.xpub.setsockopt(zmq.SNDHWM, _HWM)
        self.xpub.setsockopt(zmq.MAXMSGSIZE, _LONGEST)
        self.xsub = make_socket(zmq.XSUB)
        self.xsub.setsockopt(zmq.RCVHWM, _HWM)
        self.upstream: str | None = None
        self.topics: frozenset[bytes] = frozenset()
        self.longest = 0

    def bind(self, address: str) -> str:
        return bind(self.xpub, address)

    def learn(self, interface: Interface) -> None:
        """The device's interface: its signals' topics are forwarded, and no subscription longer than the device takes
        (its libzmq drops a connection that sends one: this one, every subscriber's on B's side)."""
        self.topics = frozenset(topic(signal.name) for signal in interface.signals)
        self.longest = longest_subscription(interface)

    def point(self, address: str, curve: CurveClient | None) -> None:
        """Take the device's emissions from ``address`` (the device's publisher), from now on."""
        if address == self.upstream:
            return
        if self.upstream is not None:
            with contextlib.suppress(zmq.ZMQError):
                self.xsub.disconnect(self.upstream)
        if curve is not None:
            curve.apply(self.xsub)
        self.xsub.connect(address)
        self.upstream = address
        logger.info("%s: signals from %s", self.what, address)

    def subscriptions(self) -> None:
        """Forward what B's side subscribes (or unsubscribes) that an emission can match or the device answers."""
        for turn in range(_BATCH):  # the poll said one is waiting; more while more are
            if turn and not readable(self.xpub):
                return
            message = self.xpub.recv(NOBLOCK)
            kind, subject = message[:1], message[1:]
            if kind not in _SUBSCRIPTION_KINDS:  # a message, not a subscription: the device would lose the next ones
                continue
            if len(message) > self.longest:
                continue
            if subject not in self.topics and not (kind == _SUBSCRIBE and subject.startswith(WELCOME_PREFIX)):
                continue
            with contextlib.suppress(zmq.Again):
                self.xsub.send(message, NOBLOCK)

    def emissions(self) -> None:
        """Forward what the device published: its frames as they came."""
        for turn in range(_BATCH):
            if turn and not readable(self.xsub):
                return
            frames: list[Any] = recv_frames(self.xsub, flags=NOBLOCK)
            send_frames(self.xpub, frames, NOBLOCK)  # a subscriber that does not keep up loses it: it counts it missed
            if frames[0].startswith(WELCOME_PREFIX):  # answered: the device need keep it no longer
                with contextlib.suppress(zmq.Again):
                    self.xsub.send(b"\x00" + frames[0], NOBLOCK)

    def close(self) -> None:
        self.xsub.close(linger=0)
        self.xpub.close(linger=0)
