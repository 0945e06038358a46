"""Error bodies: how a failure travels in an ``err`` reply, and how the caller turns it back into an exception.

The ``describe_*`` functions turn an exception into the JSON ``error`` object of a
reply; ``rebuild`` turns that object back into the exception the caller raises.
The ``kind`` of an error body is one of ``remote``, ``declared``, ``validation``,
``protocol``, ``mismatch``, ``expired``, ``cancelled`` and ``lost`` (``docs/protocol.md``, Errors).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any, Final

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

from runtime.errors import CallTimeout, Cancelled, ConnectionLost, InterfaceMismatch, ProtocolError, RemoteError
from runtime.protocol.limits import quote

logger = logging.getLogger(__name__)

ErrorFactory = Callable[[str, Mapping[str, Any]], RemoteError]
"""Builds a declared (IDL) error from its message and its fields as they arrived."""


_ECHOED: Final = 200
"""Characters of JSON an error body quotes of the input it refuses; a longer input is quoted cut short."""


def _json_safe(value: Any) -> Any:
    """``value`` as an error body may carry it back: itself when it is short, strict JSON, else a short repr."""
    try:
        text = json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return quote(value)
    return value if len(text) <= _ECHOED else quote(value)


def describe_validation(exc: ValidationError) -> dict[str, Any]:
    """The reply form of a pydantic ``ValidationError``: its title and error list, JSON-safe."""
    errors = []
    for error in exc.errors(include_url=False):
        item: dict[str, Any] = {
            "type": error["type"],
            "loc": [part if isinstance(part, int | str) else str(part) for part in error["loc"]],
            "msg": error["msg"],
            "input": _json_safe(error.get("input")),
        }
        errors.append(item)
    return {"kind": "validation", "title": exc.title, "message": str(exc), "errors": errors}


def describe_exception(exc: BaseException, traceback: str, declared: Collection[str] = ()) -> dict[str, Any]:
    """The reply form of an exception raised by the implementation; ``declared`` names the interface's IDL errors.

    A ``RemoteError`` subclass the interface does not declare travels as a plain remote error.
    """
    if isinstance(exc, ValidationError):
        out = describe_validation(exc)
        out["traceback"] = traceback
        return out
    if isinstance(exc, RemoteError):
        kind = "declared" if type(exc) is not RemoteError and exc.type in declared else "remote"
        return {
            "kind": kind,
            "type": exc.type,
            "message": exc.message,
            "traceback": traceback or exc.traceback,
            "fields": exc.fields,
        }
    return {"kind": "remote", "type": type(exc).__name__, "message": str(exc), "traceback": traceback}


def describe_protocol(message: str) -> dict[str, Any]:
    """The reply form of a message that broke the protocol or named something unknown."""
    return {"kind": "protocol", "message": message}


def describe_mismatch(message: str, differences: list[str]) -> dict[str, Any]:
    """The reply form of a ``hello`` whose description the server's is not compatible with."""
    return {"kind": "mismatch", "message": message, "differences": differences}


def describe_expired(message: str) -> dict[str, Any]:
    """The reply form of a call not started because its caller's deadline had passed."""
    return {"kind": "expired", "message": message}


def describe_cancelled(message: str) -> dict[str, Any]:
    """The reply form of a call its caller cancelled: the one reply of a call in flight that a ``cancel`` names."""
    return {"kind": "cancelled", "message": message}


def describe_lost(message: str) -> dict[str, Any]:
    """The reply form of a call whose device went away while it was in flight (a bridge's word for its callers)."""
    return {"kind": "lost", "message": message}


def describe_failure(type_name: str, message: str) -> dict[str, Any]:
    """The reply form of a failure of the server's own, named ``type_name`` (``SerializationError``...)."""
    return {"kind": "remote", "type": type_name, "message": message}


def rebuild(
    error: Any,
    declared: Mapping[str, ErrorFactory],
    where: str,
) -> Exception:
    """The caller-side exception for the ``error`` object of a reply.

    ``declared`` maps an IDL error name to a function that builds its class from
    the message and the (still encoded) fields. ``where`` names the call, for messages.
    """
    if not isinstance(error, Mapping):
        return ProtocolError(f"{where}: malformed error reply {quote(error)}")
    kind = error.get("kind")
    message = str(error.get("message", ""))
    traceback = str(error.get("traceback", "") or "")
    if kind == "validation":
        return _rebuild_validation(error, where)
    if kind == "declared":
        name = str(error.get("type", "RemoteError"))
        fields = error.get("fields") or {}
        build = declared.get(name)
        if build is not None and isinstance(fields, Mapping):
            try:
                exc = build(message, fields)
            except (ValidationError, TypeError) as bad:
                logger.warning("%s: declared error %s arrived with bad fields: %s", where, name, bad)
            else:
                exc.traceback = traceback
                return exc
        return RemoteError(
            message, type=name, traceback=traceback, **(dict(fields) if isinstance(fields, Mapping) else {})
        )
    if kind == "remote":
        return RemoteError(message, type=str(error.get("type", "Exception")), traceback=traceback)
    if kind == "expired":
        return CallTimeout(f"{where}: {message}")
    if kind == "cancelled":
        return Cancelled(f"{where}: {message}")
    if kind == "lost":
        return ConnectionLost(f"{where}: {message}")
    if kind == "protocol":
        return ProtocolError(f"{where}: {message}")
    if kind == "mismatch":  # the message names both sides already
        differences = error.get("differences")
        return InterfaceMismatch(message, [str(d) for d in differences] if isinstance(differences, list) else [])
    return ProtocolError(f"{where}: error reply of unknown kind {quote(kind)}: {message}")


def _rebuild_validation(error: Mapping[str, Any], where: str) -> Exception:
    line_errors: list[InitErrorDetails] = []
    for item in error.get("errors") or []:
        if not isinstance(item, Mapping):
            continue
        msg = str(item.get("msg", "invalid value"))
        loc = item.get("loc") or []
        line_errors.append(
            {
                "type": PydanticCustomError(str(item.get("type", "value_error")), msg),
                "loc": tuple(part for part in loc if isinstance(part, int | str)),
                "input": item.get("input"),
            }
        )
    if not line_errors:
        return ProtocolError(f"{where}: validation failed on the server: {error.get('message', '')}")
    try:
        return ValidationError.from_exception_data(str(error.get("title", where)), line_errors)
    except Exception as bad:  # a malformed list from a hostile peer must not crash the caller
        return ProtocolError(f"{where}: validation failed on the server ({bad}): {error.get('message', '')}")
