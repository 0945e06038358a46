"""The dispatcher: what each message to a running server means, and the table of the calls in flight.

A request goes to the handler of its kind; a method or property is found in tables
built from the interface description, never by ``getattr`` of a name that came off
the wire. Serial calls go to the engine, which runs them one at a time in arrival
order; ``concurrent`` methods and property writes go to a small pool, and a
``concurrent`` stream to a thread of its own for its whole life. What each
connection may have in progress, and what may wait, is bounded
(``runtime.server.quotas``): a request over a bound gets an error reply with its id
at once. A ``cancel`` finds its call in the table of calls in flight, keyed by the
sender's identity, so it only ever reaches the sender's own calls; a caller whose
connection dropped (``gone``) has all of its calls cancelled.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime.protocol.error_bodies import describe_cancelled, describe_protocol
from runtime.protocol.handshake import hello_refusal
from runtime.protocol.limits import quote
from runtime.protocol.messages import (
    BadRequest,
    Request,
    credits_of,
    emission,
    error_reply,
    hello_reply_body,
    ok_reply,
    read_request,
    read_subscription,
    topic,
    welcome,
    welcome_requested,
)
from runtime.protocol.names import CALL, CANCEL, CREDIT, GET, HELLO, SET, STREAM
from runtime.protocol.wire import Limits, request_id_of
from runtime.schema.validation import Tables
from runtime.server.engine import Engine
from runtime.server.publisher import Subscription
from runtime.server.quotas import Quotas, Usage
from runtime.server.runners import Call, MethodRunner, PropertyWriter
from runtime.server.streams import StreamCall, StreamRunner

_STREAM_THREAD_WAIT = 5.0
"""Seconds ``close()`` waits for each concurrent stream's thread, cancelled, to leave its generator."""

logger = logging.getLogger(__name__)


