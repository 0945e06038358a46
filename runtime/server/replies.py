"""Replies leaving a running server, and what they hold for connections that do not read them.

A ROUTER queues replies for a peer that does not read them, up to ``SNDHWM``
(``Limits.max_unread_replies``) of them whatever their size. A reply of ``TRACKED``
bytes or more leaves with its last frame tracked (``send_tracked``), so the server
learns when libzmq has handed it on to the network; one that would take its
connection over ``max_unread_bytes``, or over its share of ``max_unread_bytes_total``
(no more than is free), is dropped, counted and logged instead. What stays unbounded
in bytes is under ``SNDHWM x TRACKED`` a connection, plus the kernel's socket
buffers. Only the thread that owns the sockets sends.
"""

from __future__ import annotations

import errno
import logging
import time
from collections import deque
from typing import Any, Final

import zmq

from runtime.protocol.limits import Limits
from runtime.transport.sockets import NOBLOCK, Socket, send_frame, send_frames, send_tracked

logger = logging.getLogger(__name__)

TRACKED: Final = 64 * 1024
"""Replies of this many bytes or more are tracked: pyzmq's copy threshold, above which frames are not copied."""
_MORE: Final = int(zmq.SNDMORE) | NOBLOCK
_SETTLE: Final = 0.25
"""Seconds between looks at which tracked replies libzmq has handed on, while any are unread."""


class Replies:
    """Sends replies on a ROUTER (``ROUTER_MANDATORY``: a reply to a peer that is gone says so, in ``departed``).

    A departure is only noted: a reply may be sent under the lock of what sent it (a stream's, for its items), and what
    a departure cancels takes those locks, so the owner of the sockets acts on ``departed`` between two messages.
    """

    def __init__(self, router: Socket, limits: Limits) -> None:
        router.setsockopt(zmq.ROUTER_MANDATORY, 1)
        router.setsockopt(zmq.SNDHWM, limits.max_unread_replies)
        self._router = router
        self._hwm = limits.max_unread_replies
        self._per_connection = limits.max_unread_bytes
        self._most = limits.max_unread_bytes_total
        self.departed: list[bytes] = []
        """Callers a reply found gone, for the socket owner to act on (``Engine._lead``)."""
        self._sent: dict[bytes, deque[tuple[zmq.MessageTracker, int]]] = {}
        self._held: dict[bytes, int] = {}
        self._settle_at = 0.0
        self.unread = 0
        """Bytes of tracked replies libzmq still holds, every connection together."""
        self.dropped = 0

    def send(self, caller: bytes, frames: list[Any]) -> None:
        """Send a reply to ``caller``, or drop it when its connection has no room for it."""
        router = self._router
        size = 0
        try:
            if len(frames) == 1:  # most replies: the header alone, sent as ``send_frames`` would, written out
                size = len(frames[0])
                if size < TRACKED:
                    send_frame(router, caller, _MORE, False)
                    send_frame(router, frames[0], NOBLOCK, False)
                    return
            else:
                size = sum(map(len, frames))
            if size < TRACKED:
                send_frames(router, [caller, *frames], NOBLOCK)
            elif self._admit(caller, size):
                tracker = send_tracked(router, [caller, *frames], NOBLOCK)
                self._sent.setdefault(caller, deque()).append((tracker, size))
                self._held[caller] = self._held.get(caller, 0) + size
                self.unread += size
        except zmq.Again:
            self._drop(size, f"its connection has {self._hwm} replies unread")
        except zmq.ZMQError as exc:
            if exc.errno == errno.EHOSTUNREACH:
                self.departed.append(caller)
            else:
                logger.warning("could not send a reply: %s", exc)

    def tick(self) -> float:
        """Every ``_SETTLE`` seconds, forget the tracked replies libzmq has handed on; seconds until the next time."""
        now = time.monotonic()
        if now >= self._settle_at:
            for caller in list(self._sent):
                self._settle(caller)
            self._settle_at = now + _SETTLE
        return self._settle_at - now

    def _admit(self, caller: bytes, size: int) -> bool:
        """Whether a reply of ``size`` bytes may be queued for ``caller``: a connection holding none always may."""
        if caller in self._sent:
            self._settle(caller)
        held = self._held.get(caller, 0)
        if held and held + size > self._per_connection:
            return self._drop(size, f"{held} bytes of replies to its connection are unread")
        if self._over_share(held, size):
            self._settle_at = 0.0
            self.tick()
            held = self._held.get(caller, 0)
            if self._over_share(held, size):
                return self._drop(size, f"{self.unread} bytes of replies to every connection are unread")
        return True

    def _over_share(self, held: int, size: int) -> bool:
        """Whether a connection holding ``held`` bytes would, with ``size`` more, hold more of
        ``max_unread_bytes_total`` than is free: one that never reads leaves the others room."""
        return bool(self.unread) and held + size > self._most - self.unread

    def _settle(self, caller: bytes) -> None:
        sent = self._sent[caller]
        while sent and sent[0][0].done:
            _, size = sent.popleft()
            self._held[caller] -= size
            self.unread -= size
        if not sent:
            del self._sent[caller]
            del self._held[caller]

    def _drop(self, size: int, why: str) -> bool:
        self.dropped += 1
        level = logging.WARNING if _round(self.dropped) else logging.DEBUG
        logger.log(level, "dropped a reply of %d bytes (%d dropped so far): %s", size, self.dropped, why)
        return False


def _round(count: int) -> bool:
    """1, 10, 100...: when a count repeated in the log is worth a warning."""
    while count % 10 == 0:
        count //= 10
    return count == 1
