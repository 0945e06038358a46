"""What travels: every message kind and header field (``names``), each message built and read (``messages``),
how failures travel (``error_bodies``) and how bodies become frames (``wire``)."""

from runtime.protocol.wire import DEFAULT_LIMITS, Limits

__all__ = ["DEFAULT_LIMITS", "Limits"]