class Dispatcher:
    """Gives the messages of one running server their meaning (the engine's ``Handler``).

    ``in_flight`` holds every accepted call, keyed by its caller's identity and its
    request id, from when it is accepted until its reply is handed to the engine
    (a oneway call: until it ends). It changes by single dict operations, from
    whichever thread accepts or runs a call; a caller that reuses the id of its own
    call still in flight has the later call take the entry over. Whoever takes a call
    out of the table under ``_claims`` sends its one final reply: the thread that ran
    it, or a ``cancel`` (whose reply says it was cancelled).
    """

    def __init__(
        self, server: object, tables: Tables, engine: Engine, limits: Limits, store: Callable[[str, Any], None]
    ) -> None:
        """Serve ``server`` (described by ``tables``) through ``engine``; ``store`` keeps a validated property value."""
        interface = tables.interface
        self._interface = interface
        self._name = interface.name
        self._engine = engine
        self._limits = limits
        self._values = vars(server)
        """Where the server keeps its property values."""
        self._properties = tables.properties
        self._hello_body = hello_reply_body(interface, engine.pub_address)
        self._pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="zidl-pool")
        self._sequences: dict[str, int] = {}
        self._publish_lock = threading.Lock()
        self._topics = frozenset(topic(signal.name) for signal in interface.signals)
        self._quotas = Quotas(limits)
        self._admit, self._release = self._quotas.admit, self._quotas.release
        self.in_flight: dict[tuple[bytes, Any], Call] = {}
        self._claims = threading.Lock()
        self._stream_threads: set[threading.Thread] = set()
        # what the wire may reach: built from the description, never from a received name
        errors, stopping = tables.errors, engine.stopping.is_set
        self._runners = {
            m.name: MethodRunner(tables.calls[m.name], getattr(server, m.name), errors, stopping)
            for m in interface.methods
            if not m.stream
        }
        self._streams = {
            m.name: StreamRunner(tables.calls[m.name], getattr(server, m.name), errors, stopping, engine.reply)
            for m in interface.methods
            if m.stream
        }
        self._writers = {
            p.name: PropertyWriter(
                p.name, tables.values[p.name].validate_python, getattr(server, f"set_{p.name}", None), store, errors
            )
            for p in interface.properties
            if p.writable
        }
        self._handlers: dict[str, Callable[[threading.Thread, bytes, Request], None]] = {
            HELLO: self._hello,
            CALL: self._call,
            GET: self._get,
            SET: self._set,
            STREAM: self._stream,
            CREDIT: self._credit,
            CANCEL: self._cancel,
        }

    # --- what the engine hands over ---------------------------------------------------------------

    def request(self, me: threading.Thread, caller: bytes, message: list[Any]) -> None:
        """Read one request of ``caller`` and hand it to the handler of its kind; ``me`` owns the sockets."""
        try:
            request = read_request(message, self._limits)
        except BadRequest as exc:
            self._refuse(caller, exc.request_id, str(exc))
            return
        kind = request.kind
        handle = self._handlers.get(kind) if isinstance(kind, str) else None
        if handle is None:
            self._refuse(caller, request.request_id, f"unknown request kind {quote(kind)}")
            return
        handle(me, caller, request)

    def run(self, call: Call) -> list[Any] | None:
        """Run an accepted call on this thread; it leaves the table of calls in flight as its reply is handed back.

        A call cancelled meanwhile has had its reply: what it returns is not sent.
        """
        frames = None
        try:
            frames = call.runner.run(call)
        finally:
            with self._claims:
                if self.in_flight.get(call.key) is call:  # else cancelled, or a later request with its id took over
                    del self.in_flight[call.key]
                elif call.cancelled:
                    frames = None
            self._release(call.caller)
        return frames

    def gone(self, caller: bytes) -> None:
        """``caller``'s connection dropped: cancel its calls and streams (nobody is left to reply to)."""
        for key in [key for key in list(self.in_flight) if key[0] == caller]:
            self._end(key)

    def forget(self, call: Call) -> None:
        """``call`` ended (or will never run): it leaves the table of calls in flight and its caller's quota."""
        with self._claims:
            if self.in_flight.get(call.key) is call:
                del self.in_flight[call.key]
        self._release(call.caller)

    def subscribed(self, subscription: bytes) -> Subscription | None:
        """What a subscription message to the signal publisher gets: a welcome when it asks for one; a signal's topic
        applied (or dropped); any other topic nothing."""
        token = welcome_requested(subscription)
        if token is not None:
            return Subscription(token, True, welcome(token))
        asked = read_subscription(subscription)
        if asked is None or asked[1] not in self._topics:
            return None
        return Subscription(asked[1], asked[0])

    def refused(self, caller: bytes, header: Any, reason: str) -> None:
        """Answer a message the engine refused over a limit, with the id its header gives, if any."""
        self._quotas.refusal()
        self._refuse(caller, request_id_of(header), reason)

    def usage(self) -> Usage:
        """What the server holds for its peers now (``Server.usage``)."""
        engine = self._engine
        calls, callers = self._quotas.in_progress()
        with engine.turn_lock:
            backlog, backlog_bytes = len(engine.backlog), engine.backlog.message_bytes
        return Usage(
            calls=calls,
            callers=callers,
            backlog=backlog,
            backlog_bytes=backlog_bytes,
            pool_waiting=self._quotas.waiting,
            subscriptions=engine.publisher.subscriptions,
            unread_bytes=engine.replies.unread,
            dropped_replies=engine.replies.dropped,
            refused=self._quotas.refused,
        )

    def close(self) -> None:
        """Let the calls and writes running in the pool end; those still queued never start; streams are cancelled."""
        for key, call in list(self.in_flight.items()):
            if isinstance(call, StreamCall):
                self._end(key)
        self._pool.shutdown(wait=True, cancel_futures=True)
        for thread in list(self._stream_threads):
            thread.join(_STREAM_THREAD_WAIT)

    def publish(self, name: str, values: list[Any]) -> None:
        """Queue an emission of signal ``name`` from any thread; numbered in the order queued."""
        with self._publish_lock:
            sequence = self._sequences.get(name, 0) + 1
            self._sequences[name] = sequence
            self._engine.post(emission(name, sequence, values))

    # --- the handlers of each request kind ----------------------------------------------------------

    def _hello(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        refusal = hello_refusal(request.body, self._interface)
        if refusal is None:
            self._engine.reply(caller, ok_reply(request.request_id, self._hello_body))
        else:
            self._engine.reply(caller, error_reply(request.request_id, refusal))

    def _call(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        runner = self._runners.get(name) if isinstance(name, str) else None
        if runner is None:
            message = f"{self._name} has no method {quote(name)}"
            if isinstance(name, str) and name in self._streams:
                message += ": it is a stream, opened with a stream request"
            self._refuse(caller, request.request_id, message)
            return
        args = {} if request.body is None else request.body  # no body: no arguments
        if not isinstance(args, dict):
            self._refuse(caller, request.request_id, f"the arguments of {name} are not an object")
            return
        if not self._admit(caller):
            self._over_quota(caller, request, runner.oneway, f"{self._limits.max_calls_per_caller} calls in progress")
            return
        timeout = request.timeout
        deadline = None if timeout is None else time.monotonic() + timeout
        call = Call(caller, request.request_id, runner, args, deadline, request.size)
        try:
            self.in_flight[call.key] = call
        except TypeError:  # an id that is a JSON array or object: keyed by its text, apart from any string id
            call.key = (caller, (repr(call.request_id),))
            self.in_flight[call.key] = call
        if runner.concurrent:
            queued = self._quotas.queue(caller, call.size, self._pool.submit, lambda: self._engine.run_elsewhere(call))
        else:
            queued = self._engine.serial(me, call)
        if not queued:
            self.forget(call)
            self._over_quota(caller, request, runner.oneway, "a full queue of calls waiting to start")

    def _stream(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        runner = self._streams.get(name) if isinstance(name, str) else None
        if runner is None:
            what = "is not a stream: call it" if isinstance(name, str) and name in self._runners else "has no stream"
            self._refuse(caller, request.request_id, f"{self._name} {what} {quote(name)}")
            return
        args, credits = {} if request.body is None else request.body, credits_of(request)
        if not isinstance(args, dict) or credits is None:
            self._refuse(caller, request.request_id, f"a request for {name} needs its arguments and its first credit")
            return
        if not self._admit(caller):
            self._over_quota(caller, request, False, f"{self._limits.max_calls_per_caller} calls in progress")
            return
        if runner.concurrent and not self._quotas.open_stream(caller):
            self._release(caller)
            most = self._limits.max_concurrent_streams
            self._over_quota(caller, request, False, f"its share of the device's {most} concurrent streams open")
            return
        call = StreamCall(caller, request.request_id, runner, args, request.timeout, credits, request.size)
        try:
            self.in_flight[call.key] = call
        except TypeError:  # an id that is a JSON array or object, as ``_call`` keys it
            call.key = (caller, (repr(call.request_id),))
            self.in_flight[call.key] = call
        if runner.concurrent:
            thread = threading.Thread(target=self._run_stream, args=(call,), name=f"zidl-stream-{name}", daemon=True)
            self._stream_threads.add(thread)
            thread.start()
        elif not self._engine.serial(me, call):
            self.forget(call)
            self._over_quota(caller, request, False, "a full queue of calls waiting to start")

    def _run_stream(self, call: StreamCall) -> None:
        try:
            self._engine.run_elsewhere(call)
        finally:
            self._stream_threads.discard(threading.current_thread())
            self._quotas.close_stream(call.caller)

    def _credit(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        """More credit for the sender's stream; no reply, and one that names no stream of the sender is ignored."""
        credits = credits_of(request)
        try:
            call = self.in_flight.get((caller, request.request_id))
        except TypeError:
            return
        if credits is not None and isinstance(call, StreamCall):
            call.grant(credits, self._engine.reply)

    def _cancel(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        """Cancel the sender's call: its one reply says so. A call ended, never known or another's: ignored."""
        key = (caller, request.request_id)
        try:
            hash(key)
        except TypeError:
            key = (caller, (repr(request.request_id),))
        call = self._end(key)
        if call is not None and not call.runner.oneway:
            message = f"{call.runner.name} was cancelled by its caller"
            self._engine.reply(caller, error_reply(call.request_id, describe_cancelled(message)))

    def _end(self, key: tuple[bytes, Any]) -> Call | None:
        """Take the call ``key`` out of the table, cancelled (its runner sends nothing more); None when not in it."""
        with self._claims:
            call = self.in_flight.pop(key, None)
            if call is None:
                return None
            call.cancelled = True
        if isinstance(call, StreamCall):
            call.stop()
        return call

    def _get(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        if not isinstance(name, str) or name not in self._properties:
            self._refuse(caller, request.request_id, f"{self._name} has no property {quote(name)}")
            return
        self._engine.reply(caller, ok_reply(request.request_id, self._values.get(name)))

    def _set(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        if not isinstance(name, str) or name not in self._properties:
            self._refuse(caller, request.request_id, f"{self._name} has no property {quote(name)}")
            return
        writer = self._writers.get(name)
        if writer is None:
            self._refuse(caller, request.request_id, f"property {name} is read-only")
            return
        if not self._admit(caller):
            self._over_quota(caller, request, False, f"{self._limits.max_calls_per_caller} calls in progress")
        elif not self._quotas.queue(
            caller, request.size, self._pool.submit, lambda: self._write(caller, writer, request)
        ):
            self._release(caller)
            self._over_quota(caller, request, False, "a full queue of calls waiting to start")

    def _write(self, caller: bytes, writer: PropertyWriter, request: Request) -> None:
        try:
            self._engine.reply(caller, writer.write(request.request_id, request.body))
        finally:
            self._release(caller)

    def _over_quota(self, caller: bytes, request: Request, oneway: bool, what: str) -> None:
        """Refuse a request over a quota (``Limits``): with an error reply, except a oneway call's (logged)."""
        self._quotas.refusal()
        if oneway:
            logger.info("%s: a oneway call of %s was dropped: its caller has %s", self._name, request.name, what)
            return
        self._refuse(caller, request.request_id, f"{request.kind} {request.name} refused: {what}; try again later")

    def _refuse(self, caller: bytes, request_id: Any, message: str) -> None:
        """Reply with a protocol error: the message broke the protocol or named something unknown."""
        self._engine.reply(caller, error_reply(request_id, describe_protocol(message)))
