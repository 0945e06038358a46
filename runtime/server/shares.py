"""Shares: the places of a bounded queue (or of the device's stream threads), in calls and bytes, per connection.

A connection may take a place while it holds fewer than are free (and, in bytes, while
what it holds and the new message fit in what is free): alone it may fill half the
queue, and beside one that floods, every other connection still finds room.
"""

from __future__ import annotations


class Shares:
    """Counts a queue's places per connection; not locked: its owner calls it under its own lock."""

    def __init__(self, most: int, most_bytes: int | None = None) -> None:
        self._most = most
        self._most_bytes = most_bytes
        self._held: dict[bytes, list[int]] = {}
        self.calls = 0
        """Places taken, by every connection."""
        self.bytes = 0
        """The bytes of the messages that hold them."""

    def take(self, caller: bytes, size: int) -> bool:
        """Take a place for a message of ``size`` bytes from ``caller``; False, and nothing taken, over its share
        (an empty queue takes any one message; without ``most_bytes``, only places count)."""
        held = self._held.get(caller)
        calls, held_bytes = held if held is not None else (0, 0)
        if calls >= self._most - self.calls:
            return False
        if self._most_bytes is not None and self.calls and held_bytes + size > self._most_bytes - self.bytes:
            return False
        if held is None:
            self._held[caller] = [1, size]
        else:
            held[0] += 1
            held[1] += size
        self.calls += 1
        self.bytes += size
        return True

    def give(self, caller: bytes, size: int) -> None:
        """Give back a place ``caller`` took for a message of ``size`` bytes."""
        held = self._held[caller]
        held[0] -= 1
        held[1] -= size
        if not held[0]:
            del self._held[caller]
        self.calls -= 1
        self.bytes -= size
