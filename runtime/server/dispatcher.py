"""The dispatcher: what each message to a running server means, and the table of the calls in flight.

A request goes to the handler of its kind; a method or property is found in tables
built from the interface description, never by ``getattr`` of a name that came off
the wire. Serial calls go to the engine, which runs them one at a time in arrival
order; ``concurrent`` methods and property writes go to a small pool. What each
connection may have in progress, and what may wait, is bounded (``runtime.server.quotas``):
a request over a bound gets an error reply with its id at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime.protocol.error_bodies import describe_protocol
from runtime.protocol.limits import quote
from runtime.protocol.messages import (
    BadRequest,
    Request,
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
from runtime.protocol.names import CALL, GET, HELLO, SET
from runtime.protocol.wire import Limits, request_id_of
from runtime.schema.validation import Tables
from runtime.server.engine import Engine
from runtime.server.publisher import Subscription
from runtime.server.quotas import Quotas, Usage
from runtime.server.runners import Call, MethodRunner, PropertyWriter

logger = logging.getLogger(__name__)


class Dispatcher:
    """Gives the messages of one running server their meaning (the engine's ``Handler``).

    ``in_flight`` holds every accepted call, keyed by its caller's identity and its
    request id, from when it is accepted until its reply is handed to the engine
    (a oneway call: until it ends). It changes by single dict operations, from
    whichever thread accepts or runs a call; a caller that reuses the id of its own
    call still in flight has the later call take the entry over.
    """

    def __init__(
        self, server: object, tables: Tables, engine: Engine, limits: Limits, store: Callable[[str, Any], None]
    ) -> None:
        """Serve ``server`` (described by ``tables``) through ``engine``; ``store`` keeps a validated property value."""
        interface = tables.interface
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
        # what the wire may reach: built from the description, never from a received name
        errors, stopping = tables.errors, engine.stopping.is_set
        self._runners = {
            m.name: MethodRunner(tables.calls[m.name], getattr(server, m.name), errors, stopping)
            for m in interface.methods
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
        """Run an accepted call on this thread; it leaves the table of calls in flight as its reply is handed back."""
        try:
            return call.runner.run(call)
        finally:  # as ``forget``, written out: this runs for every call
            if self.in_flight.get(call.key) is call:  # else a later request of its caller, with its id, took over
                self.in_flight.pop(call.key, None)
            self._release(call.caller)

    def forget(self, call: Call) -> None:
        """``call`` ended (or will never run): it leaves the table of calls in flight and its caller's quota."""
        if self.in_flight.get(call.key) is call:
            self.in_flight.pop(call.key, None)
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
            backlog, backlog_bytes = len(engine.backlog), engine.backlog.bytes
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
        """Let the calls and writes running in the pool end; those still queued never start."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def publish(self, name: str, values: list[Any]) -> None:
        """Queue an emission of signal ``name`` from any thread; numbered in the order queued."""
        with self._publish_lock:
            sequence = self._sequences.get(name, 0) + 1
            self._sequences[name] = sequence
            self._engine.post(emission(name, sequence, values))

    # --- the handlers of each request kind ----------------------------------------------------------

    def _hello(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        self._engine.reply(caller, ok_reply(request.request_id, self._hello_body))

    def _call(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        runner = self._runners.get(name) if isinstance(name, str) else None
        if runner is None:
            self._refuse(caller, request.request_id, f"{self._name} has no method {quote(name)}")
            return
        args = request.body
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
            queued = self._quotas.queue(call.size, self._pool.submit, lambda: self._engine.run_elsewhere(call))
        else:
            queued = self._engine.serial(me, call)
        if not queued:
            self.forget(call)
            self._over_quota(caller, request, runner.oneway, "a full queue of calls waiting to start")

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
        elif not self._quotas.queue(request.size, self._pool.submit, lambda: self._write(caller, writer, request)):
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
