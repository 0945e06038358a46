"""ZeroMQ sockets: how they are made, bound, read and written, heartbeats, and the one place zmq errors are translated.

Every socket of the runtime is made by ``make_socket`` from the process's one
context, with ``LINGER 0`` and, where a peer may vanish, ZMTP heartbeats. Each has
one owner thread (or event loop); other threads reach an owner through a queue and
a ``Waker``. ``zmq_errors`` turns any ``zmq.ZMQError`` into a ``ZidlError``.
"""

from __future__ import annotations

import contextlib
import errno
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Final

import zmq
from zmq import zmq_poll

from runtime.errors import ClientClosed, ZidlError
from runtime.transport.addresses import host_of, split_tcp

Socket = zmq.Socket[bytes]


@dataclass(frozen=True)
class Heartbeat:
    """ZMTP heartbeats: a ping every ``interval`` seconds; a peer silent for ``timeout`` is gone."""

    interval: float = 1.0
    timeout: float = 3.0


DEFAULT_HEARTBEAT: Final = Heartbeat()


def context() -> zmq.Context[Socket]:
    """The process's one ZeroMQ context."""
    return zmq.Context.instance()


@contextlib.contextmanager
def zmq_errors(what: str) -> Iterator[None]:
    """Translate ZeroMQ errors raised inside the block into zidl errors naming ``what``."""
    try:
        yield
    except zmq.ZMQError as exc:
        raise translate(exc, what) from exc


def translate(exc: zmq.ZMQError, what: str) -> ZidlError:
    """The zidl error for ``exc``, met while doing ``what`` (for a hot path, where a ``with`` block costs too much)."""
    if exc.errno in (zmq.ETERM, zmq.ENOTSOCK):
        return ClientClosed(f"{what}: the socket is closed")
    if exc.errno == errno.EADDRINUSE:
        return ZidlError(f"{what}: the address is already in use")
    if exc.errno in (errno.EINVAL, errno.EPROTONOSUPPORT, errno.ENODEV, zmq.EPROTONOSUPPORT):
        return ZidlError(f"{what}: not a usable address ({exc.strerror})")
    return ZidlError(f"{what}: {exc.strerror}")


def make_socket(kind: int, heartbeat: Heartbeat | None = None) -> Socket:
    """A new socket of ``kind`` with LINGER 0 and, if given, heartbeats."""
    with zmq_errors("creating a socket"):
        sock: Socket = context().socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if heartbeat is not None:
            sock.setsockopt(zmq.HEARTBEAT_IVL, max(1, int(heartbeat.interval * 1000)))
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, max(1, int(heartbeat.timeout * 1000)))
            sock.setsockopt(zmq.HEARTBEAT_TTL, max(100, int(heartbeat.timeout * 1000)))
    return sock


def bind(sock: Socket, address: str, patience: float = 1.0) -> str:
    """Bind ``sock`` to ``address`` and return the endpoint actually bound (port 0 resolved).

    A port that this process closed a moment ago may still be held (libzmq closes
    sockets in its own thread), so an address in use is retried for ``patience``
    seconds: a server restarted on the same address comes back.
    """
    give_up = time.monotonic() + patience
    with zmq_errors(f"binding to {address}"):
        while True:
            try:
                sock.bind(address)
                return sock.getsockopt_string(zmq.LAST_ENDPOINT)
            except zmq.ZMQError as exc:
                if exc.errno != zmq.EADDRINUSE or time.monotonic() > give_up:
                    raise
                time.sleep(0.02)


# --- multipart I/O ---------------------------------------------------------------------------


# plain ints: combining pyzmq's flag enums runs Python code (IntFlag.__or__, __rand__) on every message
NOBLOCK: Final = int(zmq.NOBLOCK)
_POLLIN: Final = int(zmq.POLLIN)
_SNDMORE: Final = int(zmq.SNDMORE)


def readable(sock: Socket) -> bool:
    """Whether a message waits on ``sock``: cheaper to ask than to catch the ``zmq.Again`` of a read that finds none.

    A ``zmq_poll`` of the one socket, which builds none of the enum members a ``getsockopt(EVENTS)`` does.
    """
    return bool(zmq_poll([(sock, _POLLIN)], 0))


def recv_frames(sock: Socket, copied: int = 1, flags: int = 0) -> list[Any]:
    """One message: the first ``copied`` frames (identity, topic, header: small) copied, the value frames not.

    Each frame is received as a ``zmq.Frame``, whose ``more`` costs less than a ``getsockopt(RCVMORE)``.
    """
    frame = sock.recv(flags, copy=False)
    frames: list[Any] = [frame.bytes]
    while frame.more:
        frame = sock.recv(copy=False)
        frames.append(frame.bytes if len(frames) < copied else frame)
    return frames


send_frame: Final = zmq.backend.Socket.send
"""pyzmq's Cython ``send``, without the Python wrapper of ``zmq.Socket.send`` (routing ids and groups, unused here)."""


def send_frames(sock: Socket, frames: list[Any], flags: int = 0) -> None:
    """Send a message, frame by frame with plain int flags; frames above pyzmq's copy threshold go without a copy."""
    if len(frames) == 1:  # most requests and replies, without the loop
        send_frame(sock, frames[0], int(flags), False)
        return
    more = int(flags) | _SNDMORE
    for frame in frames[:-1]:
        send_frame(sock, frame, more, False)
    send_frame(sock, frames[-1], int(flags), False)


def send_tracked(sock: Socket, frames: list[Any], flags: int = 0) -> zmq.MessageTracker:
    """``send_frames``, with the last frame shared with libzmq (never copied) and tracked: the tracker is done once
    libzmq has let go of the message (handed it to the network, or dropped it with its connection)."""
    more = int(flags) | _SNDMORE
    for frame in frames[:-1]:
        send_frame(sock, frame, more, False)
    last = zmq.Frame(frames[-1], track=True, copy=False)
    send_frame(sock, last, int(flags), False)
    tracker: zmq.MessageTracker = last.tracker
    return tracker


class Waker:
    """A byte pipe another thread writes to so that a socket owner blocked in ``zmq.poll`` wakes up."""

    def __init__(self) -> None:
        self._read, self._write = socket.socketpair()
        self._read.setblocking(False)
        self._write.setblocking(False)

    def fileno(self) -> int:
        return self._read.fileno()

    def wake(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            self._write.send(b"\0")

    def drain(self) -> None:
        with contextlib.suppress(BlockingIOError, OSError):
            while self._read.recv(4096):
                pass

    def close(self) -> None:
        self._read.close()
        self._write.close()


def nothing_listens(address: str, timeout: float = 0.5) -> bool:
    """Whether a connection to ``address`` is refused, nothing listening there: one connect of the socket module's.

    False when it connects, or when it cannot tell (``inproc://``, no answer within
    ``timeout``, another error). libzmq retries a refused connection without a word,
    and a monitor told of its retries can stall the context's I/O thread once nobody
    reads it, so the client asks this instead when a first handshake cannot be sent.
    """
    parts = split_tcp(address)
    try:
        if address.startswith("ipc://"):
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                probe.settimeout(timeout)
                probe.connect(address[len("ipc://") :])
        elif parts is not None:
            host = (host_of(address) or "").strip("[]")
            with socket.create_connection((host, int(parts[1])), timeout=timeout):
                pass
    except (ConnectionRefusedError, FileNotFoundError):
        return True
    except (OSError, ValueError):
        return False
    return False
