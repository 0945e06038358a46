"""Every message of the registry, built and read in one place: one strict JSON frame each (``docs/registry.md``)."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any, Final

from runtime.protocol.names import EPOCH, ERROR, ID, KIND, MESSAGE, SEQ, SUCCEEDED, VERSION, V


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
