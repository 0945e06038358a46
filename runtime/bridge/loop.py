"""The one thread that owns every socket of a bridge: it polls them all and hands each readable one to its handler.

Other threads (the registry watcher's) reach it through ``call_soon``, a queue and a
``Waker``; handlers that run on it add and remove sockets with ``watch`` and
``unwatch``. A handler that fails is logged and the loop goes on.
"""

from __future__ import annotations

import logging
import math
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq
from zmq import zmq_poll

from runtime.transport.sockets import Socket, Waker

logger = logging.getLogger(__name__)

Tick = Callable[[float], float]
"""Called on every turn with the monotonic time: does what is due, returns the seconds until more is (inf: none)."""


class Loop:
    """The sockets of a bridge and the handlers of each, served by ``run`` on one thread."""

    def __init__(self) -> None:
        self._waker = Waker()
        self._items: list[tuple[Any, int]] = [(self._waker.fileno(), zmq.POLLIN)]
        """What ``zmq_poll`` is handed, in the order sockets were watched: a turn handles them in that order."""
        self._handlers: dict[Any, Callable[[], None]] = {}
        self._calls: queue.SimpleQueue[Callable[[], None]] = queue.SimpleQueue()
        self.stopping = threading.Event()

    def watch(self, sock: Socket, handler: Callable[[], None]) -> None:
        """Call ``handler`` whenever ``sock`` is readable (on the loop's thread), after those watched before it."""
        self._items.append((sock, zmq.POLLIN))
        self._handlers[sock] = handler

    def unwatch(self, sock: Socket) -> None:
        """Forget ``sock``, before it is closed."""
        if self._handlers.pop(sock, None) is not None:
            self._items = [item for item in self._items if item[0] is not sock]

    def call_soon(self, call: Callable[[], None]) -> None:
        """Run ``call`` on the loop's thread (from any thread)."""
        self._calls.put(call)
        self._waker.wake()

    def stop(self) -> None:
        self.stopping.set()
        self._waker.wake()

    def run(self, tick: Tick) -> None:
        """Serve until ``stop()``; then return, leaving the sockets to their owners to close."""
        waker = self._waker.fileno()
        while not self.stopping.is_set():
            due = self._safely(tick, time.monotonic())
            timeout = -1 if due is None or math.isinf(due) else max(0, math.ceil(due * 1000))
            for sock, _ in zmq_poll(self._items, timeout):
                if sock == waker:
                    self._waker.drain()
                    while not self._calls.empty():
                        self._safely(self._calls.get_nowait())
                    continue
                handler = self._handlers.get(sock)
                if handler is not None:  # else unwatched by a handler earlier in this turn
                    self._safely(handler)

    def close(self) -> None:
        self._waker.close()

    def _safely(self, call: Callable[..., Any], *args: Any) -> Any:
        try:
            return call(*args)
        except zmq.ContextTerminated:
            raise
        except Exception:
            logger.exception("the bridge met an error; bridging on")
            return None
