"""What the engine asks of whoever gives its messages their meaning (``runtime.server.dispatcher.Dispatcher``)."""

from __future__ import annotations

import threading
from typing import Any, Protocol

from runtime.server.publisher import Subscription
from runtime.server.runners import Call


class Handler(Protocol):
    """What gives the engine's messages their meaning (``runtime.server.dispatcher.Dispatcher``)."""

    def request(self, me: threading.Thread, caller: bytes, message: list[Any]) -> None:
        """Handle one request of ``caller`` received by ``me``, the thread that owns the sockets."""

    def run(self, call: Call) -> list[Any] | None:
        """Run an accepted call on this thread: the frames of its reply, or None."""

    def subscribed(self, subscription: bytes) -> Subscription | None:
        """What the signal publisher does for a subscription message; None: nothing (ignored)."""

    def refused(self, caller: bytes, header: Any, reason: str) -> None:
        """Answer a message the engine did not take, over a limit; ``header`` is its first frame (maybe unread)."""

    def gone(self, caller: bytes) -> None:
        """``caller``'s connection dropped (or a message to it could not be delivered): its calls are orphans."""

    def forget(self, call: Call) -> None:
        """A call that will never run (its caller is gone) left the backlog."""

    def close(self) -> None:
        """Finish what runs off the I/O threads; their replies are no longer sent."""
