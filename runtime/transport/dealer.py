"""A client's DEALER towards a server: Curve applied, its monitor attached before it connects."""

from __future__ import annotations

import zmq

from runtime.transport.monitor import Monitor
from runtime.transport.security import CurveClient
from runtime.transport.sockets import Heartbeat, Socket, make_socket, zmq_errors


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
