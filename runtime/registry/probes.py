"""Holder probes: a ``register`` for a held name pings the holders before the name is given.

Each ping is a DEALER polled by the registry's own loop, so a slow holder never
holds up another request; a registration is resolved once all its pings answered
or timed out. One ping is in flight per holder however many registrations wait on
it, and both the pings and the registrations waiting are bounded: past a bound,
or when a socket cannot be made, the caller is told ``busy`` at once. Nothing
here lives longer than the probe timeout, so what a peer that left held is gone
within it.
"""

from __future__ import annotations

import contextlib
import errno
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

import zmq

from runtime.protocol.names import PING
from runtime.protocol.registry_messages import registry_request
from runtime.registry.book import Claim, Entry
from runtime.registry.dispatcher import MAX_REQUEST_BYTES, Caller
from runtime.transport.security import CurveClient, CurveServer

__all__ = ["Pending", "Probe", "Probes"]

log = logging.getLogger(__name__)

_OUT_OF_SOCKETS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


@dataclass(eq=False, slots=True)
class Probe:
    """A ping to a name's holder, answered (alive), timed out (dead) or waiting (None)."""

    entry: Entry
    socket: zmq.Socket[bytes] | None
    deadline: float
    alive: bool | None = None
    waiters: list[Pending] = field(default_factory=list)


@dataclass(eq=False, slots=True)
class Pending:
    """A registration waiting for its probes (by the name each holder holds) before it can be given a name.

    ``key`` is who asked for which address: a newer register from the same peer for
    the same address replaces it.
    """

    caller: Caller
    claim: Claim
    key: tuple[bytes, str]
    probes: dict[str, Probe] = field(default_factory=dict)


class Probes:
    """The pings in flight, registered with the loop's ``poller``; ``resolve`` gets each registration they decide.

    ``waiting`` holds the registrations still waiting (at most ``max_pending``),
    ``sockets`` the pings in flight (at most ``max_probes``). Holders registered
    with a public key are pinged over Curve with the registry's own key pair
    (``curve``), which they must allow.
    """

    def __init__(
        self,
        poller: zmq.Poller,
        timeout: float,
        curve: CurveServer | None,
        resolve: Callable[[Pending], None],
        *,
        max_pending: int,
        max_probes: int,
    ) -> None:
        self.waiting: dict[tuple[bytes, str], Pending] = {}
        self.sockets: dict[zmq.Socket[bytes], Probe] = {}
        self.timeout = timeout
        self.max_pending = max_pending
        self.max_probes = max_probes
        self._by_lease: dict[str, Probe] = {}
        self._short = False  # out of sockets, and said so: said again once a ping could be made
        self._poller = poller
        self._curve = curve
        self._resolve = resolve

    def room(self, holders: list[Entry]) -> bool:
        """True when one more registration may wait, on pings of ``holders``."""
        if len(self.waiting) >= self.max_pending:
            return False
        new = sum(1 for holder in holders if holder.lease not in self._by_lease)
        return len(self.sockets) + new <= self.max_probes

    def wait(self, pending: Pending, holders: dict[str, Entry], now: float) -> bool:
        """Make ``pending`` wait on a ping of each of ``holders`` (by name); False when a ping cannot be made."""
        for name, holder in holders.items():
            probe = self._by_lease.get(holder.lease) or self._start(holder, now)
            if probe is None:
                self.cancel(pending)
                return False
            probe.waiters.append(pending)
            pending.probes[name] = probe
        self.waiting[pending.key] = pending
        return True

    def cancel(self, pending: Pending) -> None:
        """Stop waiting for ``pending``; a ping nobody waits for any more is closed."""
        if self.waiting.get(pending.key) is pending:
            del self.waiting[pending.key]
        for probe in pending.probes.values():
            with contextlib.suppress(ValueError):
                probe.waiters.remove(pending)
            if not probe.waiters and probe.alive is None:
                self._close(probe)

    def deadline(self) -> float:
        """When the first ping in flight times out (there is one)."""
        return min(probe.deadline for probe in self.sockets.values())

    def on_reply(self, sock: zmq.Socket[bytes], now: float) -> None:
        """The holder pinged on ``sock`` answered: it is alive (what it said is not read)."""
        with contextlib.suppress(zmq.ZMQError):
            sock.recv_multipart(zmq.NOBLOCK)
        probe = self.sockets.get(sock)
        if probe is not None:
            probe.entry.answered = now
            self._finish(probe, alive=True)

    def expire(self, now: float) -> None:
        """Count every ping past its deadline as unanswered."""
        for probe in [p for p in self.sockets.values() if now >= p.deadline]:
            self._finish(probe, alive=False)

    def close(self) -> None:
        for probe in list(self.sockets.values()):
            self._close(probe)

    def _start(self, holder: Entry, now: float) -> Probe | None:
        """A new ping of ``holder``; one that cannot reach it counts as unanswered, None when out of sockets."""
        try:
            sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        except zmq.ZMQError as exc:
            self._out_of_sockets(exc)
            return None
        probe = Probe(holder, sock, now + self.timeout)
        try:
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
            if holder.public_key is not None:
                curve = self._curve.client_of(holder.public_key) if self._curve is not None else None
                (curve or CurveClient(holder.public_key)).apply(sock)  # checked at register: a key
            sock.connect(holder.address)
            sock.send(registry_request(PING, 1), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            if exc.errno in _OUT_OF_SOCKETS:
                self._out_of_sockets(exc)
                sock.close(0)
                return None
            log.debug("registry: cannot ping %s at %s: %s", holder.name, holder.address, exc)
            probe.deadline = now  # an address nobody can reach: counts as not answering at the next check
        except ValueError as exc:  # a public key that is not one
            log.debug("registry: cannot ping %s at %s: %s", holder.name, holder.address, exc)
            probe.deadline = now
        self.sockets[sock] = probe
        self._by_lease[holder.lease] = probe
        self._poller.register(sock, zmq.POLLIN)
        self._short = False
        return probe

    def _out_of_sockets(self, exc: zmq.ZMQError) -> None:
        if not self._short:
            log.warning("registry: cannot ping holders now (%s); registrations that need a ping are told busy", exc)
        self._short = True

    def _close(self, probe: Probe) -> None:
        sock = probe.socket
        if sock is None:
            return
        probe.socket = None
        self.sockets.pop(sock, None)
        if self._by_lease.get(probe.entry.lease) is probe:
            del self._by_lease[probe.entry.lease]
        self._poller.unregister(sock)
        sock.close(0)

    def _finish(self, probe: Probe, *, alive: bool) -> None:
        probe.alive = alive
        self._close(probe)
        log.debug(
            "registry: holder %s at %s %s",
            probe.entry.name,
            probe.entry.address,
            "answers" if alive else "does not answer",
        )
        for pending in list(probe.waiters):
            if self.waiting.get(pending.key) is pending and all(p.alive is not None for p in pending.probes.values()):
                del self.waiting[pending.key]
                self._resolve(pending)
