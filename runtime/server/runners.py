"""Runners: what runs a method call or a property write on the thread it is given, and writes its reply.

A ``MethodRunner`` and a ``PropertyWriter`` are built once per method or writable
property, with what depends only on it looked up then (its validators, how its
result is written); a ``Call`` is one accepted call of a method. They know nothing
of sockets or threads: they return the frames of the reply, and the engine sends them.
"""

from __future__ import annotations

import logging
import time
import traceback
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from pydantic import ValidationError

from runtime.errors import RemoteError
from runtime.protocol.error_bodies import describe_exception, describe_expired, describe_failure, describe_validation
from runtime.protocol.messages import error_reply, ok_reply
from runtime.protocol.wire import WRITERS
from runtime.schema.validation import CallPlan
from runtime.server.current import CURRENT

logger = logging.getLogger(__name__)


class Runner(Protocol):
    """What runs the calls of one method: a ``MethodRunner``, or a stream's ``StreamRunner``."""

    name: str
    oneway: bool
    concurrent: bool

    def run(self, call: Any) -> list[Any] | None:
        """Run ``call`` on this thread: the frames of its reply, or None when nothing is to be sent."""
        ...


class Call:
    """One call accepted from the wire: who asked, under which request id, what runs it, with what, until when.

    ``key`` is its entry in the dispatcher's table of calls in flight; ``size`` the bytes of its message.
    ``cancelled`` and ``time_left`` are what the implementation sees through ``runtime.current_call()``.
    """

    __slots__ = ("args", "caller", "cancelled", "deadline", "key", "request_id", "runner", "size")

    def __init__(
        self,
        caller: bytes,
        request_id: Any,
        runner: Runner,
        args: dict[str, Any],
        deadline: float | None,
        size: int = 0,
    ) -> None:
        self.caller = caller
        self.request_id = request_id
        self.runner = runner
        self.args = args
        self.deadline = deadline
        """When the caller stops waiting (monotonic), or None."""
        self.key: tuple[bytes, Any] = (caller, request_id)
        self.size = size
        self.cancelled = False
        """Set by the dispatcher when the caller cancels the call or goes away."""

    @property
    def time_left(self) -> float | None:
        """Seconds until the caller's deadline (never below 0), or None for none."""
        return None if self.deadline is None else max(0.0, self.deadline - time.monotonic())


class MethodRunner:
    """Runs the calls of one method: validates the arguments, calls the implementation, writes the reply."""

    __slots__ = (
        "_errors",
        "_implementation",
        "_stopping",
        "_validate_args",
        "_validate_result",
        "_write",
        "concurrent",
        "name",
        "oneway",
    )

    def __init__(
        self,
        plan: CallPlan,
        implementation: Callable[..., Any],
        errors: Mapping[str, type[RemoteError]],
        stopping: Callable[[], bool],
    ) -> None:
        self.name = plan.spec.name
        self.oneway = plan.spec.oneway
        self.concurrent = plan.spec.concurrent
        self._implementation = implementation
        self._validate_args = plan.validate_args
        self._validate_result = plan.validate_result
        self._write = WRITERS[plan.result_shape]
        self._errors = errors
        self._stopping = stopping

    def run(self, call: Call) -> list[Any] | None:
        """Run ``call`` on this thread: the frames of its reply, or None when nothing is to be sent."""
        if call.cancelled or self._stopping():  # cancelled while queued: it never starts
            return None
        deadline = call.deadline
        if deadline is not None and time.monotonic() > deadline:
            logger.info("%s not started: its caller's deadline passed while it was queued", self.name)
            return self._failed(call, describe_expired(f"{self.name} not started: deadline passed"))
        try:
            values = self._validate_args(call.args).__dict__
        except ValidationError as exc:
            return self._failed(call, describe_validation(exc))
        CURRENT.call = call
        try:
            result = self._implementation(**values)
        except Exception as exc:
            logger.info("%s raised %s: %s", self.name, type(exc).__name__, exc)
            return self._failed(call, _describe_raised(exc, self._errors))
        finally:
            CURRENT.call = None
        if self.oneway:
            return None
        try:
            result = self._validate_result(result)
        except ValidationError as exc:
            logger.error("%s returned a value that does not match its declared type: %s", self.name, exc)
            message = f"{self.name} returned a value that does not match its declared type: {exc}"
            return self._failed(call, describe_failure("ResultValidationError", message))
        return ok_reply(call.request_id, result, self._write)

    def _failed(self, call: Call, error: dict[str, Any]) -> list[Any] | None:
        return None if self.oneway else error_reply(call.request_id, error)


class PropertyWriter:
    """Writes one property from the wire: validates the value, then hands it to ``set_<name>`` or stores it."""

    __slots__ = ("_errors", "_setter", "_store", "_validate", "name")

    def __init__(
        self,
        name: str,
        validate: Callable[[Any], Any],
        setter: Callable[[Any], object] | None,
        store: Callable[[str, Any], None],
        errors: Mapping[str, type[RemoteError]],
    ) -> None:
        self.name = name
        self._validate = validate
        self._setter = setter
        self._store = store
        self._errors = errors

    def write(self, request_id: Any, value: Any) -> list[Any]:
        """Write ``value`` on this thread: the frames of the reply (an error reply when it is refused)."""
        try:
            validated = self._validate(value)
        except ValidationError as exc:
            return error_reply(request_id, describe_validation(exc))
        try:
            if self._setter is None:
                self._store(self.name, validated)
            else:
                self._setter(validated)
        except Exception as exc:
            logger.info("a write of %s was refused: %s: %s", self.name, type(exc).__name__, exc)
            return error_reply(request_id, _describe_raised(exc, self._errors))
        return ok_reply(request_id)


def _describe_raised(exc: Exception, errors: Mapping[str, type[RemoteError]]) -> dict[str, Any]:
    """The error body of what an implementation raised."""
    return describe_exception(exc, traceback.format_exc(), errors)
