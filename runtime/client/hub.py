"""What both signal hubs share: reading emissions, the SUB socket, and the welcomes that confirm subscriptions.

A message on a server's publisher is ``[topic, header, *value frames]``
(``runtime.protocol.messages.emission``): the topic is the signal's, the header
carries its name, a per-signal sequence number and the arguments. ``connect(callback)``
returns once the subscription is live: after subscribing to the signal, the client
subscribes to a one-off welcome topic of its own; the server publishes on it when it
sees that subscription, and since one connection's subscriptions are processed in
order, the welcome proves the first one is in place. A hub that moves to a new signal
address subscribes again there, confirmed the same way.

``HubBase`` is written once for both hubs; ``SignalHub`` (``runtime.client.signals``)
and ``AsyncSignalHub`` (``runtime.client.aio_signals``) add how they wait.
"""

from __future__ import annotations

import abc
import contextlib
import logging
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import zmq

from runtime.errors import ProtocolError, ZidlError
from runtime.protocol.messages import WELCOME_PREFIX, read_emission, topic, welcome_topic
from runtime.protocol.wire import DEFAULT_LIMITS, Limits
from runtime.schema.validation import Tables
from runtime.transport.monitor import Monitor
from runtime.transport.security import CurveClient
from runtime.transport.sockets import Heartbeat, make_socket, zmq_errors

logger = logging.getLogger(__name__)

LiveT = TypeVar("LiveT")
"""What a subscriber waiting for its welcome is told by: a ``threading.Event``, or an ``asyncio.Future``."""


class _Deliveries:
    """Decodes emissions, counts missed ones from the sequence numbers, and holds the callbacks."""

    def __init__(self, tables: Tables, what: str, limits: Limits) -> None:
        self.tables = tables
        self.what = what
        self.limits = limits
        self.callbacks: dict[str, list[Callable[..., object]]] = {}
        self.last: dict[str, int] = {}
        self.missed: dict[str, int] = {}

    def add(self, name: str, callback: Callable[..., object]) -> None:
        if name not in self.tables.signals:
            raise ZidlError(f"{self.what} has no signal {name!r}")
        self.callbacks.setdefault(name, []).append(callback)

    def remove(self, name: str, callback: Callable[..., object]) -> bool:
        """Forget ``callback``; True when ``name`` has no callbacks left."""
        callbacks = self.callbacks.get(name, [])
        with contextlib.suppress(ValueError):
            callbacks.remove(callback)
        return not callbacks

    def decode(self, frames: list[Any]) -> tuple[str, list[Any]] | None:
        """The signal and validated arguments of an emission (``frames``, topic first); None, logged, for a bad one."""
        try:
            name, sequence, body = read_emission(frames[1:], self.limits)
            if not isinstance(name, str) or name not in self.tables.signals or not isinstance(body, list):
                raise ProtocolError(f"emission of unknown signal {name!r}")
            self._count(name, sequence)
            return name, self.tables.validate_signal(name, tuple(body), {})
        except Exception:
            logger.exception("%s: dropped an emission that could not be read", self.what)
            return None

    def _count(self, name: str, seq: Any) -> None:
        if type(seq) is not int:
            return
        last = self.last.get(name)
        self.last[name] = seq
        if last is None:
            return
        if seq > last + 1:
            self.missed[name] = self.missed.get(name, 0) + seq - last - 1
            logger.warning("%s: missed %d emission(s) of %s", self.what, seq - last - 1, name)
        elif seq <= last:
            logger.info("%s: the sequence of %s restarted (the server restarted)", self.what, name)

    def restart(self) -> None:
        """Forget the last sequence numbers: a new server counts from 1, which is not a loss."""
        self.last.clear()

    def snapshot(self, name: str) -> tuple[Callable[..., object], ...]:
        return tuple(self.callbacks.get(name, ()))


class Subscriber:
    """A hub's SUB socket to one signal address, with heartbeats and a monitor; made anew when the device moves.

    A fresh socket (rather than reconnecting the old one) carries no stale Curve keys,
    queued messages or monitor events of the server it leaves.
    """

    def __init__(self, address: str, curve: CurveClient | None, heartbeat: Heartbeat, what: str) -> None:
        self.address = address
        self.socket = make_socket(zmq.SUB, heartbeat)
        self.monitor = Monitor(self.socket)
        try:
            with zmq_errors(f"{what}: connecting to signals at {address}"):
                if curve is not None:
                    curve.apply(self.socket)
                self.socket.connect(address)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        self.monitor.close()
        self.socket.close(linger=0)


