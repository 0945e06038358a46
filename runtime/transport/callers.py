"""Which connection each caller of a ROUTER came on, so that a dropped connection names the callers it carried.

A ROUTER does not say which peer went away. Its monitor does say which connection
dropped (``EVENT_DISCONNECTED``, whose value is the connection's file descriptor),
and each received message says which connection it came on (``ZMQ_SRCFD``), so the
first message of each caller maps its identity to its connection. A ROUTER gives
every new connection a new identity, so a caller never moves to another one.

A file descriptor is reused by a later connection once closed, and the new
connection's first message can be read before the old one's disconnect (an owner
that reads several messages in a turn, or a disconnect reported just after a poll):
a new caller on a descriptor that still names another caller means that caller's
connection is gone. It is reported with the next drops, and the disconnect still to
come for that descriptor is taken as its, never as the new caller's. ``inproc://``
has no descriptors: its callers are never reported (they are in this process).
"""

from __future__ import annotations

import contextlib
from typing import Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from runtime.transport.sockets import Socket, readable, zmq_errors

_SRCFD: Final = int(zmq.SRCFD)
_NO_CONNECTION: Final = -1


class Callers:
    """The connection of each caller of one ROUTER, and the callers a dropped connection carried."""

    def __init__(self, router: Socket) -> None:
        with zmq_errors("monitoring the server's connections"):
            self.socket: Socket = router.get_monitor_socket(zmq.EVENT_DISCONNECTED)
        self._router = router
        self.sources: dict[bytes, int] = {}
        """Each caller's connection (a file descriptor); the socket's owner tests membership before ``note``."""
        self._on: dict[int, bytes] = {}
        """The caller last seen on each descriptor."""
        self._unreported: dict[int, int] = {}
        """Disconnects still to come for descriptors whose caller was already let go, by descriptor."""
        self._departed: list[bytes] = []

    def note(self, caller: bytes, frame: zmq.Frame) -> None:
        """Remember the connection ``frame`` (the first of a message of ``caller``, a new caller) came on."""
        try:
            fd = frame.get(_SRCFD)
        except zmq.ZMQError:  # inproc: no descriptor
            self.sources[caller] = _NO_CONNECTION
            return
        before = self._on.get(fd)
        if before is not None:  # its connection closed, and its disconnect is not read yet
            self._unreported[fd] = self._unreported.get(fd, 0) + 1
            if self.sources.pop(before, None) is not None:
                self._departed.append(before)
        self._on[fd] = caller
        self.sources[caller] = fd

    def dropped(self) -> list[bytes]:
        """Read the monitor: the callers whose connection dropped since the last look (forgotten here)."""
        gone, self._departed = self._departed, []
        while True:
            try:
                if not readable(self.socket):
                    break
                event = parse_monitor_message(self.socket.recv_multipart(zmq.NOBLOCK))
            except zmq.ZMQError:  # closed under us
                break
            if event["event"] != zmq.EVENT_DISCONNECTED:
                continue
            fd = int(event["value"])
            if fd in self._unreported:  # the disconnect of a caller let go when its descriptor came back
                self._unreported[fd] -= 1
                if not self._unreported[fd]:
                    del self._unreported[fd]
                continue
            caller = self._on.pop(fd, None)
            if caller is not None and self.sources.pop(caller, None) is not None:
                gone.append(caller)
        return gone

    def forget(self, caller: bytes) -> None:
        """A caller found gone another way (a send to it failed): never reported; its disconnect is still its own."""
        self.sources.pop(caller, None)

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._router.disable_monitor()
        self.socket.close(linger=0)
