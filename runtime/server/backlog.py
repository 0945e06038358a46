"""The backlog: serial calls waiting, in arrival order, behind the one that runs, bounded in calls and in bytes."""

from __future__ import annotations

from collections import deque

from runtime.protocol.limits import Limits
from runtime.server.runners import Call


class Backlog:
    """A bounded queue of calls; the engine uses it under its ``turn`` lock only."""

    def __init__(self, limits: Limits) -> None:
        self._most = limits.max_backlog
        self._most_bytes = limits.max_backlog_bytes
        self._calls: deque[Call] = deque()
        self.bytes = 0
        """The bytes of the messages of the calls waiting."""

    def __len__(self) -> int:
        return len(self._calls)

    def offer(self, call: Call) -> bool:
        """Queue ``call`` unless the backlog is full (``Limits.max_backlog``, ``max_backlog_bytes``); an empty
        backlog takes any call."""
        calls = self._calls
        if len(calls) >= self._most or (calls and self.bytes + call.size > self._most_bytes):
            return False
        calls.append(call)
        self.bytes += call.size
        return True

    def take(self) -> Call | None:
        """The call that waited longest, or None."""
        if not self._calls:
            return None
        call = self._calls.popleft()
        self.bytes -= call.size
        return call

    def drop_caller(self, caller: bytes) -> list[Call]:
        """Take out every call of ``caller`` (who is gone), keeping the others in order."""
        dropped = [call for call in self._calls if call.caller == caller]
        if dropped:
            self._calls = deque(call for call in self._calls if call.caller != caller)
            self.bytes -= sum(call.size for call in dropped)
        return dropped
