"""The registry's book: who holds which name, at which address, under which lease.

Every change to it is announced on the events socket, numbered within the epoch
of this run, so a watcher can tell when it missed one. Names and leases are
unique; addresses are not: an address proves nothing without Curve, so a register
for an address already in the book never removes the entry there.
"""

from __future__ import annotations

import json
import logging
import math
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.protocol.names import ADDED, BEAT, REMOVED
from runtime.protocol.registry_messages import registry_event

__all__ = ["Book", "Claim", "Entry"]

log = logging.getLogger(__name__)


@dataclass(eq=False, slots=True)
class Claim:
    """What a checked ``register`` request asks for; ``address`` is made effective before it is granted.

    ``lease`` is the lease the device holds or last held, its proof that an entry is its own.
    """

    name: str
    interface: str
    version: int
    hash: str
    address: str
    host: str | None
    public_key: str | None
    lease: str | None
    ttl: float
    heartbeat: float


@dataclass(eq=False, slots=True)
class Entry:
    """One registered device and its lease; ``answered`` is when it last answered a holder ping."""

    name: str
    interface: str
    version: int
    hash: str
    address: str
    public_key: str | None
    lease: str
    ttl: float
    heartbeat: float
    last_seen: float
    size: int = 0
    """The bytes its record takes in a listing, about: what a ``list`` page counts."""
    answered: float = -math.inf

    def record(self, now: float) -> dict[str, Any]:
        """The device as a listing, a lookup and an event show it (never its lease)."""
        return {
            "name": self.name,
            "interface": self.interface,
            "version": self.version,
            "hash": self.hash,
            "address": self.address,
            "public_key": self.public_key,
            "age": round(max(0.0, now - self.last_seen), 3),
        }

    def describes(self, claim: Claim) -> bool:
        """True when ``claim`` asks for this very entry: same device, same address."""
        return (self.interface, self.version, self.hash, self.address, self.public_key) == (
            claim.interface,
            claim.version,
            claim.hash,
            claim.address,
            claim.public_key,
        )


class Book:
    """The registered devices by name and by lease; ``publish`` sends each event."""

    def __init__(self, publish: Callable[[bytes], None]) -> None:
        self.epoch = secrets.token_hex(4)
        self.seq = 0
        self.by_name: dict[str, Entry] = {}
        self.by_lease: dict[str, Entry] = {}
        self._publish = publish
        self._sorted: list[str] = []
        self._sorted_at = 0

    def add(self, name: str, claim: Claim, now: float) -> Entry:
        """Give ``name`` to ``claim`` under a new lease (the caller has made room for it)."""
        entry = Entry(
            name=name,
            interface=claim.interface,
            version=claim.version,
            hash=claim.hash,
            address=claim.address,
            public_key=claim.public_key,
            lease=secrets.token_hex(12),
            ttl=claim.ttl,
            heartbeat=claim.heartbeat,
            last_seen=now,
        )
        entry.size = len(json.dumps(entry.record(0.0))) + 16  # room for any age
        self.by_name[name] = entry
        self.by_lease[entry.lease] = entry
        log.info("registry: %s (%s v%d) at %s", name, entry.interface, entry.version, entry.address)
        self._announce(ADDED, device=entry.record(now))
        return entry

    def renew(self, entry: Entry, claim: Claim, now: float) -> Entry:
        """``entry`` registered again by its holder, unchanged but for its lease's length: no event."""
        entry.ttl, entry.heartbeat, entry.last_seen = claim.ttl, claim.heartbeat, now
        return entry

    def remove(self, entry: Entry, reason: str) -> None:
        """Drop ``entry`` (once: a second removal is ignored) and announce why."""
        if self.by_lease.pop(entry.lease, None) is None:
            return
        if self.by_name.get(entry.name) is entry:
            del self.by_name[entry.name]
        log.info("registry: %s at %s removed (%s)", entry.name, entry.address, reason)
        self._announce(REMOVED, device=entry.record(time.monotonic()), reason=reason)

    def names(self) -> list[str]:
        """Every name held, sorted (kept until the book changes: a listing in pages sorts once)."""
        if self._sorted_at != self.seq:
            self._sorted, self._sorted_at = sorted(self.by_name), self.seq
        return self._sorted

    def sweep(self, now: float) -> None:
        """Drop every device whose lease was not renewed within its ttl."""
        expired = [e for e in self.by_lease.values() if now - e.last_seen > e.ttl]
        for entry in expired:
            self.remove(entry, "expired")

    def beat(self) -> None:
        """Announce the current ``seq`` without a change: a watcher that missed an event finds out."""
        self._publish(registry_event(self.epoch, self.seq, BEAT))

    def _announce(self, kind: str, **fields: Any) -> None:
        self.seq += 1
        self._publish(registry_event(self.epoch, self.seq, kind, **fields))
