"""The registry's large replies still held for their peers, counted in bytes, per peer and in all.

ZeroMQ bounds a peer's queue in messages, which says little when one ``list``
reply is 100 bytes and the next 256 KiB. A large reply is sent tracked: its
tracker is done once libzmq has handed every byte to the kernel, or dropped it
because the peer went away. Until then its bytes count against its peer's
allowance and the registry's; a reply past either is refused (``busy``).
"""

from __future__ import annotations

from collections.abc import Callable

import zmq

__all__ = ["Backlog"]

SendTracked = Callable[[list[bytes]], zmq.MessageTracker | None]
"""Sends a reply tracked; None when it could not be queued (it is dropped and counted)."""


class Backlog:
    """Bytes of large replies not yet written out: at most ``per_peer`` for one peer, ``total`` in all."""

    def __init__(self, send: SendTracked, *, per_peer: int, total: int) -> None:
        self.per_peer = per_peer
        self.total = total
        self._held = 0
        self._send = send
        self._by_peer: dict[bytes, list[tuple[zmq.MessageTracker, int]]] = {}

    @property
    def held(self) -> int:
        """Bytes still held, for every peer."""
        self._release()
        return self._held

    def room(self, peer: bytes, size: int) -> bool:
        """True when ``size`` more bytes for ``peer`` stay within its own bound and its share of the total (no more
        than is free, so one peer that never reads leaves the others room); a first reply always fits."""
        self._release()
        mine = sum(n for _, n in self._by_peer.get(peer, ()))
        return (mine == 0 or mine + size <= self.per_peer) and (
            self._held == 0 or mine + size <= self.total - self._held
        )

    def send(self, peer: bytes, frames: list[bytes]) -> None:
        """Send ``frames`` to ``peer`` and hold their size until libzmq lets go of them."""
        tracker = self._send(frames)
        if tracker is not None and not tracker.done:
            size = sum(len(f) for f in frames)
            self._by_peer.setdefault(peer, []).append((tracker, size))
            self._held += size

    def _release(self) -> None:
        for peer, replies in list(self._by_peer.items()):
            still = [(t, n) for t, n in replies if not t.done]
            self._held -= sum(n for _, n in replies) - sum(n for _, n in still)
            if still:
                self._by_peer[peer] = still
            else:
                del self._by_peer[peer]
