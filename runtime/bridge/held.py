"""The requests a bridge holds while its device is away: in arrival order, within a bound, until they can go.

While the device is away (or a request could not be handed to it), every request
from B's side waits here, and so does every later one, so that each caller's
requests reach the device in the order they were sent. A request its caller stops
waiting for (its deadline passes, it is cancelled, the caller leaves) is dropped; a
oneway call is kept until it is delivered, even when its caller has left. What the
bound (``max_held`` requests, ``max_held_bytes``, and a share of them for each
connection, whatever their kind) turns away is counted and logged.
"""

from __future__ import annotations

import logging
import math
from collections import deque
from dataclasses import dataclass
from typing import Any

from runtime.protocol.names import CANCEL, CREDIT
from runtime.protocol.relay import Head

logger = logging.getLogger(__name__)


@dataclass(slots=True)
class Held:
    """One request waiting in the bridge."""

    caller: bytes | None
    """Who sent it; None once its caller left (a oneway call, delivered on the bridge's own connection)."""
    frames: list[Any]
    head: Head
    received: float
    """When the bridge received it (monotonic): what is left of the caller's ``t`` is counted from here."""
    oneway: bool
    size: int

    @property
    def deadline(self) -> float:
        """When its caller stops waiting for it (never, for a oneway call, a credit or a cancel)."""
        if self.oneway or self.head.timeout is None or self.head.kind in (CREDIT, CANCEL):
            return math.inf
        return self.received + self.head.timeout


class HeldRequests:
    """The held requests of one bridged device."""

    def __init__(self, what: str, max_count: int, max_bytes: int) -> None:
        self._what = what
        self._max_count = max_count
        self._max_bytes = max_bytes
        self._queue: deque[Held] = deque()
        self._bytes = 0
        self.refused = 0
        """Requests turned away by the bound since the bridge started (oneway calls among them, never delivered)."""
        self.expired = 0
        """Requests dropped because their caller had stopped waiting before the device came back."""

    def __len__(self) -> int:
        return len(self._queue)

    def add(self, held: Held, share: int) -> bool:
        """Hold ``held``; False (counted, logged) when the bound is met, or when its caller holds ``share`` requests
        already (so that no one connection takes the whole bound: its credits and cancels count too)."""
        over_share = held.caller is not None and self.count(held.caller) >= share
        if over_share or len(self._queue) >= self._max_count or self._bytes + held.size > self._max_bytes:
            self.refused += 1
            if self.refused == 1 or self.refused % 100 == 0:
                logger.warning(
                    "%s is away and %d requests (%d bytes) wait for it already: %d request(s) turned away so far",
                    self._what,
                    len(self._queue),
                    self._bytes,
                    self.refused,
                )
            return False
        self._queue.append(held)
        self._bytes += held.size
        return True

    def count(self, caller: bytes) -> int:
        """How many of the held requests are ``caller``'s."""
        return sum(1 for held in self._queue if held.caller == caller) if self._queue else 0

    def first(self) -> Held | None:
        return self._queue[0] if self._queue else None

    def pop(self) -> None:
        """Forget the first request (it was delivered)."""
        self._bytes -= self._queue.popleft().size

    def cancel(self, caller: bytes, request_id: Any) -> Held | None:
        """Take out ``caller``'s held request ``request_id`` and whatever else it held for it (its credits)."""
        found = None
        for held in list(self._queue):
            if held.caller == caller and _same(held.head.request_id, request_id):
                self._queue.remove(held)
                self._bytes -= held.size
                if found is None:
                    found = held
        return found

    def gone(self, caller: bytes) -> None:
        """``caller`` left: its requests are dropped, but for its oneway calls, which are still delivered."""
        for held in list(self._queue):
            if held.caller != caller:
                continue
            if held.oneway:
                held.caller = None
            else:
                self._queue.remove(held)
                self._bytes -= held.size

    def expire(self, now: float) -> float:
        """Drop the requests whose callers stopped waiting; the time of the next such end (inf for none)."""
        due = math.inf
        for held in list(self._queue):
            deadline = held.deadline
            if deadline <= now:
                self._queue.remove(held)
                self._bytes -= held.size
                self.expired += 1
                logger.info("%s: dropped a held %s whose caller stopped waiting", self._what, held.head.kind)
            else:
                due = min(due, deadline)
        return due

    def drop_all(self) -> None:
        """The device is no longer bridged: every held request is dropped (counted, logged)."""
        if self._queue:
            logger.warning("%s left: %d held request(s) dropped", self._what, len(self._queue))
            self.refused += len(self._queue)
        self._queue.clear()
        self._bytes = 0


def _same(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b
