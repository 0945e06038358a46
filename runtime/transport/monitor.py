"""Socket monitors: the connection state of a socket, and what a failed security handshake means for the user."""

from __future__ import annotations

import contextlib
from typing import Final

import zmq
from zmq.utils.monitor import parse_monitor_message

from runtime.transport.sockets import Socket, readable, zmq_errors

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


class Monitor:
    """The connection state of one socket, read from its monitor socket by the socket's owner."""

    def __init__(self, sock: Socket) -> None:
        with zmq_errors("monitoring a socket"):
            self.socket: Socket = sock.get_monitor_socket(MONITOR_EVENTS)
        self._watched = sock
        self.connected = False
        self.dropped = False
        """The last connection dropped and no new one is up yet: a message sent now may go down with the old one."""
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
                self.dropped = lost = True
            elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
                self.connected = True
                self.dropped = False
                self.refused = None
            else:
                self.refused = handshake_failure(event, message["value"]) or self.refused

    def stop(self) -> None:
        """No more events: call it before the watched socket or this monitor's reader closes, in whatever order they
        then close (libzmq's I/O thread blocks for ever sending an event to a monitor reader that is gone, and with it
        every connection of the process)."""
        with contextlib.suppress(zmq.ZMQError):
            self._watched.disable_monitor()

    def close(self) -> None:
        self.stop()
        self.socket.close(linger=0)
