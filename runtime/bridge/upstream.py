"""The bridge's connections to a device on A's side: one for each caller on B's side, and one of its own.

Each caller on B's side gets a DEALER of its own towards the device (an ``Upstream``),
so the device sees every caller as it would see them directly: its calls in flight
are keyed by that connection, a ``cancel`` reaches only the sender's own calls, the
device's quotas are per caller, and a caller that leaves B's side closes its
connection, which the device sees drop and cancels that caller's calls. An upstream
has no ``IMMEDIATE``: what is sent before its connection is up waits in its pipe. Its
monitor says when its own connection drops (the device's libzmq drops a connection
that sends a frame far over its limits, heartbeats time out): the requests it awaited
get no reply from the device then.

The bridge's own connection (``Control``) says whether the device is there at all
(its monitor), makes the bridge's own handshake (where the device publishes its
signals, which methods are oneway), and delivers the held oneway calls of callers
that have left.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from typing import Any, Final

import zmq

from runtime.errors import ZidlError
from runtime.protocol.messages import hello_body, outcome, read_hello_reply, read_reply, request
from runtime.protocol.names import CALL, HELLO
from runtime.protocol.relay import AWAITED, Head
from runtime.protocol.wire import Limits
from runtime.schema.interface import Interface
from runtime.transport.addresses import substitute_host
from runtime.transport.monitor import Monitor
from runtime.transport.security import CurveClient
from runtime.transport.sockets import NOBLOCK, Heartbeat, Socket, make_socket, recv_frames, send_frames, zmq_errors

logger = logging.getLogger(__name__)

_HELLO_TIMEOUT: Final = 5.0
"""The ``t`` of the bridge's own handshake."""


def _connect(sock: Socket, address: str, curve: CurveClient | None) -> None:
    with zmq_errors(f"connecting to the device at {address}"):
        if curve is not None:
            curve.apply(sock)
        sock.connect(address)


def towards(public_key: str | None, curve: CurveClient | None) -> CurveClient | None:
    """How the bridge reaches a device: with its own key pair (``curve``'s), when A's registry gives the device a
    public key; in the clear otherwise."""
    if public_key is None:
        return None
    return (curve or CurveClient(None)).towards(public_key)


class Upstream:
    """One caller's connection to the device, and that caller's requests whose final reply has not come yet."""

    def __init__(self, caller: bytes, address: str, curve: CurveClient | None, heartbeat: Heartbeat) -> None:
        self.caller = caller
        self.socket = make_socket(zmq.DEALER, heartbeat)
        self.address = address
        self.awaiting: dict[Any, Any] = {}
        """The requests sent and not answered yet, by id: their kind (a ``hello``'s reply names the signals)."""
        try:
            self.monitor = Monitor(self.socket)
        except BaseException:
            self.socket.close(linger=0)
            raise
        try:
            _connect(self.socket, address, curve)
        except BaseException:
            self.close()
            raise

    def send(self, frames: list[Any], head: Head, oneway: frozenset[str]) -> bool:
        """Send a request of this caller's; False when the device's pipe is full (it is not reading)."""
        try:
            send_frames(self.socket, frames, NOBLOCK)
        except zmq.Again:
            return False
        if head.kind in AWAITED and not (head.kind == CALL and head.name in oneway):
            with contextlib.suppress(TypeError):  # an id that is a JSON array or object: not followed
                self.awaiting[head.request_id] = head.kind
        return True

    def answered(self, request_id: Any) -> Any:
        """A final reply to ``request_id`` came: its request's kind (None when none awaited it)."""
        try:
            return self.awaiting.pop(request_id, None)
        except TypeError:
            return None

    def move(self, address: str, curve: CurveClient | None) -> None:
        """Go to the device at its new address (what was queued for the old one is dropped with that connection)."""
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disconnect(self.address)
        self.address = address
        self.awaiting.clear()
        _connect(self.socket, address, curve)

    def close(self) -> None:
        self.monitor.close()
        self.socket.close(linger=0)


class Control:
    """The bridge's own connection to one device: whether it is there, and what its handshake says."""

    def __init__(self, address: str, curve: CurveClient | None, heartbeat: Heartbeat, limits: Limits) -> None:
        self.socket = make_socket(zmq.DEALER, heartbeat)
        self.socket.setsockopt(zmq.IMMEDIATE, 1)
        self.monitor = Monitor(self.socket)
        self.address = address
        self._limits = limits
        self._ids = itertools.count(1)
        self._hello: int | None = None
        try:
            _connect(self.socket, address, curve)
        except BaseException:
            self.close()
            raise

    @property
    def connected(self) -> bool:
        return self.monitor.connected

    def greet(self) -> None:
        """Send the bridge's own handshake (once the connection is up)."""
        self._hello = next(self._ids)
        self.send(request(self._hello, HELLO, None, _HELLO_TIMEOUT, hello_body(None)))

    def send(self, frames: list[Any]) -> bool:
        try:
            send_frames(self.socket, frames, NOBLOCK)
        except zmq.Again:
            return False
        return True

    def greeted(self) -> tuple[Interface, str] | None:
        """Read what came on this connection: the device's description and signal address when it is the handshake's
        reply, else None (replies to nothing the bridge awaits are dropped)."""
        while True:
            try:
                frames = recv_frames(self.socket, flags=NOBLOCK)
            except zmq.Again:
                return None
            try:
                reply_id, kind, body = read_reply(frames, self._limits)
                if reply_id != self._hello or self._hello is None:
                    continue
                self._hello = None
                where = f"the device at {self.address}"
                interface, signals = read_hello_reply(outcome(kind, body, {}, where), where)
            except (ZidlError, ValueError) as exc:  # an error reply, raised; a malformed one
                logger.warning("the device at %s did not answer the bridge's handshake: %s", self.address, exc)
                return None
            return interface, substitute_host(signals, self.address)

    def move(self, address: str, curve: CurveClient | None) -> None:
        with contextlib.suppress(zmq.ZMQError):
            self.socket.disconnect(self.address)
        self.address = address
        self._hello = None
        _connect(self.socket, address, curve)

    def close(self) -> None:
        self.monitor.close()
        self.socket.close(linger=0)
