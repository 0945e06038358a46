"""The registry's requests, one handler each: register (with its holder probes), unregister, list, lookup, info, ping.

Names belong to their holder: a newcomer asking for a name whose holder answers
a ping gets ``name-1``, ``name-2``...; only a holder that does not answer loses
the name to it. An entry is renewed, replaced or removed only with its lease. A
handler returns its reply; a ``register`` that waits on those pings answers later.
"""

from __future__ import annotations

import bisect
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import zmq

from runtime.protocol.names import INFO, LIST, LOOKUP, PING, REGISTER, UNREGISTER
from runtime.protocol.registry_messages import registry_reply, registry_snapshot
from runtime.registry.backlog import Backlog, SendTracked
from runtime.registry.book import Book, Claim, Entry
from runtime.registry.claims import Rules, candidates, read_claim
from runtime.registry.dispatcher import Caller, Handler, Refused
from runtime.registry.probes import Pending, Probes
from runtime.transport.addresses import effective_address
from runtime.transport.security import CurveServer

__all__ = ["Handlers", "Settings"]

log = logging.getLogger(__name__)

MAX_SUFFIX_PROBES: Final = 32
_TRACKED: Final = 4096
"""A ``list`` reply from this size on is counted in the backlog until it is written out."""


@dataclass(frozen=True, slots=True)
class Settings:
    """What the handlers need of a serving registry: its lease and name rules, its bounds, its endpoints as bound."""

    rules: Rules
    beat_interval: float
    probe_timeout: float
    curve: CurveServer | None
    events: str
    heartbeats: str
    max_devices: int
    max_pending: int
    max_probes: int
    max_list_bytes: int
    max_unread_bytes: int
    max_unread_total: int


