"""An asyncio client's signals: ``AsyncSignal``, and ``AsyncSignalHub``, whose SUB socket, reader and monitor run
on the client's loop; coroutine callbacks are scheduled as tasks (how subscriptions are confirmed:
``runtime.client.hub``)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import Callable
from typing import Any, Generic, ParamSpec

import zmq
import zmq.asyncio
from zmq.utils.monitor import parse_monitor_message

from runtime.client.hub import HubBase, Subscriber
from runtime.errors import CallTimeout, ClientClosed
from runtime.transport.security import CurveClient

logger = logging.getLogger(__name__)

P = ParamSpec("P")


class AsyncSignalHub(HubBase[asyncio.Future[None]]):
    """An asyncio client's signals: a SUB socket, its reader and its monitor on the client's loop."""

    def _init_state(self) -> None:
        self._subscriber: Subscriber | None = None
        self._sub: zmq.asyncio.Socket | None = None
        self._watched: zmq.asyncio.Socket | None = None
        self._readers: list[asyncio.Task[None]] = []
        self._timer: asyncio.TimerHandle | None = None
        """Gives up on the welcome confirming a move after ``patience``."""
        self._tasks: set[asyncio.Future[Any]] = set()

    def _socket(self) -> zmq.asyncio.Socket:
        """The SUB socket, connected on first use (and by a move), with its reader and monitor tasks."""
        if self._closed:
            raise ClientClosed(f"{self._what} is closed")
        if self._sub is None:
            subscriber = self._new_subscriber()
            sub = zmq.asyncio.Socket.from_socket(subscriber.socket)
            watched = zmq.asyncio.Socket.from_socket(subscriber.monitor.socket)
            loop = asyncio.get_running_loop()
            self._readers = [loop.create_task(self._read(sub)), loop.create_task(self._watch(watched))]
            self._subscriber, self._sub, self._watched = subscriber, sub, watched
        return self._sub

    def _close_socket(self) -> list[asyncio.Task[None]]:
        """Close the SUB socket and its monitor; the reader tasks, cancelled, are returned to be awaited."""
        readers, self._readers = self._readers, []
        for reader in readers:
            reader.cancel()
        if self._subscriber is not None:
            self._subscriber.monitor.stop()
        for each in (self._watched, self._sub):
            if each is not None:
                each.close(linger=0)
        if self._subscriber is not None:
            self._subscriber.close()
        self._subscriber = self._sub = self._watched = None
        return readers

    async def subscribe(self, name: str, callback: Callable[..., object], timeout: float | None) -> None:
        sub = self._socket()
        self._deliveries.add(name, callback)
        live: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        token = self._subscribe_on(sub, name, live)
        try:
            await asyncio.wait_for(live, timeout)
        except TimeoutError:
            raise CallTimeout(
                f"{self._what}: the subscription to {name} was not confirmed within {timeout} s"
            ) from None
        finally:
            self._pending.pop(token, None)

    async def unsubscribe(self, name: str, callback: Callable[..., object]) -> None:
        if self._deliveries.remove(name, callback) and self._sub is not None:
            self._unsubscribe_on(self._sub, name)

    def move(self, address: str, curve: CurveClient | None) -> None:
        """Take the signals from ``address`` from now on (the handshake's signal address)."""
        if not self._take_address(address, curve):
            return
        if self._sub is None:
            return  # nothing subscribed yet: the first subscription connects there
        self._close_socket()
        self._resubscribe(self._socket())

    async def close(self) -> None:
        self._closed = True
        self._stop_confirming()
        for reader in self._close_socket():
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        for task in list(self._tasks):
            task.cancel()
        for live in self._pending.values():
            if not live.done():
                live.set_exception(ClientClosed(f"{self._what} is closed"))

    def _now_live(self, live: asyncio.Future[None]) -> None:
        if not live.done():
            live.set_result(None)

    def _start_confirming(self) -> None:
        self._stop_confirming()
        self._timer = asyncio.get_running_loop().call_later(self._patience, self._time_is_up, self._confirming)

    def _stop_confirming(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _time_is_up(self, token: bytes | None) -> None:
        if token == self._confirming:
            self._not_confirmed(self._sub, self._address)

    async def _watch(self, watched: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames: list[bytes] = await watched.recv_multipart()
            except zmq.ZMQError:
                return
            if parse_monitor_message(frames)["event"] == zmq.EVENT_DISCONNECTED:
                self._report_lost(f"lost the connection to {self._address}")

    async def _read(self, sub: zmq.asyncio.Socket) -> None:
        while True:
            try:
                frames: list[Any] = await sub.recv_multipart(copy=False)
            except zmq.ZMQError:
                return
            decoded = self._take(sub, frames[0].bytes, frames)
            if decoded is None:
                continue
            name, values = decoded
            for callback in self._deliveries.snapshot(name):
                try:
                    result = callback(*values)
                except Exception:
                    logger.exception("%s: a callback of %s raised", self._what, name)
                    continue
                if inspect.isawaitable(result):
                    task = asyncio.ensure_future(result)
                    self._tasks.add(task)
                    task.add_done_callback(self._finished)

    def _finished(self, task: asyncio.Future[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            logger.error("%s: a signal callback raised", self._what, exc_info=task.exception())


class AsyncSignal(Generic[P]):
    """A signal of an asyncio client: ``await connect(callback)``; plain or coroutine callbacks run on the loop."""

    def __init__(self, name: str, hub: Callable[[], AsyncSignalHub], timeout: Callable[[], float | None]) -> None:
        self.name = name
        self._hub = hub
        self._timeout = timeout

    async def connect(self, callback: Callable[P, object]) -> None:
        """Call ``callback(*args)`` on each emission (awaiting it when it is a coroutine); returns once live."""
        await self._hub().subscribe(self.name, callback, self._timeout())

    async def disconnect(self, callback: Callable[P, object]) -> None:
        """Stop calling ``callback``."""
        await self._hub().unsubscribe(self.name, callback)

    @property
    def missed(self) -> int:
        """How many emissions were lost (counted from sequence numbers)."""
        return self._hub().missed.get(self.name, 0)

    def __repr__(self) -> str:
        return f"<AsyncSignal {self.name}>"
