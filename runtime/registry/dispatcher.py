"""What each message to the registry means: a table from request kind to handler, and the refusals.

``answer`` takes one message and returns the frames to send back on the socket it
came from, or None. On the heartbeat socket a heartbeat is answered only when it
fails or asks (``"ack": true``): a reply costs the registry more than the heartbeat.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import zmq

from runtime.protocol.names import HEARTBEAT
from runtime.protocol.registry_messages import RegistryRefusal, read_registry_request, registry_ack, registry_error
from runtime.registry.book import Entry

__all__ = ["MAX_REQUEST_BYTES", "Caller", "Dispatcher", "Handler", "Refused"]

log = logging.getLogger(__name__)

MAX_REQUEST_BYTES: Final = 64 * 1024


@dataclass(eq=False, slots=True)
class Caller:
    """Who sent a request whose answer comes later: the envelope it goes back with, and the id it carries."""

    envelope: list[bytes]
    request_id: Any

    def answer(self, message: bytes) -> list[bytes]:
        """The frames that send ``message`` back to this caller."""
        return [*self.envelope, message]

    def refuse(self, code: str, message: str) -> list[bytes]:
        """The frames of a failed reply to this caller."""
        return _refusal(list(self.envelope), self.request_id, code, message)


def _refusal(envelope: list[bytes], request_id: Any, code: str, message: str) -> list[bytes]:
    """``envelope`` followed by a failed reply with error ``code``."""
    log.debug("registry: %s: %s", code, message)
    envelope.append(registry_error(request_id, code, message))
    return envelope


class Refused(Exception):
    """Raised by a handler: the request is answered with error ``code``."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


Handler = Callable[[list[bytes], Any, dict[str, Any], zmq.Frame, float], bytes | None]
"""Answers one request (its envelope, id, fields, frame and the time): the reply, or None when it comes later."""


class Dispatcher:
    """Answers the messages of both of the registry's ROUTERs; heartbeats renew leases in ``leases``."""

    def __init__(self, leases: Mapping[str, Entry], handlers: Mapping[str, Handler]) -> None:
        self._leases = leases
        self._handlers = handlers

    def answer(self, frames: list[zmq.Frame], heartbeats_only: bool) -> list[bytes] | None:
        """The answer to one message (identity, maybe a REQ envelope, one JSON frame), or None."""
        # Envelope: the identity, plus everything up to an empty delimiter (REQ peers).
        split = 1
        if len(frames) > 2:
            for i, frame in enumerate(frames[1:], start=1):
                if not frame.bytes:
                    split = i + 1
                    break
        envelope = [f.bytes for f in frames[:split]]
        body = frames[split:]
        now = time.monotonic()
        if len(body) != 1:
            return _refusal(envelope, None, "bad-request", "a request is exactly one JSON frame")
        raw = body[0].bytes
        if len(raw) > MAX_REQUEST_BYTES:
            return _refusal(envelope, None, "too-large", f"a request is at most {MAX_REQUEST_BYTES} bytes")
        try:
            request_id, kind, fields = read_registry_request(raw)
        except RegistryRefusal as exc:
            return _refusal(envelope, exc.request_id, exc.code, exc.message)
        if kind == HEARTBEAT:  # the hot path: one dict lookup, one reply at most
            lease = fields.get("lease")
            entry = self._leases.get(lease) if isinstance(lease, str) else None
            if entry is None:
                return _refusal(envelope, request_id, "unknown", "no such lease; register again")
            entry.last_seen = now
            if heartbeats_only and fields.get("ack") is not True:
                return None  # answering costs more than receiving: only when the device asks
            envelope.append(registry_ack(request_id))
            return envelope
        if heartbeats_only:
            return _refusal(envelope, request_id, "unknown-kind", "the heartbeat socket takes heartbeats only")
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            return _refusal(envelope, request_id, "unknown-kind", f"unknown request kind {kind!r}")
        try:
            reply = handler(envelope, request_id, fields, body[0], now)
        except Refused as exc:  # a copy of the envelope: a handler may have kept it for a later answer
            return _refusal(list(envelope), request_id, exc.code, exc.message)
        except Exception:
            log.exception("registry: %s request failed", kind)
            return _refusal(list(envelope), request_id, "internal", "the registry failed on this request")
        if reply is None:
            return None
        envelope.append(reply)
        return envelope
