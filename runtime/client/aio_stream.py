"""``runtime.AsyncStream``: an asyncio client's stream, over the client's one connection.

The stream's entry in the table of calls waiting is an ``Inbox`` in place of a
future: the reader task hands it each message of the stream as it would resolve a
call, and the shared ``StreamState`` takes it. This module adds only how an asyncio
reader waits, and that a task cancelled while it waits cancels the stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from types import TracebackType
from typing import Any, Protocol, Self, TypeVar

from runtime.client.streaming import StreamBase, StreamState
from runtime.errors import CallTimeout
from runtime.protocol.messages import cancel

T = TypeVar("T")
R = TypeVar("R")


class Inbox:
    """Where the reader task puts the messages of one stream (a ``Waiter`` of ``AsyncRequests``, as a future is).

    ``refused`` fails with the error that stopped the request from being sent (a refused
    handshake), which is what waiting to send looks at.
    """

    def __init__(self, state: StreamState[Any, Any], loop: asyncio.AbstractEventLoop) -> None:
        self.state = state
        self.arrived = asyncio.Event()
        self.refused: asyncio.Future[Any] = loop.create_future()

    def done(self) -> bool:
        """Once the stream has ended, what still comes for it is dropped, as a late reply is."""
        return not self.state.open

    def set_result(self, reply: tuple[Any, Any]) -> None:
        self.state.receive(*reply)
        self.arrived.set()

    def set_exception(self, error: BaseException) -> None:
        self.state.fail(error)
        if not self.refused.done():
            self.refused.set_exception(error)
            self.refused.exception()  # retrieved: nobody need await it
        self.arrived.set()


class Channel(Protocol):
    """What an ``AsyncStream`` asks of its client."""

    def send_now(self, frames: list[Any]) -> None:
        """Send a credit or a cancel at once (dropped when the socket cannot take it)."""
        ...

    def forget(self, request_id: int) -> None:
        """The stream ended: its entry leaves the table of calls waiting."""
        ...


class AsyncStream(StreamBase[T, R]):
    """The items of a stream method as they come: ``async for item in stream``, then ``await stream.result()``.

    Not awaited itself: its request goes with the first ``async with``, ``async for``
    or ``result()``. ``async with stream:`` (or ``cancel()``) stops it on the device,
    and so does a task cancelled while it waits (``task.cancel()``, ``asyncio.timeout``,
    ``wait_for``). Iteration raises what the call met, as ``Stream``'s does.
    """

    def __init__(
        self,
        state: StreamState[T, R],
        channel: Channel,
        request_id: int,
        where: str,
        timeout: float | None,
        open_: Callable[[Inbox], Awaitable[None]],
    ) -> None:
        super().__init__(state, request_id, where, timeout, channel.send_now)
        self._channel = channel
        self._open = open_
        self._inbox: Inbox | None = None

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> T:
        state = self._state
        await self._started()
        while True:
            if state.items:
                value = state.take()
                self._grant()
                return value
            if not state.open:
                self._channel.forget(self._id)
                end = state.stop_iteration()
                raise StopAsyncIteration if isinstance(end, StopIteration) else end
            await self._wait()

    async def result(self) -> R:
        """Wait for the end, skipping the items not read; the final value, or raise what ended the stream."""
        state = self._state
        await self._started()
        while state.open:
            state.skip_all()
            self._grant()
            await self._wait()
        state.skip_all()
        self._channel.forget(self._id)
        return state.result()

    def cancel(self) -> None:
        """Stop the stream: the device is told at once and closes its generator; iteration ends, ``result()``
        raises ``Cancelled``."""
        if self._state.cancel() and self._inbox is not None:
            self._send(cancel(self._id))
        if self._inbox is not None:
            self._channel.forget(self._id)

    async def __aenter__(self) -> Self:
        await self._started()
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, trace: TracebackType | None
    ) -> None:
        self.cancel()

    async def _started(self) -> None:
        """Send the request, once; a task cancelled meanwhile cancels the stream."""
        if self._inbox is not None or not self._state.open:
            return
        inbox = Inbox(self._state, asyncio.get_running_loop())
        try:
            await self._open(inbox)
        except asyncio.CancelledError:
            self._inbox = inbox
            self.cancel()
            raise
        except BaseException as exc:
            self._state.fail(exc)
            raise
        self._inbox = inbox

    async def _wait(self) -> None:
        """Wait for one message of the stream, at most the method's timeout."""
        inbox = self._inbox
        if inbox is None:
            return
        inbox.arrived.clear()
        try:
            async with asyncio.timeout(self._timeout):
                await inbox.arrived.wait()
        except TimeoutError:
            self._state.fail(CallTimeout(f"{self._where}: no item within {self._timeout} s"))
            self._send(cancel(self._id))
        except asyncio.CancelledError:  # the task was cancelled (by its owner, asyncio.timeout, wait_for)
            self.cancel()
            raise
