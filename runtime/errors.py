"""Every error the runtime raises, and how a remote failure travels in a reply.

One tree, all importable from ``runtime``::

    ZidlError                      anything zidl raises on purpose
    ├── RemoteError                the implementation raised (IDL errors are subclasses)
    ├── CallTimeout                a call or handshake exceeded its timeout (also a TimeoutError)
    ├── Cancelled                  the call or stream was cancelled by its caller
    ├── ConnectionLost             the peer or network went away while a call was in flight
    ├── AuthenticationFailed       the CurveZMQ handshake failed (key not allowed, wrong server key…)
    ├── ClientClosed               you closed the client (or its server) and then used it
    ├── InterfaceMismatch          the handshake found client and server incompatible
    ├── ProtocolError              a message broke the wire protocol, or named something unknown
    ├── DeviceNotFound             the registry knows no device by that name
    └── RegistryUnavailable        no registry answers at the address

A pydantic ``ValidationError`` is not in the tree: a bad argument or property value
raises pydantic's own error in the caller, whichever side found it.
"""

from __future__ import annotations

from typing import Any


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


class Cancelled(ZidlError):
    """The call or stream was cancelled by its caller (``stream.cancel()``, a ``with`` block left, a task cancelled).

    ``stream.result()`` of a cancelled stream raises it; the device was told and stopped the call.
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
