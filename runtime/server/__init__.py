"""Who answers: the ``Server`` base of every generated skeleton, and its signals."""

from runtime.server.base import Server
from runtime.server.quotas import Usage
from runtime.server.signal import ServerSignal

__all__ = ["Server", "ServerSignal", "Usage"]
