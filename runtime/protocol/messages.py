"""Every message of a device, built and read in one place: requests, streams, replies, handshakes and signals.

A device message is a header (``runtime.protocol.names``) with its body written by
``runtime.protocol.wire``; the registry's own messages are in
``runtime.protocol.registry_messages``. Senders call the builders here, receivers the
readers, so no other module writes a header by hand.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any, Final

from runtime.errors import ProtocolError
from runtime.protocol.error_bodies import ErrorFactory, describe_failure, rebuild
from runtime.protocol.limits import quote
from runtime.protocol.names import (
    CANCEL,
    CREDIT,
    CREDITS,
    ERR,
    ID,
    ITEM,
    KIND,
    NAME,
    OK,
    SEQUENCE,
    SIGNAL,
    STREAM,
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
    check_version,
    decode,
    decode_body,
    encode,
    read_header,
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
    if timeout is not None and timeout < _LONGEST_TIMEOUT:  # an infinite one is no limit, and JSON has no infinity
        header[TIMEOUT] = timeout
    return write(header, body)


_LONGEST_TIMEOUT: Final = 1e9
"""Seconds (about 31 years) beyond which a request's timeout means no limit, on either side."""


class Request:
    """A request as a server reads it; ``timeout`` is None unless the caller sent a usable one.

    ``size`` is the bytes of its message, which a queue of calls counts.
    """

    __slots__ = ("body", "header", "kind", "name", "request_id", "size", "timeout")

    def __init__(
        self, kind: Any, request_id: Any, name: Any, timeout: float | None, body: Any, header: Any = None, size: int = 0
    ) -> None:
        self.kind = kind
        self.request_id = request_id
        self.name = name
        self.timeout = timeout
        self.body = body
        self.header: dict[str, Any] = header if header is not None else {}
        """The whole header, for what only some kinds carry (``credits``)."""
        self.size = size


class BadRequest(ProtocolError):
    """A request that cannot be read; ``request_id`` is its id when the header could still be read, else None."""

    def __init__(self, message: str, request_id: Any) -> None:
        super().__init__(message)
        self.request_id = request_id


def read_request(frames: Sequence[Frame], limits: Limits) -> Request:
    """The request in ``frames`` (header, then value frames); raises ``BadRequest``."""
    request_id: Any = None
    try:
        size = len(frames[0])
        if len(frames) > 1 or size > limits.max_header_bytes or size > limits.max_bytes:  # else nothing to check
            size = check_limits(frames, limits)
        header = read_header(frames[0])
        request_id = header.get(ID)  # before the version is checked: a refusal carries the id
        if header.get(V) != VERSION:
            check_version(header)
        body = decode_body(header, frames)
    except ProtocolError as exc:
        raise BadRequest(str(exc), request_id if request_id is not None else request_id_of(frames[0])) from None
    timeout = header.get(TIMEOUT)
    if timeout is not None and not (type(timeout) in (int, float) and timeout >= 0):  # NaN and booleans too
        raise BadRequest(f"'t' is the seconds the caller waits, a number 0 or more, not {quote(timeout)}", request_id)
    if timeout is not None and timeout >= _LONGEST_TIMEOUT:  # 10**999 included: no limit
        timeout = None
    return Request(header.get(KIND), request_id, header.get(NAME), timeout, body, header, size)


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
    raise ProtocolError(f"{where}: reply of unknown kind {quote(kind)}")


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


def read_subscription(message: bytes) -> tuple[bool, bytes] | None:
    """What a message from a publisher's subscriber asks: ``(True, topic)`` to subscribe, ``(False, topic)`` to
    unsubscribe; None for any other message."""
    flag = message[:1]
    if flag == b"\x01":
        return True, message[1:]
    if flag == b"\x00":
        return False, message[1:]
    return None


def longest_subscription(interface: Interface) -> int:
    """The bytes of the longest subscription a client of ``interface`` sends: a signal's topic or a welcome's."""
    return 1 + max([len(welcome_topic()), *(len(topic(signal.name)) for signal in interface.signals)])


def welcome(token: bytes) -> list[Any]:
    """The frames that answer a welcome subscription."""
    return [token, *encode({V: VERSION, KIND: WELCOME})]
