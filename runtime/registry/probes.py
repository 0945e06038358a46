"""Holder probes: a ``register`` for a held name pings the holders before the name is given.

Each ping is a DEALER polled by the registry's own loop, so a slow holder never
holds up another request; a registration is resolved once all its pings answered
or timed out.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

import zmq

from runtime.protocol.messages import registry_request
from runtime.protocol.names import PING
from runtime.registry.book import Claim, Entry
from runtime.registry.dispatcher import MAX_REQUEST_BYTES, Caller
from runtime.transport.security import CurveClient, CurveServer

__all__ = ["Pending", "Probe", "Probes"]

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Probe:
    """A ping to a name's holder, answered (alive), timed out (dead) or waiting (None)."""

    entry: Entry
    socket: zmq.Socket[bytes]
    deadline: float
    alive: bool | None = None


@dataclass(eq=False, slots=True)
class Pending:
    """A registration waiting for its probes (by the name each holder holds) before it can be given a name."""

    caller: Caller
    claim: Claim
    probes: dict[str, Probe] = field(default_factory=dict)


class Probes:
    """The pings in flight, registered with the loop's ``poller``; ``resolve`` gets each registration they decide.

    ``waiting`` holds the registrations still waiting, by effective address.
    Holders registered with a public key are pinged over Curve with the registry's
    own key pair (``curve``), which they must allow.
    """

    def __init__(
        self,
        poller: zmq.Poller,
        timeout: float,
        curve: CurveServer | None,
        resolve: Callable[[Pending], None],
    ) -> None:
        self.waiting: dict[str, Pending] = {}
        self.sockets: dict[zmq.Socket[bytes], tuple[Probe, Pending]] = {}
        self._poller = poller
        self._timeout = timeout
        self._curve = curve
        self._resolve = resolve

    def start(self, holder: Entry, pending: Pending, now: float) -> Probe:
        """Ping ``holder`` on behalf of ``pending``; a ping that cannot be sent counts as unanswered."""
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        probe = Probe(holder, sock, now + self._timeout)
        try:
            if holder.public_key is not None:
                curve = self._curve.client_of(holder.public_key) if self._curve is not None else None
                (curve or CurveClient(holder.public_key)).apply(sock)  # checked at register: a key
            sock.connect(holder.address)
            sock.send(registry_request(PING, 1), zmq.NOBLOCK)
        except (zmq.ZMQError, ValueError) as exc:  # ValueError: a public key that is not one
            log.debug("registry: cannot ping %s at %s: %s", holder.name, holder.address, exc)
            probe.deadline = now  # counts as not answering at the next expiry check
        self.sockets[sock] = (probe, pending)
        self._poller.register(sock, zmq.POLLIN)
        return probe

    def deadline(self) -> float:
        """When the first ping in flight times out (there is one)."""
        return min(probe.deadline for probe, _ in self.sockets.values())

    def on_reply(self, sock: zmq.Socket[bytes]) -> None:
        """The holder pinged on ``sock`` answered: it is alive (what it said is not read)."""
        with contextlib.suppress(zmq.ZMQError):
            sock.recv_multipart(zmq.NOBLOCK)
        self._finish(sock, alive=True)

    def expire(self, now: float) -> None:
        """Count every ping past its deadline as unanswered."""
        for sock, (probe, _) in list(self.sockets.items()):
            if now >= probe.deadline:
                self._finish(sock, alive=False)

    def close(self) -> None:
        for probe, _ in self.sockets.values():
            probe.socket.close(0)
        self.sockets.clear()

    def _finish(self, sock: zmq.Socket[bytes], *, alive: bool) -> None:
        probe, pending = self.sockets.pop(sock)
        probe.alive = alive
        self._poller.unregister(sock)
        sock.close(0)
        log.debug(
            "registry: holder %s at %s %s",
            probe.entry.name,
            probe.entry.address,
            "answers" if alive else "does not answer",
        )
        if all(p.alive is not None for p in pending.probes.values()):
            self._resolve(pending)
