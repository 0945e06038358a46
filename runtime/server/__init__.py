"""Who answers: the ``Server`` base of every generated skeleton, its signals, and what a running call may ask."""

from runtime.server.base import Server
from runtime.server.current import CallContext, current_call
from runtime.server.quotas import Usage
from runtime.server.signal import ServerSignal

__all__ = ["CallContext", "Server", "ServerSignal", "Usage", "current_call"]
