"""A stream on the device: its call in flight (credit, the newest unsent item) and the runner that drives its generator.

The reader grants credit as it consumes; the device sends an item only against
credit. Without ``latest`` the runner waits for credit before it asks the generator
for its next item, so the generator is never more than the granted window ahead of
its reader. With ``latest`` a ``yield`` never waits: an item that finds no credit
waits as the one unsent item, and a newer one replaces it; the credit that comes
next sends it. Like ``runners``, this knows nothing of sockets: items go out through
``send`` (the engine's ``reply``), the final value or error as the returned frames.
"""

from __future__ import annotations

import logging
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping
from typing import Any, Final

from pydantic import ValidationError

from runtime.errors import RemoteError
from runtime.protocol.error_bodies import describe_exception, describe_expired, describe_failure, describe_validation
from runtime.protocol.messages import error_reply, item, ok_reply
from runtime.protocol.wire import WRITERS
from runtime.schema.validation import CallPlan
from runtime.server.current import CURRENT
from runtime.server.runners import Call

logger = logging.getLogger(__name__)

MAX_CREDIT: Final = 64
"""The most items a reader may have granted and not received: the device's memory for one stream is bounded by
this many items whatever a client grants (zidl's clients grant a window of 8)."""
_POLL: Final = 0.1
"""Seconds between looks at the server stopping while a stream waits for credit."""

Send = Callable[[bytes, list[Any]], None]
"""How an item reaches its caller: the engine's ``reply``, from any thread."""


class StreamCall(Call):
    """One stream in flight: what its reader has granted, and under ``lock`` every item it is sent.

    Items are sent under ``lock``, and so is the credit that sends the unsent item, so
    they leave in order; the dispatcher sets ``cancelled`` and then calls ``stop``, so
    no item follows the reply that says the stream was cancelled.
    """

    __slots__ = ("credit", "lock", "more", "sequence", "timeout", "unsent")

    def __init__(
        self,
        caller: bytes,
        request_id: Any,
        runner: StreamRunner,
        args: dict[str, Any],
        timeout: float | None,
        credit: int,
        size: int = 0,
    ) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        super().__init__(caller, request_id, runner, args, deadline, size)
        self.timeout = timeout
        """The longest wait of the reader for the next item: each item sent moves the deadline on by it."""
        self.credit = min(credit, MAX_CREDIT)
        self.lock = threading.Lock()
        self.more = threading.Condition(self.lock)
        self.sequence = 0
        """The number of the last item the generator yielded (1, 2, 3…)."""
        self.unsent: list[Any] | None = None
        """A ``latest`` stream's newest item, waiting for credit."""

    def grant(self, credits: int, send: Send) -> None:
        """The reader will take ``credits`` more items: send the unsent one, wake a generator waiting for credit."""
        with self.lock:
            self.credit = min(self.credit + credits, MAX_CREDIT)
            if self.unsent is not None and not self.cancelled:
                self._send(self.unsent, send)
                self.unsent = None
            self.more.notify()

    def stop(self) -> None:
        """After ``cancelled`` is set: wake a generator waiting for credit, and wait out an item being sent."""
        with self.lock:
            self.more.notify()

    def wait_for_credit(self, stopping: Callable[[], bool]) -> bool:
        """Wait until the reader has granted an item; False when the stream is cancelled or the server stops."""
        with self.lock:
            while self.credit == 0 and not self.cancelled:
                if stopping():
                    return False
                self.more.wait(_POLL)
            return not self.cancelled

    def offer(self, frames: list[Any], send: Send, *, latest: bool) -> None:
        """Send an item against credit; without credit (``latest`` only) keep it as the unsent one, replacing any."""
        with self.lock:
            if self.cancelled:
                return
            if self.credit > 0:
                self._send(frames, send)
            elif latest:
                self.unsent = frames

    def flush(self, send: Send) -> None:
        """At the end of a ``latest`` stream: its unsent item goes now, before the final value, credit or not."""
        with self.lock:
            if self.unsent is not None and not self.cancelled:
                self.credit += 1
                self._send(self.unsent, send)
                self.unsent = None

    def _send(self, frames: list[Any], send: Send) -> None:
        self.credit -= 1
        if self.timeout is not None:
            self.deadline = time.monotonic() + self.timeout
        send(self.caller, frames)


