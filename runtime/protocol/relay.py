"""What a relay (``runtime.bridge``) reads of the device messages it forwards, and the little it rewrites.

A relay passes a message on as the frames it received: the value frames (``bytes``
and ``ndarray`` values) are never decoded or copied. It reads the header, for the
kind, the id and the caller's timeout, and writes a new header only where it must:
a request it held has its ``t`` cut to what is left of the caller's wait, and the
reply to a ``hello`` names the relay's signal publisher instead of the device's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Final

from runtime.errors import ProtocolError
from runtime.protocol.error_bodies import describe_cancelled, describe_lost, describe_protocol
from runtime.protocol.messages import BadRequest, error_reply, ok_reply
from runtime.protocol.names import BODY, CALL, GET, HELLO, ID, KIND, NAME, OK, SET, STREAM, TIMEOUT
from runtime.protocol.wire import Frame, Limits, check_limits, decode_header, dump_json, request_id_of

AWAITED: Final = frozenset({HELLO, CALL, GET, SET, STREAM})
"""The request kinds that end with one final reply (``ok`` or ``err``); a oneway ``call`` has none."""


@dataclass(slots=True)
class Head:
    """The header of a request a relay forwards: what it reads of it, and the header itself."""

    kind: Any
    request_id: Any
    name: Any
    timeout: float | None
    """The caller's ``t`` when it is a usable number of seconds, else None."""
    header: dict[str, Any]


def read_head(frames: Sequence[Frame], limits: Limits) -> Head:
    """The header of the request in ``frames``, its size checked; raises ``BadRequest`` (with the id, if readable)."""
    try:
        check_limits(frames, limits)
        header = decode_header(frames[0])
    except ProtocolError as exc:
        raise BadRequest(str(exc), request_id_of(frames[0])) from None
    timeout = header.get(TIMEOUT)
    if not (isinstance(timeout, int | float) and not isinstance(timeout, bool) and timeout >= 0):
        timeout = None
    return Head(header.get(KIND), header.get(ID), header.get(NAME), timeout, header)


def reply_head(frame: Frame) -> tuple[Any, Any]:
    """The id and kind of a reply from a device; (None, None) when its header cannot be read."""
    try:
        header = decode_header(frame)
    except ProtocolError:
        return None, None
    return header.get(ID), header.get(KIND)


def with_timeout(frames: Sequence[Frame], head: Head, timeout: float | None) -> list[Any]:
    """``frames`` with a header whose ``t`` is ``timeout`` (at least 0; None: no limit), the value frames unchanged."""
    header = dict(head.header)
    if timeout is None:
        header.pop(TIMEOUT, None)
    else:
        header[TIMEOUT] = max(0.0, round(timeout, 6))
    return [dump_json(header), *frames[1:]]


def hello_via(frames: Sequence[Frame], signals: str) -> list[Any]:
    """A device's reply to a ``hello``, naming ``signals`` as where its signals are published; an error as it is."""
    try:
        header = decode_header(frames[0])
    except ProtocolError:
        return list(frames)
    body = header.get(BODY)
    if header.get(KIND) != OK or not isinstance(body, dict):
        return list(frames)
    header[BODY] = {**body, "signals": signals}
    return [dump_json(header), *frames[1:]]


def lost_reply(request_id: Any, message: str) -> list[Any]:
    """The reply that ends a request whose device went away while the relay had it in flight."""
    return error_reply(request_id, describe_lost(message))


def cancelled_reply(request_id: Any, message: str) -> list[Any]:
    """The reply to a ``cancel`` of a request the relay still held: it never reached the device."""
    return error_reply(request_id, describe_cancelled(message))


def refusal(request_id: Any, message: str) -> list[Any]:
    """The reply to a request the relay refuses (malformed, oversized, over a bound)."""
    return error_reply(request_id, describe_protocol(message))


def alive_reply(request_id: Any) -> list[Any]:
    """The relay's own answer to a registry's ``ping``: it holds the names it registered."""
    return ok_reply(request_id)
