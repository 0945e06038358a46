"""What a bridge holds for one bridged device, as ``Bridge.usage`` reports it (a server's own is ``runtime.Usage``)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BridgeUsage:
    """What the bridge holds for one device at one moment; every count falls back once B's callers leave."""

    present: bool
    """Whether the device is there behind the bridge (else its requests are held)."""
    callers: int
    """Connections from B's side, each with a connection of its own to the device."""
    in_flight: int
    """Requests sent to the device whose final reply has not come."""
    held: int
    """Requests waiting for the device to come back."""
    turned_away: int
    """Requests the held bound turned away since the device was bridged (oneway calls among them)."""
    expired: int
    """Held requests dropped because their callers stopped waiting."""
    unread_bytes: int
    """Bytes of large replies queued for B's callers that have not read them."""
    dropped_replies: int
    """Replies dropped since the device was bridged because their connection read too little."""
