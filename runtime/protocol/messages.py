"""Every message, built and read in one place: requests, replies, handshakes, signals, and the registry's.

A device message is a header (``runtime.protocol.names``) with its body written by
``runtime.protocol.wire``; a registry message is one JSON frame. Senders call the
builders here, receivers the readers, so no other module writes a header by hand.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from runtime.errors import ProtocolError
from runtime.protocol.error_bodies import ErrorFactory, describe_failure, rebuild
from runtime.protocol.names import (
    CANCEL,
    CREDIT,
    CREDITS,
    EPOCH,
    ERR,
    ERROR,
    ID,
    ITEM,
    KIND,
    MESSAGE,
    NAME,
    OK,
    SEQ,
    SEQUENCE,
    SIGNAL,
    STREAM,
    SUCCEEDED,
    TIMEOUT,
    VERSION,
    WELCOME,
    V,
)
from runtime.protocol.wire import (
    NO_BODY,
    Frame,
    Limits,
    Writer,
    check_limits,
    decode,
    decode_body,
    decode_header,
    encode,
    request_id_of,
)
from runtime.schema.interface import Interface

logger = logging.getLogger(__name__)

# --- requests ---------------------------------------------------------------------------------


def request(
    request_id: int, kind: str, name: str | None, timeout: float | None, body: Any = NO_BODY, write: Writer = encode
) -> list[Any]:
    """The frames of a request; ``write`` encodes its body (``encode_plain`` where the declared types allow)."""
    header: dict[str, Any] = {V: VERSION, ID: request_id, KIND: kind, NAME: name}
    if timeout is not None:
        header[TIMEOUT] = timeout
    return write(header, body)


class Request:
    """A request as a server reads it; ``timeout`` is None unless the caller sent a usable one."""

    __slots__ = ("body", "header", "kind", "name", "request_id", "timeout")

    def __init__(
        self, kind: Any, request_id: Any, name: Any, timeout: float | None, body: Any, header: Any = None
    ) -> None:
        self.kind = kind
        self.request_id = request_id
        self.name = name
        self.timeout = timeout
        self.body = body
        self.header: dict[str, Any] = header if header is not None else {}
        """The whole header, for what only some kinds carry (``credits``)."""


class BadRequest(ProtocolError):
    """A request that cannot be read; ``request_id`` is its id when the header could still be read, else None."""

    def __init__(self, message: str, request_id: Any) -> None:
        super().__init__(message)
        self.request_id = request_id


def read_request(frames: Sequence[Frame], limits: Limits) -> Request:
    """The request in ``frames`` (header, then value frames); raises ``BadRequest``."""
    request_id: Any = None
    try:
        check_limits(frames, limits)
        header = decode_header(frames[0])
        request_id = header.get(ID)
        body = decode_body(header, frames)
    except ProtocolError as exc:
        raise BadRequest(str(exc), request_id if request_id is not None else request_id_of(frames[0])) from None
    timeout = header.get(TIMEOUT)
    if timeout is not None and not (type(timeout) in (int, float) and timeout >= 0):  # NaN and booleans too
        raise BadRequest(f"'t' is the seconds the caller waits, a number 0 or more, not {timeout!r}", request_id)
    return Request(header.get(KIND), request_id, header.get(NAME), timeout, body, header)


# --- streams and cancellation -------------------------------------------------------------------


def stream_request(
    request_id: int, name: str, timeout: float | None, credits: int, body: Any, write: Writer = encode
) -> list[Any]:
    """The frames of a request that opens stream ``name``, granting the first ``credits`` items."""
    header: dict[str, Any] = {V: VERSION, ID: request_id, KIND: STREAM, NAME: name, CREDITS: credits}
    if timeout is not None:
        header[TIMEOUT] = timeout
    return write(header, body)


def item(request_id: Any, sequence: int, value: Any, write: Writer = encode) -> list[Any]:
    """The frames of item number ``sequence`` of stream ``request_id``; raises ``TypeError`` when it cannot travel."""
    return write({V: VERSION, ID: request_id, KIND: ITEM, SEQUENCE: sequence}, value)


def credit(request_id: int, credits: int) -> list[Any]:
    """The frames that grant stream ``request_id`` ``credits`` more items."""
    return encode({V: VERSION, ID: request_id, KIND: CREDIT, CREDITS: credits})


def cancel(request_id: int) -> list[Any]:
    """The frames that cancel the sender's call or stream ``request_id``."""
    return encode({V: VERSION, ID: request_id, KIND: CANCEL})


def credits_of(request: Request) -> int | None:
    """The items a ``stream`` or ``credit`` request grants: a positive integer, else None (it grants nothing)."""
    credits = request.header.get(CREDITS)
    if type(credits) is not int or credits < 1:
        return None
    return credits


