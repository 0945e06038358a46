"""What a running implementation may ask about its own call: ``runtime.current_call()``.

The runners set the call each thread runs; an implementation reads whether its
caller cancelled it and how long its caller still waits, and may stop early.
"""

from __future__ import annotations

import threading
from typing import Final, Protocol


class CallContext(Protocol):
    """The call an implementation is running, as ``runtime.current_call()`` gives it."""

    @property
    def cancelled(self) -> bool:
        """True once the caller cancelled the call (or went away): stop early, the result is not wanted."""
        ...

    @property
    def time_left(self) -> float | None:
        """Seconds until the caller stops waiting (for a stream: for its next item); None for no limit."""
        ...


class _NoCall:
    """What ``current_call()`` gives outside an implementation run by a server: never cancelled, no deadline."""

    cancelled: Final = False
    time_left: Final = None


_NO_CALL: Final = _NoCall()

CURRENT: Final = threading.local()
"""The call each thread is running, as its ``call`` attribute (set by the runners, None between calls)."""


def current_call() -> CallContext:
    """The call this thread's implementation is running: ``current_call().cancelled``, ``.time_left``.

    Outside a call served by a server (a method called directly, say) it is a call
    that is never cancelled and has no deadline.
    """
    call: CallContext | None = getattr(CURRENT, "call", None)
    return _NO_CALL if call is None else call
