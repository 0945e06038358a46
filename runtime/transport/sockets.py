"""ZeroMQ transport: sockets, addresses, heartbeats, monitors, and the one place zmq errors are translated.

Every socket of the runtime is made by ``make_socket`` from the process's one
context, with ``LINGER 0`` and, where a peer may vanish, ZMTP heartbeats. Each has
one owner thread (or event loop); other threads reach an owner through a queue and
a ``Waker``. ``zmq_errors`` turns any ``zmq.ZMQError`` into a ``ZidlError``.
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import zmq
from zmq import zmq_poll
from zmq.utils.monitor import parse_monitor_message

from runtime.errors import ClientClosed, ZidlError

if TYPE_CHECKING:
    from runtime.transport.security import CurveClient

Socket = zmq.Socket[bytes]


@dataclass(frozen=True)
class Heartbeat:
    """ZMTP heartbeats: a ping every ``interval`` seconds; a peer silent for ``timeout`` is gone."""

    interval: float = 1.0
    timeout: float = 3.0


DEFAULT_HEARTBEAT: Final = Heartbeat()

MONITOR_EVENTS: Final = (
    zmq.EVENT_HANDSHAKE_SUCCEEDED
    | zmq.EVENT_DISCONNECTED
    | zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)


def handshake_failure(event: int, value: int) -> str | None:
    """What a monitor's handshake-failure event means for the user; None for any other event."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return f"the server refused this client's key (status {value}): ask for it to be allowed"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "CurveZMQ is switched on at one end only: both ends need it, or neither"
        return f"the security handshake broke the protocol (error {value:#x}): is the server's public key right?"
    if event == zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL:
        return "the security handshake failed: is the server's public key right?"
    return None


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


def make_dealer(address: str, heartbeat: Heartbeat, curve: CurveClient | None = None) -> tuple[Socket, Monitor]:
    """A client socket connected to ``address`` (with Curve, if given), and its monitor.

    Messages only go to a completed connection. The monitor is attached before the
    socket connects, so that a handshake refused at once is not missed.
    """
    sock = make_socket(zmq.DEALER, heartbeat)
    with zmq_errors(f"connecting to {address}"):
        if curve is not None:
            curve.apply(sock)
        sock.setsockopt(zmq.IMMEDIATE, 1)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 1000)
        monitor = Monitor(sock)
        sock.connect(address)
    return sock, monitor


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


def signal_address(bound: str) -> str:
    """Where to bind a server's signal publisher, given where its request socket is bound."""
    transport, _, rest = bound.partition("://")
    if transport == "tcp":
        host, _, _port = rest.rpartition(":")
        return f"tcp://{host}:0"
    return f"{bound}.signals"


_WILDCARDS = {"*": "127.0.0.1", "0.0.0.0": "127.0.0.1", "[::]": "[::1]", "[*]": "[::1]"}


def connectable(endpoint: str) -> str:
    """An address a local client can connect to: a wildcard host becomes the loopback."""
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp":
        return endpoint
    host, _, port = rest.rpartition(":")
    return f"tcp://{_WILDCARDS.get(host, host)}:{port}"


def substitute_host(endpoint: str, via: str) -> str:
    """``endpoint`` (as the server bound it) with a wildcard host replaced by the host of ``via``."""
    transport, _, rest = endpoint.partition("://")
    if transport != "tcp":
        return endpoint
    host, _, port = rest.rpartition(":")
    if host not in _WILDCARDS:
        return endpoint
    via_transport, _, via_rest = via.partition("://")
    via_host = via_rest.rpartition(":")[0] if via_transport == "tcp" else ""
    via_host = re.sub(r"^[^;]*;", "", via_host)  # "tcp://source;host:port" connects from a source
    return f"tcp://{via_host or _WILDCARDS[host]}:{port}"


# --- monitors --------------------------------------------------------------------------------


class Monitor:
    """The connection state of one socket, read from its monitor socket by the socket's owner."""

    def __init__(self, sock: Socket) -> None:
        with zmq_errors("monitoring a socket"):
            self.socket: Socket = sock.get_monitor_socket(MONITOR_EVENTS)
        self._watched = sock
        self.connected = False
        self.refused: str | None = None
        """Why the last security handshake failed, until one succeeds."""

    def drain(self) -> bool:
        """Read every pending event; True when a disconnect was among them (cheap when there is none)."""
        lost = False
        while True:
            try:
                if not readable(self.socket):
                    return lost
                frames = self.socket.recv_multipart(zmq.NOBLOCK)
            except zmq.ZMQError:  # closed under us
                return lost
            message = parse_monitor_message(frames)
            event = message["event"]
            if event == zmq.EVENT_DISCONNECTED:
                self.connected = False
                lost = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.refused = None
            else:
                self.refused = handshake_failure(event, message["value"]) or self.refused

    def close(self) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self._watched.disable_monitor()
        self.socket.close(linger=0)


# --- multipart I/O ---------------------------------------------------------------------------


# plain ints: combining pyzmq's flag enums runs Python code (IntFlag.__or__, __rand__) on every message
NOBLOCK: Final = int(zmq.NOBLOCK)
_POLLIN: Final = int(zmq.POLLIN)
_SNDMORE: Final = int(zmq.SNDMORE)


def readable(sock: Socket) -> bool:
    """Whether a message waits on ``sock``: cheaper to ask than to catch the ``zmq.Again`` of a read that finds none.

    A ``zmq_poll`` of the one socket: 1.5 us, where ``getsockopt(EVENTS)`` takes 1.9 us
    and builds two enum members (pyzmq looks every option up in its ``SocketOption``).
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
"""pyzmq's Cython ``send``, without the Python wrapper of ``zmq.Socket.send`` (routing ids and groups, unused here):
0.56 against 0.91 us a frame."""


def send_frames(sock: Socket, frames: list[Any], flags: int = 0) -> None:
    """Send a message; frames above pyzmq's copy threshold go without a copy.

    Frame by frame with plain int flags: ``send_multipart`` took 4.6 us against 1.8 us
    for an identity and a small header.
    """
    if len(frames) == 1:  # most requests and replies, without the loop
        send_frame(sock, frames[0], int(flags), False)
        return
    more = int(flags) | _SNDMORE
    for frame in frames[:-1]:
        send_frame(sock, frame, more, False)
    send_frame(sock, frames[-1], int(flags), False)


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
