"""The registry's requests, one handler each: register (with its holder probes), unregister, list, lookup, info, ping.

Names are unique: a newcomer asking for a name whose holder still answers a ping
gets ``name-1``, ``name-2``...; a holder that does not answer loses the name to it.
A handler returns its reply; a ``register`` that waits on those pings answers later.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

import zmq

from runtime.protocol.messages import registry_reply, registry_snapshot
from runtime.protocol.names import INFO, LIST, LOOKUP, PING, REGISTER, UNREGISTER
from runtime.registry.book import Book, Claim
from runtime.registry.dispatcher import Caller, Handler, Refused
from runtime.registry.probes import Pending, Probes
from runtime.transport.addresses import TRANSPORTS, effective_address
from runtime.transport.security import CurveServer, is_key

__all__ = ["Handlers", "Settings"]

log = logging.getLogger(__name__)

MAX_NAME_LENGTH: Final = 100
MAX_SUFFIX_PROBES: Final = 32
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


@dataclass(frozen=True, slots=True)
class Settings:
    """What the handlers need of a serving registry: its lease defaults and its endpoints as bound."""

    ttl: float
    heartbeat: float
    beat_interval: float
    probe_timeout: float
    curve: CurveServer | None
    events: str
    heartbeats: str


def _candidates(name: str) -> Iterator[str]:
    yield name
    n = 1
    while True:
        yield f"{name}-{n}"
        n += 1


class Handlers:
    """The request handlers over one book; ``send`` delivers an answer that comes after its request was handled.

    The holder pings are polled with the loop's own sockets, in ``poller``.
    """

    def __init__(self, settings: Settings, book: Book, poller: zmq.Poller, send: Callable[[list[bytes]], None]) -> None:
        self.settings = settings
        self.book = book
        self.probes = Probes(poller, settings.probe_timeout, settings.curve, self._resolve)
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
            ttl=settings.ttl,
            heartbeat=settings.heartbeat,
            devices=len(self.book.by_name),
            beat=settings.beat_interval,
        )

    def on_list(
        self, envelope: list[bytes], request_id: Any, fields: dict[str, Any], frame: zmq.Frame, now: float
    ) -> bytes | None:
        interface = fields.get("interface")
        if interface is not None and not isinstance(interface, str):
            raise Refused("bad-request", "'interface' is a string")
        entries = self.book.by_name.values()
        devices = [e.record(now) for e in entries if interface is None or e.interface == interface]
        devices.sort(key=lambda d: d["name"])
        return registry_snapshot(request_id, self.book.epoch, self.book.seq, devices=devices)

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
        """Give the name asked for, or ``name-N``; pings its holders first, when it is held, unless taking over."""
        claim = self._claim(fields)
        peer: str | None
        try:
            peer = frame.get("Peer-Address")  # type: ignore[assignment]
        except zmq.ZMQError:
            peer = None
        claim.address = effective_address(claim.address, peer, claim.host)
        book = self.book
        pending = self.probes.waiting.get(claim.address)
        if pending is not None:  # a retry while the first waits on probes: answer the newest
            message = "a newer register for this address replaced it"
            self._send(pending.caller.refuse("superseded", message))
            pending.caller, pending.claim = Caller(envelope, request_id), claim
            return None
        old = book.by_address.get(claim.address)
        if old is not None:
            book.remove(old, "replaced")
        if claim.takeover:
            holder = book.by_name.get(claim.name)
            if holder is not None:
                book.remove(holder, "taken-over")
            return self._grant(request_id, claim.name, claim, now)
        pending = Pending(Caller(envelope, request_id), claim)
        for candidate in _candidates(claim.name):
            holder = book.by_name.get(candidate)
            if holder is None or len(pending.probes) >= MAX_SUFFIX_PROBES:
                break
            pending.probes[candidate] = self.probes.start(holder, pending, now)
        if not pending.probes:
            return self._grant(request_id, claim.name, claim, now)
        self.probes.waiting[claim.address] = pending
        return None

    def _claim(self, fields: dict[str, Any]) -> Claim:
        name = fields.get("name")
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
            raise Refused("bad-request", "'name' is letters, digits, '_', '.' and '-', at most 100 long")
        address = fields.get("address")
        if not isinstance(address, str) or not address.startswith(TRANSPORTS) or len(address) > 1024:
            raise Refused("bad-request", "'address' is a tcp://, ipc:// or inproc:// address")
        interface, version, hash_ = fields.get("interface"), fields.get("version"), fields.get("hash", "")
        if not isinstance(interface, str) or not interface or len(interface) > 200:
            raise Refused("bad-request", "'interface' is a non-empty string")
        if not isinstance(version, int) or isinstance(version, bool):
            raise Refused("bad-request", "'version' is an integer")
        if not isinstance(hash_, str) or len(hash_) > 200:
            raise Refused("bad-request", "'hash' is a string")
        host = fields.get("host")
        if host is not None and (not isinstance(host, str) or not host or len(host) > 255 or "/" in host):
            raise Refused("bad-request", "'host' is a host name")
        public_key = fields.get("public_key")
        if public_key is not None and (not isinstance(public_key, str) or not is_key(public_key)):
            raise Refused("bad-request", "'public_key' is a Z85 Curve public key (40 characters)")
        takeover = fields.get("takeover", False)
        if not isinstance(takeover, bool):
            raise Refused("bad-request", "'takeover' is true or false")
        ttl = _seconds(fields, "ttl", self.settings.ttl)
        default_heartbeat = min(self.settings.heartbeat, ttl / 3) if "ttl" in fields else self.settings.heartbeat
        heartbeat = _seconds(fields, "heartbeat", default_heartbeat)
        if heartbeat >= ttl:
            raise Refused("bad-request", "'heartbeat' must be shorter than 'ttl'")
        return Claim(name, interface, version, hash_, address, host, public_key, takeover, ttl, heartbeat)

    def _grant(self, request_id: Any, name: str, claim: Claim, now: float) -> bytes:
        entry = self.book.add(name, claim, now)
        return registry_reply(
            request_id,
            name=name,
            address=entry.address,
            lease=entry.lease,
            ttl=entry.ttl,
            heartbeat=entry.heartbeat,
            heartbeats=self.settings.heartbeats,
        )

    def _resolve(self, pending: Pending) -> None:
        """Every holder pinged for ``pending`` answered or not: give it the first name free or freed."""
        claim, book = pending.claim, self.book
        if self.probes.waiting.get(claim.address) is pending:
            del self.probes.waiting[claim.address]
        now = time.monotonic()
        old = book.by_address.get(claim.address)
        if old is not None:
            book.remove(old, "replaced")
        for candidate in _candidates(claim.name):
            holder = book.by_name.get(candidate)
            if holder is None:
                break
            probe = pending.probes.get(candidate)
            if probe is not None and probe.entry is holder and probe.alive is False:
                book.remove(holder, "not answering")
                break
        try:
            caller = pending.caller
            self._send(caller.answer(self._grant(caller.request_id, candidate, claim, now)))
        except Exception:
            log.exception("registry: registration of %s failed", claim.name)


def _seconds(fields: dict[str, Any], key: str, default: float) -> float:
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 <= value <= 86400:
        raise Refused("bad-request", f"{key!r} is a number of seconds between 0.01 and 86400")
    return float(value)