# --- replies ----------------------------------------------------------------------------------


def ok_reply(request_id: Any, result: Any = None, write: Writer = encode) -> list[Any]:
    """The frames of a successful reply; a result that cannot be sent becomes a ``SerializationError``."""
    try:
        return write({V: VERSION, ID: request_id, KIND: OK}, result)
    except (TypeError, ValueError) as exc:
        logger.error("a result could not be sent: %s", exc)
        return error_reply(request_id, describe_failure("SerializationError", f"the result could not be sent: {exc}"))


def error_reply(request_id: Any, error: dict[str, Any]) -> list[Any]:
    """The frames of an error reply carrying the error body ``error`` (``runtime.protocol.error_bodies``)."""
    try:
        return encode({V: VERSION, ID: request_id, KIND: ERR}, error)
    except (TypeError, ValueError) as exc:
        fallback = describe_failure(str(error.get("type", "Exception")), f"{error.get('message')} ({exc})")
        return encode({V: VERSION, ID: request_id, KIND: ERR}, fallback)


def read_reply(frames: Sequence[Frame], limits: Limits) -> tuple[Any, Any, Any]:
    """The request id, kind and body of a reply (of an ``item``: its number and value); raises ``ProtocolError``."""
    header, body = decode(frames, limits)
    kind = header.get(KIND)
    if kind == ITEM:
        body = (header.get(SEQUENCE), body)
    return header.get(ID), kind, body


def outcome(kind: Any, body: Any, declared: Mapping[str, ErrorFactory], where: str) -> Any:
    """The result of a reply of ``kind``, or raise what it carries (an IDL error from ``declared``)."""
    if kind == OK:
        return body
    if kind == ERR:
        raise rebuild(body, declared, where)
    raise ProtocolError(f"{where}: reply of unknown kind {kind!r}")


# --- the handshake ----------------------------------------------------------------------------


def hello_body(interface: Interface | None) -> dict[str, Any]:
    """A ``hello`` request's body: the caller's description (None for a client without generated code)."""
    return {"interface": interface.to_dict() if interface is not None else None, "protocol": VERSION}


def hello_reply_body(interface: Interface, signals: str) -> dict[str, Any]:
    """A ``hello`` reply's body: the server's description and where its signals are published."""
    return {"interface": interface.to_dict(), "signals": signals, "protocol": VERSION}


def read_hello_reply(body: Any, address: str) -> tuple[Interface, str]:
    """The server's description and signal endpoint (as the server bound it) from a ``hello`` reply."""
    try:
        return Interface.from_dict(body["interface"]), str(body["signals"])
    except (KeyError, TypeError, ValueError) as exc:
        raise ProtocolError(f"{address}: malformed handshake reply ({exc!r})") from None


# --- signals ----------------------------------------------------------------------------------

WELCOME_PREFIX: Final = b"\x01zidl-welcome:"
"""The prefix of a client's one-off welcome topic (signal names never start with it)."""


def topic(name: str) -> bytes:
    """The topic a signal is published on."""
    return name.encode() + b"\0"


def welcome_topic() -> bytes:
    """A new one-off topic whose welcome proves a client's earlier subscriptions are in place."""
    return WELCOME_PREFIX + os.urandom(8).hex().encode()


def emission(name: str, sequence: int, values: list[Any]) -> list[Any]:
    """The frames of one emission of signal ``name``: its topic, then the header and value frames."""
    return [topic(name), *encode({V: VERSION, KIND: SIGNAL, NAME: name, SEQUENCE: sequence}, values)]


def read_emission(frames: Sequence[Frame], limits: Limits) -> tuple[Any, Any, Any]:
    """The signal name, sequence number and arguments of an emission (``frames`` after the topic)."""
    header, body = decode(frames, limits)
    return header.get(NAME), header.get(SEQUENCE), body


def welcome_requested(subscription: bytes) -> bytes | None:
    """The welcome topic a publisher's subscription message asks for, or None for any other message."""
    if subscription[:1] == b"\x01" and subscription[1:].startswith(WELCOME_PREFIX):
        return subscription[1:]
    return None


def welcome(token: bytes) -> list[Any]:
    """The frames that answer a welcome subscription."""
    return [token, *encode({V: VERSION, KIND: WELCOME})]


# --- the registry -----------------------------------------------------------------------------


def _dump(message: dict[str, Any]) -> bytes:
    """Strict JSON: a NaN or an infinity is an error here, never ``NaN`` on the wire."""
    return json.dumps(message, separators=(",", ":"), allow_nan=False).encode()