class Handlers:
    """The request handlers over one book; ``send`` delivers an answer that comes after its request was handled.

    The holder pings are polled with the loop's own sockets, in ``poller``.
    ``dropped`` counts the replies the server could not queue (a peer that does
    not read them); ``info`` reports it.
    """

    def __init__(
        self,
        settings: Settings,
        book: Book,
        poller: zmq.Poller,
        send: Callable[[list[bytes]], None],
        send_tracked: SendTracked,
    ) -> None:
        self.settings = settings
        self.book = book
        self.probes = Probes(
            poller,
            settings.probe_timeout,
            settings.curve,
            self._resolve,
            max_pending=settings.max_pending,
            max_probes=settings.max_probes,
        )
        self.backlog = Backlog(send_tracked, per_peer=settings.max_unread_bytes, total=settings.max_unread_total)
        self.dropped = 0
        self._send = send

    def table(self) -> dict[str, Handler]:
        """Each request kind's handler (heartbeats have their fast path in the dispatcher)."""
        return {
            REGISTER: self.on_register,
            UNREGISTER: self.on_unregister,
            LIST: self.on_list,
            LOOKUP: self.on_lookup,
            INFO: self.on_info,
            PING: self.on_ping,
        }

    def on_ping(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        return registry_reply(request_id)

    def on_info(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        settings = self.settings
        return registry_snapshot(
            request_id,
            self.book.epoch,
            self.book.seq,
            events=settings.events,
            heartbeats=settings.heartbeats,
            ttl=settings.rules.ttl,
            heartbeat=settings.rules.heartbeat,
            devices=len(self.book.by_lease),
            beat=settings.beat_interval,
            pending=len(self.probes.waiting),
            probes=len(self.probes.sockets),
            unread_bytes=self.backlog.held,
            dropped=self.dropped,
        )

    def on_list(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        """A page of the devices sorted by name, after ``after``, at most ``max_list_bytes`` of records."""
        interface, after = fields.get("interface"), fields.get("after")
        if interface is not None and not isinstance(interface, str):
            raise Refused("bad-request", "'interface' is a string")
        if after is not None and not isinstance(after, str):
            raise Refused("bad-request", "'after' is the last name of the page before")
        names, by_name = self.book.names(), self.book.by_name
        budget, more = self.settings.max_list_bytes, False
        devices: list[dict[str, Any]] = []
        for i in range(bisect.bisect_right(names, after) if after is not None else 0, len(names)):
            entry = by_name[names[i]]
            if interface is not None and entry.interface != interface:
                continue
            if entry.size > budget and devices:
                more = True
                break
            budget -= entry.size
            devices.append(entry.record(now))
        size = self.settings.max_list_bytes - budget
        if size < _TRACKED:
            return registry_snapshot(request_id, self.book.epoch, self.book.seq, devices=devices, more=more)
        if not self.backlog.room(envelope[0], size):
            raise Refused("busy", "earlier list replies to this client are still unread: read them, then list again")
        reply = registry_snapshot(request_id, self.book.epoch, self.book.seq, devices=devices, more=more)
        self.backlog.send(envelope[0], [*envelope, reply])
        return None

    def on_lookup(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        name = fields.get("name")
        if not isinstance(name, str):
            raise Refused("bad-request", "'name' is a string")
        entry = self.book.by_name.get(name)
        if entry is None:
            raise Refused("not-found", f"no device named {name!r}")
        return registry_reply(request_id, device=entry.record(now))

    def on_unregister(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        lease = fields.get("lease")
        entry = self.book.by_lease.get(lease) if isinstance(lease, str) else None
        if entry is None:
            raise Refused("unknown", "no such lease")
        self.book.remove(entry, "unregistered")
        return registry_reply(request_id)

    def on_register(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        """Give the name asked for, or ``name-N``; pings its holders first when it is held."""
        rules = self.settings.rules
        claim = read_claim(fields, rules, _property(frame, "User-Id") if rules.names is not None else None)
        claim.address = effective_address(claim.address, _property(frame, "Peer-Address"), claim.host)
        book, probes = self.book, self.probes
        key = (envelope[0], claim.address)
        earlier = probes.waiting.get(key)
        if earlier is not None:  # a retry while the first waits on probes: answer the newest
            probes.cancel(earlier)
            self._send(earlier.caller.refuse("superseded", "a newer register for this address replaced it"))
        own = book.by_lease.get(claim.lease) if claim.lease is not None else None
        if own is not None:
            return self._register_again(request_id, own, claim, now)
        if len(book.by_lease) >= self.settings.max_devices:
            raise Refused("full", f"the registry holds its most devices ({self.settings.max_devices})")
        holders: dict[str, Entry] = {}
        for candidate in candidates(claim.name):
            holder = book.by_name.get(candidate)
            if holder is None:
                break
            if now - holder.answered < probes.timeout:  # it answered a ping just now
                continue
            holders[candidate] = holder
            if len(holders) >= MAX_SUFFIX_PROBES:
                break
        if not holders:
            return self._grant(request_id, candidate, claim, now)
        if not probes.room(list(holders.values())):
            raise Refused("busy", "too many registrations are waiting on holder pings; try again shortly")
        if not probes.wait(Pending(Caller(envelope, request_id), claim, key), holders, now):
            raise Refused("busy", "the registry cannot ping holders now (out of sockets); try again shortly")
        return None

    def _register_again(self, request_id: Any, own: Entry, claim: Claim, now: float) -> bytes:
        """A device that holds ``own``: renewed as it is, or moved to the name it asks for once that is free."""
        holder = self.book.by_name.get(claim.name)
        name = claim.name if holder is None or holder is own else own.name
        if name == own.name and own.describes(claim):
            return self._granted(request_id, self.book.renew(own, claim, now))
        self.book.remove(own, "replaced")
        return self._grant(request_id, name, claim, now)

    def _grant(self, request_id: Any, name: str, claim: Claim, now: float) -> bytes:
        return self._granted(request_id, self.book.add(name, claim, now))

    def _granted(self, request_id: Any, entry: Entry) -> bytes:
        return registry_reply(
            request_id,
            name=entry.name,
            address=entry.address,
            lease=entry.lease,
            ttl=entry.ttl,
            heartbeat=entry.heartbeat,
            heartbeats=self.settings.heartbeats,
        )

    def _resolve(self, pending: Pending) -> None:
        """Every holder pinged for ``pending`` answered or not: give it the first name free or freed, answered once."""
        claim, book, caller = pending.claim, self.book, pending.caller
        try:
            if len(book.by_lease) >= self.settings.max_devices:
                reply = caller.refuse("full", f"the registry holds its most devices ({self.settings.max_devices})")
            else:
                for candidate in candidates(claim.name):
                    holder = book.by_name.get(candidate)
                    if holder is None:
                        break
                    probe = pending.probes.get(candidate)
                    if probe is not None and probe.entry is holder and probe.alive is False:
                        book.remove(holder, "not answering")
                        break
                reply = caller.answer(self._grant(caller.request_id, candidate, claim, time.monotonic()))
        except Exception:
            log.exception("registry: registration of %s failed", claim.name)
            reply = caller.refuse("internal", "the registry failed on this request")
        self._send(reply)


def _property(frame: zmq.Frame, name: str) -> str | None:
    """A ZeroMQ message property (``Peer-Address``, Curve's ``User-Id``), or None without one."""
    try:
        value = frame.get(name)
    except zmq.ZMQError:
        return None
    return value if isinstance(value, str) else None
