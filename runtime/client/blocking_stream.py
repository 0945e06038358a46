"""``runtime.Stream``: a blocking client's stream, read on a connection of its own.

A stream has its own DEALER (``Link``, made by ``BlockingRequests._open_stream``), so
that its items never meet the replies of the calls its thread makes meanwhile and
any thread may read it. What arrives goes to the shared ``StreamState``; this module
adds only how a blocking reader waits and how a credit or a cancel goes out.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from runtime.client.streaming import CANCEL_PATIENCE, StreamBase, StreamState
from runtime.errors import CallTimeout, ZidlError
from runtime.protocol.messages import cancel, read_reply
from runtime.protocol.names import ERR, OK
from runtime.protocol.wire import Limits

T = TypeVar("T")
R = TypeVar("R")


class Link(Protocol):
    """The stream's own connection to the device."""

    def receive(self, until: float | None) -> list[Any] | None:
        """The next message, or None when ``until`` (monotonic) passes first; raises ``ConnectionLost``,
        ``ClientClosed``."""
        ...

    def waiting(self) -> list[Any] | None:
        """A message that has already arrived, or None."""
        ...

    def send(self, frames: list[Any]) -> None:
        """Send at once (a credit, a cancel); a message the socket cannot take is dropped."""
        ...

    def close(self, *, flush: bool) -> None:
        """Close the connection; with ``flush``, what was just sent still goes out."""
        ...


class Stream(StreamBase[T, R]):
    """The items of a stream method as they come: ``for item in stream``, then ``stream.result()``.

    ``with stream:`` (or ``cancel()``) stops it on the device. Iteration raises what
    the call met (the declared error or ``RemoteError``, ``CallTimeout`` when no item
    came within the method's timeout, ``ConnectionLost``); a cancelled stream's
    iteration just ends. ``skipped`` counts the items the reader never saw.
    """

    def __init__(
        self,
        state: StreamState[T, R],
        link: Link,
        request_id: int,
        where: str,
        timeout: float | None,
        limits: Limits,
    ) -> None:
        super().__init__(state, request_id, where, timeout, link.send)
        self._link = link
        self._limits = limits
        self._reading = threading.Lock()
        """Held by the thread that reads the connection; a ``cancel()`` from another thread is left to it."""
        self._cancel_asked = False
        self._closed = False

    def __iter__(self) -> Iterator[T]:
        return self

    def __next__(self) -> T:
        with self._reading, self._interruptible():
            state = self._state
            while True:
                if self._cancel_asked:
                    self._cancel_now()
                if state.latest and state.open:  # the newest item may be waiting behind the ones taken so far
                    self._take_waiting()
                if state.items:
                    value = state.take()
                    self._grant()
                    return value
                if not state.open:
                    self._close()
                    raise state.stop_iteration()
                self._wait()

    def result(self) -> R:
        """Wait for the end, skipping the items not read; the final value, or raise what ended the stream."""
        with self._reading, self._interruptible():
            state = self._state
            while state.open:
                if self._cancel_asked:
                    self._cancel_now()
                    break
                state.skip_all()
                self._grant()
                self._wait()
            state.skip_all()
            self._close()
            return state.result()

    def cancel(self) -> None:
        """Stop the stream: the device is told and closes its generator; iteration ends, ``result()`` raises
        ``Cancelled``. From a thread other than the reader's, the reader does it within a tenth of a second."""
        if self._reading.acquire(blocking=False):
            try:
                self._cancel_now()
            finally:
                self._reading.release()
        else:
            self._cancel_asked = True

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.cancel()

    # --- with ``_reading`` held ----------------------------------------------------------------

    @contextlib.contextmanager
    def _interruptible(self) -> Iterator[None]:
        """A ``KeyboardInterrupt`` while the reader waits cancels the stream, and is raised once the device knows."""
        try:
            yield
        except KeyboardInterrupt:
            self._cancel_now(confirm=True)
            raise

    def _wait(self) -> None:
        """Wait for one message of the stream, at most the method's timeout; what it brings goes to the state."""
        until = None if self._timeout is None else time.monotonic() + self._timeout
        try:
            frames = self._link.receive(until)
        except ZidlError as exc:  # the connection was lost, or the client closed
            self._state.fail(exc)
            return
        if frames is None:
            self._state.fail(CallTimeout(f"{self._where}: no item within {self._timeout} s"))
            self._send(cancel(self._id))
            self._close(flush=True)
            return
        self._deliver(frames)

    def _take_waiting(self) -> None:
        try:
            while (frames := self._link.waiting()) is not None:
                self._deliver(frames)
        except ZidlError as exc:
            self._state.fail(exc)

    def _deliver(self, frames: list[Any]) -> None:
        try:
            reply_id, kind, body = read_reply(frames, self._limits)
        except ZidlError as exc:
            self._state.fail(exc)
            return
        if reply_id == self._id:
            self._state.receive(kind, body)

    def _cancel_now(self, *, confirm: bool = False) -> None:
        """Tell the device; with ``confirm`` (an interrupted reader), wait until it says so, within reason."""
        self._cancel_asked = False
        if not self._state.cancel():
            self._close()
            return
        self._send(cancel(self._id))
        if confirm:
            self._confirmed()
        self._close(flush=True)

    def _confirmed(self) -> None:
        """Read until the device's reply to the cancel (or the stream's last reply) comes, for ``CANCEL_PATIENCE``."""
        until = time.monotonic() + CANCEL_PATIENCE
        try:
            while (frames := self._link.receive(until)) is not None:
                reply_id, kind, _body = read_reply(frames, self._limits)
                if reply_id == self._id and kind in (OK, ERR):
                    return
        except ZidlError:
            return

    def _close(self, *, flush: bool = False) -> None:
        if not self._closed:
            self._closed = True
            self._link.close(flush=flush)