def registry_request(kind: str, request_id: Any, **fields: Any) -> bytes:
    """A request to the registry."""
    return _dump({V: VERSION, ID: request_id, KIND: kind, **fields})


def registry_reply(request_id: Any, **fields: Any) -> bytes:
    """A registry's successful reply."""
    return _dump({V: VERSION, ID: request_id, SUCCEEDED: True, **fields})


_ACK_HEAD: Final = f'{{"{V}":{VERSION},"{ID}":'.encode()
_ACK_TAIL: Final = f',"{SUCCEEDED}":true}}'.encode()


def registry_ack(request_id: Any) -> bytes:
    """``registry_reply(request_id)``, built around the id alone: a heartbeat's answer, on the registry's hot path."""
    return _ACK_HEAD + json.dumps(request_id).encode() + _ACK_TAIL


def registry_snapshot(request_id: Any, epoch: str, seq: int, **fields: Any) -> bytes:
    """A registry's successful reply that says which state it reflects (``list``, ``info``): its epoch and seq."""
    return _dump({V: VERSION, ID: request_id, SUCCEEDED: True, **fields, EPOCH: epoch, SEQ: seq})


def registry_error(request_id: Any, code: str, message: str) -> bytes:
    """A registry's failed reply, with an error code of ``docs/registry.md``."""
    return _dump({V: VERSION, ID: request_id, SUCCEEDED: False, ERROR: code, MESSAGE: message})


def registry_event(epoch: str, seq: int, kind: str, **fields: Any) -> bytes:
    """A registry's announcement of a change (or a ``beat``)."""
    return _dump({V: VERSION, EPOCH: epoch, SEQ: seq, KIND: kind, **fields})


class RegistryRefusal(Exception):
    """A registry request refused before any handler saw it, with the reply's code."""

    def __init__(self, code: str, message: str, request_id: Any = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


UNREADABLE: Final = object()
"""What a request's number too long for Python to read (over 4,300 digits) is read as: no field accepts it."""


def _number(text: str) -> Any:
    try:
        return int(text)
    except ValueError:
        return UNREADABLE


def read_registry_request(raw: bytes) -> tuple[Any, Any, dict[str, Any]]:
    """The id, kind and fields of a registry request; raises ``RegistryRefusal``.

    The id is echoed when it can be written back as strict JSON and short (a
    string of at most ``MAX_ECHOED_ID`` characters, a boolean, an integer, a
    finite number); otherwise the answer carries ``null``.
    """
    try:
        try:
            message = json.loads(raw)
        except ValueError:  # perhaps only a number too long to read: read the rest, to answer with the id
            message = json.loads(raw, parse_int=_number)
    except (ValueError, RecursionError):  # RecursionError: nested too deeply; ValueError: not JSON, not UTF-8
        raise RegistryRefusal("bad-request", "a request is a JSON object") from None
    if not isinstance(message, dict):
        raise RegistryRefusal("bad-request", "a request is a JSON object")
    request_id = message.get(ID)
    if request_id.__class__ is not int and not _echoable(request_id):
        request_id = None
    if message.get(V) != VERSION:
        raise RegistryRefusal("unsupported-version", f"this registry speaks v={VERSION}", request_id)
    return request_id, message.get(KIND), message


MAX_ECHOED_ID: Final = 1024
"""The longest string id echoed: an error reply stays small, however many a peer leaves unread."""


def _echoable(request_id: Any) -> bool:
    if isinstance(request_id, float):
        return math.isfinite(request_id)
    if isinstance(request_id, str):
        return len(request_id) <= MAX_ECHOED_ID
    return request_id is None or isinstance(request_id, int)


def read_registry_message(raw: bytes) -> dict[str, Any] | None:
    """A registry reply or event as a JSON object; None when it is not one."""
    try:
        message = json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError):
        return None
    return message if isinstance(message, dict) else None


def registry_id(message: Mapping[str, Any]) -> Any:
    """The request id a registry reply answers."""
    return message.get(ID)


def registry_succeeded(message: Mapping[str, Any]) -> bool:
    return message.get(SUCCEEDED) is True


def registry_failure(message: Mapping[str, Any]) -> tuple[Any, str]:
    """The error code and message of a failed registry reply."""
    return message.get(ERROR), str(message.get(MESSAGE, ""))


def registry_position(message: Mapping[str, Any]) -> tuple[Any, Any]:
    """The epoch and seq a ``list`` or ``info`` reply reflects."""
    return message.get(EPOCH), message.get(SEQ)


def registry_event_kind(message: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    """The epoch, sequence number and kind of a registry event."""
    return message.get(EPOCH), message.get(SEQ), message.get(KIND)
