"""The backlog: serial calls waiting, in arrival order, behind the one that runs, bounded in calls and in bytes."""

from __future__ import annotations

from collections import deque

from runtime.protocol.limits import Limits
from runtime.server.runners import Call
from runtime.server.shares import Shares


class Backlog:
    """A bounded queue of calls, each connection within its share; the engine uses it under its ``turn`` lock only."""

    def __init__(self, limits: Limits) -> None:
        self._shares = Shares(limits.max_backlog, limits.max_backlog_bytes)
        self._calls: deque[Call] = deque()

    def __len__(self) -> int:
        return len(self._calls)

    @property
    def message_bytes(self) -> int:
        """The bytes of the messages of the calls waiting."""
        return self._shares.bytes

    def offer(self, call: Call) -> bool:
        """Queue ``call`` unless its connection has its share of the backlog (``Limits.max_backlog``,
        ``max_backlog_bytes``, see ``Shares``)."""
        if not self._shares.take(call.caller, call.size):
            return False
        self._calls.append(call)
        return True

    def take(self) -> Call | None:
        """The call that waited longest, or None."""
        if not self._calls:
            return None
        call = self._calls.popleft()
        self._shares.give(call.caller, call.size)
        return call

    def drop_caller(self, caller: bytes) -> list[Call]:
        """Take out every call of ``caller`` (who is gone), keeping the others in order."""
        dropped = [call for call in self._calls if call.caller == caller]
        if dropped:
            self._calls = deque(call for call in self._calls if call.caller != caller)
            for call in dropped:
                self._shares.give(caller, call.size)
        return dropped