class StreamRunner:
    """Runs the calls of one stream method: validates the arguments, drives the generator, validates each item."""

    __slots__ = (
        "_errors",
        "_implementation",
        "_send",
        "_stopping",
        "_validate_args",
        "_validate_item",
        "_validate_result",
        "_write_item",
        "_write_result",
        "concurrent",
        "latest",
        "name",
        "oneway",
    )

    def __init__(
        self,
        plan: CallPlan,
        implementation: Callable[..., Any],
        errors: Mapping[str, type[RemoteError]],
        stopping: Callable[[], bool],
        send: Send,
    ) -> None:
        if plan.validate_item is None:
            raise ValueError(f"{plan.spec.name} is not a stream")
        self.name = plan.spec.name
        self.oneway = False
        self.concurrent = plan.spec.concurrent
        self.latest = plan.spec.latest
        self._implementation = implementation
        self._validate_args = plan.validate_args
        self._validate_item = plan.validate_item
        self._validate_result = plan.validate_result
        self._write_item = WRITERS[plan.item_shape]
        self._write_result = WRITERS[plan.result_shape]
        self._errors = errors
        self._stopping = stopping
        self._send = send

    def run(self, call: StreamCall) -> list[Any] | None:
        """Run the stream on this thread until its generator ends: the frames of its final reply, or None."""
        if call.cancelled or self._stopping():  # cancelled while queued: it never starts
            return None
        if call.deadline is not None and time.monotonic() > call.deadline:
            logger.info("%s not started: its caller's deadline passed while it was queued", self.name)
            return error_reply(call.request_id, describe_expired(f"{self.name} not started: deadline passed"))
        try:
            values = self._validate_args(call.args).__dict__
        except ValidationError as exc:
            return error_reply(call.request_id, describe_validation(exc))
        CURRENT.call = call
        try:
            return self._produce(call, values)
        finally:
            CURRENT.call = None

    def _produce(self, call: StreamCall, values: dict[str, Any]) -> list[Any] | None:
        try:
            items: Iterator[Any] = iter(self._implementation(**values))
        except Exception as exc:
            return self._raised(call, exc)
        try:
            return self._drive(call, items)
        finally:
            close = getattr(items, "close", None)
            if close is not None:  # a generator left at its ``yield`` (cancelled, stopping, bad item): its finally runs
                try:
                    close()
                except Exception:
                    logger.exception("%s: the generator failed while closing", self.name)

    def _drive(self, call: StreamCall, items: Iterator[Any]) -> list[Any] | None:
        latest, send = self.latest, self._send
        while True:
            if not latest and not call.wait_for_credit(self._stopping):
                return None
            try:
                value = next(items)
            except StopIteration as end:
                return self._final(call, end.value)
            except Exception as exc:
                return self._raised(call, exc)
            if call.cancelled or self._stopping():
                return None
            call.sequence += 1
            try:
                frames = item(call.request_id, call.sequence, self._validate_item(value), self._write_item)
            except ValidationError as exc:
                message = f"{self.name} yielded an item that does not match its declared type: {exc}"
                logger.error("%s", message)
                return error_reply(call.request_id, describe_failure("ResultValidationError", message))
            except (TypeError, ValueError) as exc:
                logger.error("%s: an item could not be sent: %s", self.name, exc)
                message = f"an item of {self.name} could not be sent: {exc}"
                return error_reply(call.request_id, describe_failure("SerializationError", message))
            call.offer(frames, send, latest=latest)

    def _final(self, call: StreamCall, value: Any) -> list[Any] | None:
        if call.cancelled:
            return None
        if self.latest:
            call.flush(self._send)
        try:
            result = self._validate_result(value)
        except ValidationError as exc:
            message = f"{self.name} returned a value that does not match its declared type: {exc}"
            logger.error("%s", message)
            return error_reply(call.request_id, describe_failure("ResultValidationError", message))
        return ok_reply(call.request_id, result, self._write_result)

    def _raised(self, call: StreamCall, exc: Exception) -> list[Any]:
        logger.info("%s raised %s: %s", self.name, type(exc).__name__, exc)
        return error_reply(call.request_id, describe_exception(exc, traceback.format_exc(), self._errors))
