"""How the web view reports what went wrong: a status and a JSON body a program can read.

Every error body is ``{"error": {"type": ..., "message": ...}}``; a refused value
(pydantic's ``ValidationError``, found by the gateway's client or by the device)
adds ``"errors"``, pydantic's own list. The same ``error`` object ends a stream's
WebSocket.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from starlette.responses import JSONResponse

from runtime import CallTimeout, DeviceNotFound, RemoteError, ZidlError
from runtime.tools.web.book import UnknownDevice


class Refused(Exception):
    """A request the web view refuses itself: an unknown name, a malformed body, a write when read-only."""

    def __init__(self, status: int, kind: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.message = message


def not_found(message: str) -> Refused:
    return Refused(404, "NotFound", message)


def validation_errors(exc: ValidationError) -> list[dict[str, Any]]:
    """Pydantic's error list as JSON (its ``ctx`` may hold exceptions, which its own JSON renders as text)."""
    errors: list[dict[str, Any]] = json.loads(exc.json(include_url=False))
    return errors


def _one_line(errors: list[dict[str, Any]]) -> str:
    return "; ".join(f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}" for error in errors)


Known = Refused | ValidationError | ZidlError | UnknownDevice
KNOWN = (Refused, ValidationError, ZidlError, UnknownDevice)
"""What a request may meet and is reported; anything else is a bug of the web view, logged with its traceback."""


def describe(exc: Known) -> tuple[int, dict[str, Any]]:
    """The status and the ``error`` object for ``exc``."""
    if isinstance(exc, Refused):
        return exc.status, {"type": exc.kind, "message": exc.message}
    if isinstance(exc, ValidationError):
        errors = validation_errors(exc)
        return 422, {"type": "ValidationError", "message": _one_line(errors), "errors": errors}
    if isinstance(exc, UnknownDevice | DeviceNotFound):
        return 404, {"type": "NotFound", "message": str(exc)}
    if isinstance(exc, RemoteError):
        return 502, {"type": exc.type, "message": exc.message}
    if isinstance(exc, CallTimeout):
        return 504, {"type": "CallTimeout", "message": str(exc)}
    return 502, {"type": type(exc).__name__, "message": str(exc)}  # the device went away, refused our key...


def problem(exc: Known) -> JSONResponse:
    status, error = describe(exc)
    return JSONResponse({"error": error}, status_code=status)
