"""What a bridge is told: its two registries, where it serves, which devices, CurveZMQ on each side, its bounds."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from runtime.errors import ZidlError
from runtime.protocol.wire import DEFAULT_LIMITS, Limits
from runtime.transport.addresses import split_tcp
from runtime.transport.security import CurveClient, CurveServer
from runtime.transport.sockets import DEFAULT_HEARTBEAT, Heartbeat

DEFAULT_BIND: Final = "tcp://*:0"


@dataclass(frozen=True)
class Options:
    """A bridge's settings (``runtime.Bridge`` documents each)."""

    registry: str
    to: str
    bind: str = DEFAULT_BIND
    only: frozenset[str] | None = None
    curve: CurveServer | None = None
    registry_curve: CurveClient | None = None
    to_curve: CurveClient | None = None
    heartbeat: Heartbeat = DEFAULT_HEARTBEAT
    limits: Limits = DEFAULT_LIMITS
    max_callers: int = 128
    max_held: int = 1000
    max_held_bytes: int = 64 * 1024 * 1024
    away: float = 10.0

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