class HubBase(abc.ABC, Generic[LiveT]):
    """A client's signals, whatever waits for them: where they are and how to reach them, the topics subscribed and
    the welcomes awaited, how a message is read, whom to tell of a loss.

    A hub follows its device without blocking a callback: a move to a new signal address
    subscribes every topic there, confirmed by a welcome; a lost connection (seen by the
    SUB's monitor, or by its heartbeats when the peer falls silent) or a move left
    unconfirmed for ``patience`` seconds is reported through ``lost()``, for the client
    to find its device again. Each hub sets up the rest of its state in ``_init_state``.
    """

    def __init__(
        self,
        address: str,
        tables: Tables,
        what: str,
        *,
        curve: CurveClient | None,
        heartbeat: Heartbeat,
        patience: float,
        lost: Callable[[], None],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self._address = address
        self._curve = curve
        self._heartbeat = heartbeat
        self._patience = patience
        self._lost = lost
        self._deliveries = _Deliveries(tables, what, limits)
        self._what = what
        self._subscribed: set[str] = set()
        self._pending: dict[bytes, LiveT] = {}
        """The welcome topics awaited, each with what its subscriber waits on."""
        self._confirming: bytes | None = None
        """The welcome topic that confirms a move, until it arrives or its time is up."""
        self._closed = False
        self._init_state()

    @abc.abstractmethod
    def _init_state(self) -> None: ...

    @abc.abstractmethod
    def _now_live(self, live: LiveT) -> None:
        """Tell the subscriber waiting on ``live`` that its subscription is in place."""

    @abc.abstractmethod
    def _start_confirming(self) -> None:
        """Give the welcome in ``_confirming`` ``patience`` seconds to arrive, then call ``_not_confirmed``."""

    @abc.abstractmethod
    def _stop_confirming(self) -> None:
        """The move is confirmed, or given up: stop waiting for its welcome."""

    @property
    def missed(self) -> dict[str, int]:
        return self._deliveries.missed

    def _take_address(self, address: str, curve: CurveClient | None) -> bool:
        """Take the signals from ``address`` from now on; False when that changes nothing."""
        if self._closed or address == self._address:
            return False
        self._address, self._curve = address, curve
        return True

    def _new_subscriber(self) -> Subscriber:
        return Subscriber(self._address, self._curve, self._heartbeat, self._what)

    def _subscribe_on(self, sock: zmq.Socket[Any], name: str, live: LiveT) -> bytes:
        """Subscribe ``sock`` to signal ``name`` (once) and to a new welcome, which ``live`` waits for; its topic."""
        if name not in self._subscribed:
            sock.subscribe(topic(name))
            self._subscribed.add(name)
        token = welcome_topic()
        self._pending[token] = live
        sock.subscribe(token)
        return token

    def _unsubscribe_on(self, sock: zmq.Socket[Any], name: str) -> None:
        if name in self._subscribed:
            sock.unsubscribe(topic(name))
            self._subscribed.discard(name)

    def _resubscribe(self, sock: zmq.Socket[Any]) -> None:
        """Subscribe a socket at a new address to every topic, the welcomes still awaited, and one for the move.

        A new connection gets its socket's subscriptions before any made later, so the
        move's welcome proves every topic is subscribed at the new server.
        """
        for name in self._subscribed:
            sock.subscribe(topic(name))
        for token in self._pending:
            sock.subscribe(token)
        self._confirming = welcome_topic()
        sock.subscribe(self._confirming)
        self._start_confirming()
        self._deliveries.restart()
        logger.info("%s: signals move to %s", self._what, self._address)

    def _not_confirmed(self, sock: zmq.Socket[Any] | None, address: str) -> None:
        """The move's welcome did not come in time: give it up and report the signals lost."""
        if self._confirming is None:
            return
        if sock is not None:
            sock.unsubscribe(self._confirming)
        self._confirming = None
        self._stop_confirming()
        self._report_lost(f"{address} did not confirm the subscriptions in time")

    def _take(self, sock: zmq.Socket[Any], head: bytes, frames: list[Any]) -> tuple[str, list[Any]] | None:
        """One message off ``sock`` (``head`` its topic): a welcome is handled here, an emission returned decoded."""
        if head.startswith(WELCOME_PREFIX):
            sock.unsubscribe(head)
            if head == self._confirming:
                self._confirming = None
                self._stop_confirming()
                logger.info("%s: signals are live again (%d topic(s))", self._what, len(self._subscribed))
            live = self._pending.pop(head, None)
            if live is not None:
                self._now_live(live)
            return None
        if len(frames) < 2:
            return None
        return self._deliveries.decode(frames)

    def _report_lost(self, why: str) -> None:
        """Tell the client, which looks for the device without blocking the hub.

        The sequence numbers are kept: a subscriber that stalled long enough for its
        heartbeats to fail comes back to the same server, and counts what it missed.
        """
        logger.info("%s: signals: %s; finding the device again", self._what, why)
        self._lost()
