"""The dispatcher: what each message to a running server means, and the table of the calls in flight.

A request goes to the handler of its kind; a method or property is found in tables
built from the interface description, never by ``getattr`` of a name that came off
the wire. Serial calls go to the engine, which runs them one at a time in arrival
order; ``concurrent`` methods and property writes go to a small pool.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from runtime.protocol.error_bodies import describe_protocol
from runtime.protocol.messages import (
    BadRequest,
    Request,
    emission,
    error_reply,
    hello_reply_body,
    ok_reply,
    read_request,
    welcome,
    welcome_requested,
)
from runtime.protocol.names import CALL, GET, HELLO, SET
from runtime.protocol.wire import Limits
from runtime.schema.validation import Tables
from runtime.server.engine import Engine
from runtime.server.runners import Call, MethodRunner, PropertyWriter


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
            self._refuse(caller, request.request_id, f"unknown request kind {kind!r}")
            return
        handle(me, caller, request)

    def run(self, call: Call) -> list[Any] | None:
        """Run an accepted call on this thread; it leaves the table of calls in flight as its reply is handed back."""
        try:
            return call.runner.run(call)
        finally:
            if self.in_flight.get(call.key) is call:  # else a later request of its caller, with its id, took over
                self.in_flight.pop(call.key, None)

    def subscribed(self, subscription: bytes) -> list[Any] | None:
        """The answer to a subscription message of the signal publisher: a welcome, when it asks for one."""
        token = welcome_requested(subscription)
        return None if token is None else welcome(token)

    def close(self) -> None:
        """Let the calls and writes running in the pool end; those still queued never start."""
        self._pool.shutdown(wait=True, cancel_futures=True)

    def publish(self, name: str, values: list[Any]) -> None:
        """Queue an emission of signal ``name`` from any thread; numbered in the order queued."""
        with self._publish_lock:
            sequence = self._sequences.get(name, 0) + 1
            self._sequences[name] = sequence
            self._engine.post(emission(name, sequence, values))
        self._engine.wake()

    # --- the handlers of each request kind ----------------------------------------------------------

    def _hello(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        self._engine.reply(caller, ok_reply(request.request_id, self._hello_body))

    def _call(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        runner = self._runners.get(name) if isinstance(name, str) else None
        if runner is None:
            self._refuse(caller, request.request_id, f"{self._name} has no method {name!r}")
            return
        args = request.body
        if not isinstance(args, dict):
            self._refuse(caller, request.request_id, f"the arguments of {name} are not an object")
            return
        timeout = request.timeout
        call = Call(caller, request.request_id, runner, args, None if timeout is None else time.monotonic() + timeout)
        try:
            self.in_flight[call.key] = call
        except TypeError:  # an id that is a JSON array or object: keyed by its text, apart from any string id
            call.key = (caller, (repr(call.request_id),))
            self.in_flight[call.key] = call
        if runner.concurrent:
            self._pool.submit(self._engine.run_elsewhere, call)
        else:
            self._engine.serial(me, call)

    def _get(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        if not isinstance(name, str) or name not in self._properties:
            self._refuse(caller, request.request_id, f"{self._name} has no property {name!r}")
            return
        self._engine.reply(caller, ok_reply(request.request_id, self._values.get(name)))

    def _set(self, me: threading.Thread, caller: bytes, request: Request) -> None:
        name = request.name
        if not isinstance(name, str) or name not in self._properties:
            self._refuse(caller, request.request_id, f"{self._name} has no property {name!r}")
            return
        writer = self._writers.get(name)
        if writer is None:
            self._refuse(caller, request.request_id, f"property {name} is read-only")
            return
        self._pool.submit(self._write, caller, writer, request)

    def _write(self, caller: bytes, writer: PropertyWriter, request: Request) -> None:
        self._engine.reply(caller, writer.write(request.request_id, request.body))

    def _refuse(self, caller: bytes, request_id: Any, message: str) -> None:
        """Reply with a protocol error: the message broke the protocol or named something unknown."""
        self._engine.reply(caller, error_reply(request_id, describe_protocol(message)))
