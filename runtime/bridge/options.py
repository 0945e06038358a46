"""What a bridge is told: its two registries, where it serves, which devices, CurveZMQ on each side, its bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from runtime.errors import ZidlError
from runtime.protocol.wire import Limits
from runtime.transport.addresses import split_tcp
from runtime.transport.security import CurveClient, CurveServer
from runtime.transport.sockets import Heartbeat

DEFAULT_BIND: Final = "tcp://*:0"


@dataclass(frozen=True)
class Options:
    """A bridge's settings (``runtime.Bridge`` documents each, with its defaults)."""

    registry: str
    to: str
    bind: str
    only: frozenset[str] | None
    curve: CurveServer | None
    registry_curve: CurveClient | None
    to_curve: CurveClient | None
    heartbeat: Heartbeat
    limits: Limits
    max_callers: int
    max_held: int
    max_held_bytes: int
    away: float

    def __post_init__(self) -> None:
        if self.registry == self.to:
            raise ZidlError(f"a bridge joins two registries: --registry and --to are both {self.registry}")
        parts = split_tcp(self.bind)
        if parts is None or parts[1] != "0":
            raise ZidlError(
                f"a bridge binds each device on a free port of one host: give tcp://HOST:0, not {self.bind!r}"
            )
        for name in ("max_callers", "max_held", "max_held_bytes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.away < 0:
            raise ValueError("away must not be negative")

    def bridges(self, name: str) -> bool:
        """Whether the device registered as ``name`` on A's side is one this bridge serves on B's."""
        return self.only is None or name in self.only
