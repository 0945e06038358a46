"""Every error the runtime raises, and how a remote failure travels in a reply.

One tree, all importable from ``runtime``::

    ZidlError                      anything zidl raises on purpose
    ├── RemoteError                the implementation raised (IDL errors are subclasses)
    ├── CallTimeout                a call or handshake exceeded its timeout (also a TimeoutError)
    ├── ConnectionLost             the peer or network went away while a call was in flight
    ├── AuthenticationFailed       the CurveZMQ handshake failed (key not allowed, wrong server key…)
    ├── ClientClosed               you closed the client (or its server) and then used it
    ├── InterfaceMismatch          the handshake found client and server incompatible
    ├── ProtocolError              a message broke the wire protocol, or named something unknown
    ├── DeviceNotFound             the registry knows no device by that name
    └── RegistryUnavailable        no registry answers at the address

A pydantic ``ValidationError`` is not in the tree: a bad argument or property value
raises pydantic's own error in the caller, whichever side found it.

The ``describe_*`` functions turn an exception into the JSON ``error`` object of a
reply and ``rebuild`` turns it back into an exception in the caller.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError

logger = logging.getLogger(__name__)


class ZidlError(Exception):
    """The base of every error zidl raises."""


class RemoteError(ZidlError):
    """An exception raised by the remote implementation.

    ``type`` is the remote exception's class name, ``message`` its message and
    ``traceback`` the remote traceback text (empty when raised locally). Errors
    declared in an IDL are subclasses whose fields are attributes.
    """

    def __init__(self, message: str = "", *, type: str | None = None, traceback: str | None = None, **fields: Any):
        super().__init__(message)
        self.message = message
        self.type = type or self.__class__.__name__
        self.traceback = traceback or ""
        self.fields: dict[str, Any] = dict(fields)
        for name, value in fields.items():
            setattr(self, name, value)

    def __str__(self) -> str:
        text = self.message or self.type
        if self.type != self.__class__.__name__:
            text = f"{self.type}: {self.message}" if self.message else self.type
        if self.fields:
            text += " (" + ", ".join(f"{k}={v!r}" for k, v in self.fields.items()) + ")"
        return text

    def __reduce__(self) -> tuple[Any, ...]:  # keeps copy/deepcopy working for subclasses with fields
        return (_rebuild_remote, (self.__class__, self.message, self.type, self.traceback, self.fields))


def _rebuild_remote(
    cls: type[RemoteError], message: str, type_: str, traceback: str, fields: dict[str, Any]
) -> RemoteError:
    exc = cls.__new__(cls)
    RemoteError.__init__(exc, message, type=type_, traceback=traceback, **fields)
    return exc


class CallTimeout(ZidlError, TimeoutError):
    """A call, property access or handshake got no answer within its timeout.

    The client stays usable; a reply that comes later is dropped.
    """


class ConnectionLost(ZidlError):
    """The device went away (disconnect or missed heartbeats) while a call was in flight."""


class AuthenticationFailed(ZidlError):
    """The CurveZMQ handshake with the peer failed, so nothing was sent.

    The server refused this client's key, the client holds the wrong public key for
    the server, or only one of the two has Curve switched on. The message says which.
    """


class ClientClosed(ZidlError):
    """The client was closed by its owner; calls made during or after ``close()`` end with this."""


class InterfaceMismatch(ZidlError):
    """Client and server interfaces are incompatible; the message lists every difference."""

    def __init__(self, message: str, differences: list[str] | None = None) -> None:
        super().__init__(message)
        self.differences = differences or []


class ProtocolError(ZidlError):
    """A message that breaks the protocol: malformed, too large, or naming an unknown method or property."""


class DeviceNotFound(ZidlError):
    """The registry has no device registered under that name."""


class RegistryUnavailable(ZidlError):
    """No registry answered at the given address."""


# --- errors in replies --------------------------------------------------------------------------


def _json_safe(value: Any) -> Any:
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


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


def describe_exception(exc: BaseException, traceback: str) -> dict[str, Any]:
    """The reply form of an exception raised by the implementation."""
    if isinstance(exc, ValidationError):
        out = describe_validation(exc)
        out["traceback"] = traceback
        return out
    if isinstance(exc, RemoteError):
        kind = "declared" if type(exc) is not RemoteError else "remote"
        return {
            "kind": kind,
            "type": exc.type,
            "message": exc.message,
            "traceback": traceback or exc.traceback,
            "fields": exc.fields,
        }
    return {"kind": "remote", "type": type(exc).__name__, "message": str(exc), "traceback": traceback}


def describe_protocol(message: str) -> dict[str, Any]:
    return {"kind": "protocol", "message": message}


def rebuild(
    error: Any,
    declared: Mapping[str, Callable[[str, Mapping[str, Any]], RemoteError]],
    where: str,
) -> Exception:
    """The caller-side exception for the ``error`` object of a reply.

    ``declared`` maps an IDL error name to a function that builds its class from
    the message and the (still encoded) fields. ``where`` names the call, for messages.
    """
    if not isinstance(error, Mapping):
        return ProtocolError(f"{where}: malformed error reply {error!r}")
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
    if kind == "protocol":
        return ProtocolError(f"{where}: {message}")
    return ProtocolError(f"{where}: error reply of unknown kind {kind!r}: {message}")


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
