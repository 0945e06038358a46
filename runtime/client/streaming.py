"""A stream as its reader sees it, written once and without I/O: what both ``Stream`` and ``AsyncStream`` share.

The drivers (``runtime.client.blocking_stream``, ``runtime.client.aio_stream``) feed
``StreamState`` what arrives and ask it what the reader gets next; their streams build
on ``StreamBase`` and add only how they wait and how a message goes out. The reader
opens a stream granting ``WINDOW`` items and grants again each time it has taken
``GRANT`` more, so the device runs at most ``WINDOW`` items ahead of its reader and a
credit message goes once per ``GRANT`` items. A ``latest`` reader takes the newest
item that has arrived and skips the older ones, as the device skips those it never sent.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from typing import Any, Final, Generic, TypeVar

from runtime.errors import Cancelled
from runtime.protocol.messages import credit
from runtime.protocol.names import ITEM

T = TypeVar("T")
R = TypeVar("R")

WINDOW: Final = 8
"""Items the device may send ahead of its reader: the credit a stream opens with."""
GRANT: Final = WINDOW // 2
"""Items a reader takes before it grants them again: one credit message per four items."""
CANCEL_PATIENCE: Final = 1.0
"""Seconds an interrupted blocking caller waits for the device to confirm a cancel before it goes on regardless."""


class _End(enum.Enum):
    OPEN = "open"
    FINISHED = "finished"
    """The device sent its final value."""
    FAILED = "failed"
    """The device sent an error, or the reader met one (a timeout, a lost connection)."""
    CANCELLED = "cancelled"


class StreamState(Generic[T, R]):
    """What arrived, what the reader took, the credit it owes, and how the stream ended.

    ``outcome`` turns the final reply's kind and body into its value or raises its
    error, as for a call; ``validate_item`` and ``validate_result`` are the method's.
    """

    def __init__(
        self,
        latest: bool,
        validate_item: Callable[[Any], Any],
        validate_result: Callable[[Any], Any],
        outcome: Callable[[Any, Any], Any],
    ) -> None:
        self.latest = latest
        self._validate_item = validate_item
        self._validate_result = validate_result
        self._outcome = outcome
        self.items: deque[Any] = deque()
        self.skipped = 0
        """Items the reader never saw: skipped by a ``latest`` stream, or by ``result()``."""
        self._last = 0
        self._taken = 0
        self._end = _End.OPEN
        self._final: Any = None
        self._error: BaseException | None = None

    @property
    def open(self) -> bool:
        """The device may still send: no final reply has come and the reader has not given up."""
        return self._end is _End.OPEN

    def receive(self, kind: Any, body: Any) -> None:
        """A message of this stream arrived: an item (``(number, value)``), or the final reply."""
        if self._end is not _End.OPEN:
            return  # after a cancel or a timeout: nobody reads it
        if kind == ITEM:
            number, value = body
            if type(number) is int and number > self._last:
                self.skipped += number - self._last - 1  # the device replaced what it could not send
                self._last = number
            self.items.append(value)
            return
        try:
            self._final = self._validate_result(self._outcome(kind, body))
            self._end = _End.FINISHED
        except Exception as exc:
            self.fail(exc)

    def fail(self, error: BaseException) -> None:
        """End the stream with ``error``, which iteration raises after the items that came before it."""
        if self._end is _End.OPEN:
            self._end, self._error = _End.FAILED, error

    def take(self) -> T:
        """The item the reader gets next (``items`` is not empty): the oldest, or for ``latest`` the newest."""
        if self.latest and len(self.items) > 1:
            self.skipped += len(self.items) - 1
            self._taken += len(self.items) - 1
            value = self.items.pop()
            self.items.clear()
        else:
            value = self.items.popleft()
        self._taken += 1
        item: T = self._validate_item(value)
        return item

    def skip_all(self) -> None:
        """``result()`` skips what the reader has not read."""
        self.skipped += len(self.items)
        self._taken += len(self.items)
        self.items.clear()

    def owed(self) -> int:
        """The credit to grant now: what the reader took since the last grant, once that is ``GRANT`` or more."""
        if self._taken < GRANT or self._end is not _End.OPEN:
            return 0
        owed, self._taken = self._taken, 0
        return owed

    def cancel(self) -> bool:
        """The reader cancels: iteration ends, ``result()`` raises ``Cancelled`` unless the final value had come.

        True when the device must be told (the stream was still open).
        """
        self.items.clear()
        if self._end is not _End.OPEN:
            return False
        self._end, self._error = _End.CANCELLED, Cancelled("the stream was cancelled by its reader")
        return True

    def stop_iteration(self) -> BaseException:
        """What iteration raises once the items are read: ``StopIteration`` at the end, or the error met."""
        if self._end is _End.FAILED and self._error is not None:
            return self._error
        return StopIteration()

    def result(self) -> R:
        """The final value, or raise what ended the stream (``Cancelled`` for a cancelled one)."""
        if self._end is _End.FINISHED:
            final: R = self._final
            return final
        if self._error is not None:
            raise self._error
        raise RuntimeError("the stream has not ended")


class StreamBase(Generic[T, R]):
    """What ``Stream`` and ``AsyncStream`` share: the state, the request it answers (as errors name it), the
    method's timeout, and ``send``, which sends a credit or a cancel at once or drops it."""

    def __init__(
        self,
        state: StreamState[T, R],
        request_id: int,
        where: str,
        timeout: float | None,
        send: Callable[[list[Any]], None],
    ) -> None:
        self._state = state
        self._id = request_id
        self._where = where
        self._timeout = timeout
        self._send = send

    @property
    def skipped(self) -> int:
        """Items the reader never saw: replaced by newer ones (``latest``), or skipped by ``result()``."""
        return self._state.skipped

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._where}{'' if self._state.open else ' ended'}>"

    def _grant(self) -> None:
        owed = self._state.owed()
        if owed:
            self._send(credit(self._id, owed))
