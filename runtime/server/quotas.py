"""Quotas: what each connection may have a running server work on, and what waits for its pool.

A connection (one client thread's socket) may have ``Limits.max_calls_per_caller``
calls and writes accepted and not yet ended; the pool that runs ``concurrent`` calls
and writes queues at most ``max_backlog`` of them (``max_backlog_bytes`` of their
messages), and the device runs at most ``max_concurrent_streams`` streams on threads of
their own, each connection within its share of both (``runtime.server.shares``). Over a
quota the dispatcher refuses the request with an error reply, so a greedy peer is told
at once and the others are not slowed. ``Usage`` is what a running server holds for
its peers, as ``Server.usage`` reports it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

from runtime.protocol.limits import Limits
from runtime.server.shares import Shares


@dataclass(frozen=True)
class Usage:
    """What a running server holds for its peers at one moment; every count falls back to 0 once they leave."""

    calls: int
    """Calls and property writes accepted and not yet ended, of every connection."""
    callers: int
    """Connections with any of those."""
    backlog: int
    """Serial calls waiting behind the one that runs."""
    backlog_bytes: int
    """The bytes of their messages."""
    pool_waiting: int
    """``concurrent`` calls and property writes waiting for a pool thread."""
    subscriptions: int
    """Signal subscriptions the publisher applies (one per subscribed connection and signal)."""
    unread_bytes: int
    """Bytes of large replies still queued for connections that have not read them."""
    dropped_replies: int
    """Replies dropped since the server started because their connection read too little of what it was sent."""
    refused: int
    """Requests refused over a limit since the server started."""


class Quotas:
    """Counts each connection's requests in progress and the pool's queue; safe from any thread."""

    def __init__(self, limits: Limits) -> None:
        self._per_caller = limits.max_calls_per_caller
        self._waiting = Shares(limits.max_backlog, limits.max_backlog_bytes)
        self._streams = Shares(limits.max_concurrent_streams)
        self._lock = threading.Lock()
        self._held: dict[bytes, list[None]] = {}
        self.refused = 0

    def admit(self, caller: bytes) -> bool:
        """Count one more request in progress for ``caller``; False, and nothing counted, when it has its quota.

        Called for every request, so without a lock: a caller's requests in progress are the tokens of a list,
        changed only by single dict and list operations, which the GIL makes atomic. A release racing an admit
        can lose a token (the count falls one short, a bound one looser), never add one.
        """
        held = self._held.get(caller)
        if held is None:
            held = self._held.setdefault(caller, [])
        if len(held) >= self._per_caller:
            return False
        held.append(None)
        return True

    def release(self, caller: bytes) -> None:
        """One request of ``caller`` ended (answered, failed, or dropped unanswered)."""
        held = self._held.get(caller)
        if held:
            try:
                held.pop()
            except IndexError:  # emptied meanwhile
                return
            if not held:
                self._held.pop(caller, None)

    def queue(
        self, caller: bytes, size: int, submit: Callable[[Callable[[], None]], object], work: Callable[[], None]
    ) -> bool:
        """Hand ``work`` (from ``caller``'s message of ``size`` bytes) to the pool through ``submit``; False when
        ``caller`` has its share of the pool's queue (see ``Shares``)."""
        with self._lock:
            if not self._waiting.take(caller, size):
                return False

        def start() -> None:
            with self._lock:
                self._waiting.give(caller, size)
            work()

        submit(start)
        return True

    def open_stream(self, caller: bytes) -> bool:
        """Count a ``concurrent`` stream (a thread) ``caller`` opens; False over its share of
        ``Limits.max_concurrent_streams``."""
        with self._lock:
            return self._streams.take(caller, 0)

    def close_stream(self, caller: bytes) -> None:
        """A ``concurrent`` stream of ``caller`` ended and its thread with it."""
        with self._lock:
            self._streams.give(caller, 0)

    @property
    def waiting(self) -> int:
        """``concurrent`` calls and property writes waiting for a pool thread."""
        return self._waiting.calls

    def refusal(self) -> None:
        """Count a request refused over a limit (of a message, a quota or a queue)."""
        with self._lock:
            self.refused += 1

    def in_progress(self) -> tuple[int, int]:
        """The requests in progress, and the connections they belong to."""
        held = list(self._held.values())
        return sum(map(len, held)), sum(1 for tokens in held if tokens)
