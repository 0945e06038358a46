"""Limits: how much one peer may make a device (or a client) hold, and how a refusal quotes what it refuses.

A message over a limit gets a ``protocol`` error reply, never more memory; what the
refusal quotes of the message is cut short, so that an error never echoes a large
input back. ``docs/protocol.md`` (Limits) lists every bound with its default.
"""

from __future__ import annotations

import reprlib
from dataclasses import dataclass, fields
from typing import Any, Final

_MIB: Final = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """What one peer may make a device hold; over a bound it gets an error reply instead.

    The message limits (``max_frames``, ``max_bytes``, ``max_header_bytes``) apply on
    both sides: a client applies them to replies and emissions. The others bound a
    server's queues, per connection (a client thread's socket) or in all.
    """

    max_frames: int = 1024
    """Frames in one message: the header and one per ``bytes`` or ``ndarray`` value."""
    max_bytes: int = 256 * _MIB
    """Bytes in one message, all frames together."""
    max_header_bytes: int = 1 * _MIB
    """Bytes of the JSON header frame, refused before it is parsed; large values travel as frames."""
    max_backlog: int = 1000
    """Serial calls waiting behind the one that runs, from every caller (and as many waiting for the pool); one
    connection holds no more of either queue than is free."""
    max_backlog_bytes: int = 256 * _MIB
    """Bytes of the messages of those waiting calls; a call always queues behind none."""
    max_calls_per_caller: int = 1000
    """Calls of one connection accepted and not yet ended (waiting, running or replying)."""
    max_concurrent_streams: int = 100
    """``concurrent`` streams open at once on a device, from every caller: each has a thread of its own; one
    connection holds no more of them than are free."""
    max_unread_replies: int = 1000
    """Replies queued for one connection that does not read them (ZeroMQ's ``SNDHWM``); more are dropped."""
    max_unread_bytes: int = 256 * _MIB
    """Bytes of replies of 64 KiB or more queued for one connection that does not read them; more are dropped."""
    max_unread_bytes_total: int = 1024 * _MIB
    """The same, for every connection together."""

    def __post_init__(self) -> None:
        for field in fields(self):
            value = getattr(self, field.name)
            if type(value) is not int or value < 1:
                raise ValueError(
                    f"Limits.{field.name}={value!r} would refuse everything: "
                    "at least one frame, one byte and one call must fit (a whole number, 1 or more)"
                )


DEFAULT_LIMITS: Final = Limits()

_QUOTE: Final = reprlib.Repr()
_QUOTE.maxlevel, _QUOTE.maxstring, _QUOTE.maxother, _QUOTE.maxlong = 2, 60, 60, 40
_QUOTE.maxlist = _QUOTE.maxtuple = _QUOTE.maxdict = _QUOTE.maxset = 4


def quote(value: Any) -> str:
    """``repr(value)`` cut short, for an error message about a value that came off the wire."""
    try:
        return _QUOTE.repr(value)
    except ValueError:  # an int too long for ``repr`` itself
        return "<a number too long to show>"
