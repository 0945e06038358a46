"""Which connection each caller of a ROUTER came on, so that a dropped connection names the callers it carried.

A ROUTER does not say which peer went away. Its monitor does say which connection
dropped (``EVENT_DISCONNECTED``, whose value is the connection's file descriptor),
and each received message says which connection it came on (``ZMQ_SRCFD``), so the
first message of each caller maps its identity to its connection. A ROUTER gives
every new connection a new identity, so a caller never moves to another one.

A file descriptor is reused by a later connection once closed, and libzmq reports a
disconnect before it closes the descriptor: when a new caller's first message is
read, the disconnect of the connection that had its descriptor is already waiting on
the monitor. So ``note`` reads the monitor first, and a caller of a reused descriptor
is never taken for one of the dropped connection, however many messages the owner
reads in a turn (the bridge reads them in batches). ``inproc://`` has no descriptors:
its callers are never reported (they are in this process).
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
        self.departed: list[bytes] = []
        """Callers whose connection dropped, found by ``note``: the owner takes them with ``dropped()`` once it is
        between two messages."""

    def note(self, caller: bytes, frame: zmq.Frame) -> None:
        """Remember the connection ``frame`` (the first of a message of ``caller``, a new caller) came on, once the
        disconnects reported so far are read."""
        self._read_monitor()
        try:
            self.sources[caller] = frame.get(_SRCFD)
        except zmq.ZMQError:  # inproc: no descriptor
            self.sources[caller] = _NO_CONNECTION

    def dropped(self) -> list[bytes]:
        """Read the monitor: the callers whose connection dropped since the last look (forgotten here)."""
        self._read_monitor()
        gone, self.departed = self.departed, []
        return gone

    def forget(self, caller: bytes) -> None:
        """A caller found gone another way (a send to it failed)."""
        self.sources.pop(caller, None)

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._router.disable_monitor()
        self.socket.close(linger=0)

    def _read_monitor(self) -> None:
        fds: set[int] = set()
        while True:
            try:
                if not readable(self.socket):
                    break
                event = parse_monitor_message(self.socket.recv_multipart(zmq.NOBLOCK))
            except zmq.ZMQError:  # closed under us
                break
            if event["event"] == zmq.EVENT_DISCONNECTED:
                fds.add(int(event["value"]))
        if fds:
            gone = [caller for caller, fd in self.sources.items() if fd in fds]
            for caller in gone:
                del self.sources[caller]
            self.departed.extend(gone)
