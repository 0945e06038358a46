"""How messages travel: sockets, the address rules, monitors, CurveZMQ and heartbeats."""

from runtime.transport.security import CurveClient, CurveServer, KeyPair, generate_keypair, write_keypair
from runtime.transport.sockets import DEFAULT_HEARTBEAT, Heartbeat

__all__ = [
    "DEFAULT_HEARTBEAT",
    "CurveClient",
    "CurveServer",
    "Heartbeat",
    "KeyPair",
    "generate_keypair",
    "write_keypair",
]
