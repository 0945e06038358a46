"""The deadlines of an asyncio client's calls in flight, kept on one event-loop timer."""

from __future__ import annotations

import asyncio
import heapq
import math
from collections.abc import Callable, Collection

Expire = Callable[[int, str, str | None, float | None], None]
"""Called with a call's request id, kind, name and timeout when its deadline passes while it is in flight."""


class Deadlines:
    """When each call in flight gives up, on one ``loop.call_at`` timer for all of them.

    A timer per call would cost each call a ``TimerHandle``, its heap entry compared
    in Python and its cancellation. Here the entries are ``(deadline, request id, ...)``
    tuples in a heap, compared in C, and the one timer is armed for the earliest
    deadline. An entry whose call has ended (its id no longer ``live``) stays until it
    reaches the top of the heap, where ``add`` and the timer drop it: calls that end in
    the order they were made keep the heap about as long as the number of calls in
    flight. Behind one long call the ended ones pile up; ``add`` then keeps only the
    live ones, so the heap never holds more than about twice as many entries as there
    are calls in flight.
    """

    def __init__(self, expire: Expire, live: Collection[int]) -> None:
        self._expire = expire
        self._live = live
        self._heap: list[tuple[float, int, str, str | None, float | None]] = []
        self._timer: asyncio.TimerHandle | None = None
        self._due = math.inf

    def add(
        self,
        loop: asyncio.AbstractEventLoop,
        deadline: float,
        request_id: int,
        kind: str,
        name: str | None,
        timeout: float | None,
    ) -> None:
        """Give call ``request_id`` until ``deadline`` (the loop's time); the rest goes to ``expire``."""
        heap, live = self._heap, self._live
        while heap and heap[0][1] not in live:
            heapq.heappop(heap)
        if len(heap) > 2 * len(live) + 64:  # ended calls held behind a long one: keep only the live
            heap[:] = [entry for entry in heap if entry[1] in live]
            heapq.heapify(heap)
        heapq.heappush(heap, (deadline, request_id, kind, name, timeout))
        if deadline < self._due:
            self._arm(loop, deadline)

    def __len__(self) -> int:
        """How many entries the heap holds, those of ended calls included."""
        return len(self._heap)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer, self._due = None, math.inf
        self._heap.clear()

    def _arm(self, loop: asyncio.AbstractEventLoop, due: float) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = loop.call_at(due, self._fire, loop)
        self._due = due

    def _fire(self, loop: asyncio.AbstractEventLoop) -> None:
        self._timer, self._due = None, math.inf
        heap, live = self._heap, self._live
        now = loop.time()
        while heap and (heap[0][0] <= now or heap[0][1] not in live):
            _deadline, request_id, kind, name, timeout = heapq.heappop(heap)
            if request_id in live:
                self._expire(request_id, kind, name, timeout)
        if heap:
            self._arm(loop, heap[0][0])
