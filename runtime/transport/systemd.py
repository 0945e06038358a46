"""The sd_notify datagram protocol: tell systemd a service is ready and feed its watchdog.

Only the standard library: a datagram to the AF_UNIX socket named by
``NOTIFY_SOCKET`` (a name starting with ``@`` is in the abstract namespace). The
server's loop calls ``SystemdNotifier.tick(now)``, which sends ``WATCHDOG=1`` at
half of ``WATCHDOG_USEC`` and returns the seconds until the next feed is due.
"""

from __future__ import annotations

import logging
import math
import os
import socket
import time
from collections.abc import Mapping

__all__ = ["SystemdNotifier", "notify"]

log = logging.getLogger(__name__)


def _socket_address(name: str) -> str | bytes:
    if name.startswith("@"):
        return b"\0" + name[1:].encode()
    return name


def notify(state: str, *, environ: Mapping[str, str] | None = None) -> bool:
    """Send one notification (``"READY=1"``, ``"STOPPING=1"``...); False when not under systemd."""
    notifier = SystemdNotifier.from_env(environ)
    if notifier is None:
        return False
    try:
        return notifier.notify(state)
    finally:
        notifier.close()


class SystemdNotifier:
    """Notifications to one ``NOTIFY_SOCKET`` and, when asked for, watchdog feeding."""

    def __init__(self, notify_socket: str, watchdog_usec: int | None = None) -> None:
        self.notify_socket = notify_socket
        self.watchdog_interval: float | None = watchdog_usec / 2e6 if watchdog_usec else None
        self._address = _socket_address(notify_socket)
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.setblocking(False)
        self._next_feed = 0.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SystemdNotifier | None:
        """A notifier for ``NOTIFY_SOCKET`` and ``WATCHDOG_USEC``, or None when systemd did not set them."""
        env = os.environ if environ is None else environ
        name = env.get("NOTIFY_SOCKET")
        if not name:
            return None
        watchdog: int | None = None
        pid = env.get("WATCHDOG_PID")
        if (not pid or pid == str(os.getpid())) and env.get("WATCHDOG_USEC", "").isdigit():
            watchdog = int(env["WATCHDOG_USEC"]) or None
        return cls(name, watchdog)

    def notify(self, state: str) -> bool:
        """Send ``state`` (newline-separated ``KEY=VALUE`` lines); never raises, never blocks."""
        try:
            self._socket.sendto(state.encode(), self._address)
            return True
        except OSError as exc:
            log.warning("systemd notify %r to %s failed: %s", state, self.notify_socket, exc)
            return False

    def ready(self) -> bool:
        """Report that the service is up (``READY=1``)."""
        return self.notify("READY=1")

    def tick(self, now: float | None = None) -> float:
        """Feed the watchdog when due; return the seconds until the next feed (inf without a watchdog)."""
        if self.watchdog_interval is None:
            return math.inf
        if now is None:
            now = time.monotonic()
        if now >= self._next_feed:
            self.notify("WATCHDOG=1")
            self._next_feed = now + self.watchdog_interval
        return self._next_feed - now

    def close(self) -> None:
        self._socket.close()
