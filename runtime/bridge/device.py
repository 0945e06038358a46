"""One device of A's side served on B's side: its ROUTER and XPUB there, its connections towards the device.

A request from B's side is read as far as its header (kind, id, timeout) and sent on
as the frames it came in, on the caller's own connection to the device
(``runtime.bridge.upstream``); the reply comes back the same way. Only the reply to a
``hello`` is rewritten, to name the bridge's signal publisher; a request the bridge held
has its ``t`` cut to what is left. It answers a registry's ``ping``: it holds the name.

While the device is away (its connection is down, or it is restarting) requests are
held (``runtime.bridge.held``); the calls in flight when it went are answered with a
``lost`` error, which the caller raises as ``ConnectionLost``, and so are a caller's
when its own connection to the device drops. A caller that leaves B's
side (its connection drops, a reply to it cannot be delivered) has its connection to
the device closed, and the device cancels its calls and streams.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Final

import zmq

from runtime.bridge.held import Held, HeldRequests
from runtime.bridge.intake import BATCH, read_requests
from runtime.bridge.loop import Loop
from runtime.bridge.options import Options
from runtime.bridge.signals import SignalRelay
from runtime.bridge.upstream import Control, Upstream, towards
from runtime.bridge.usage import BridgeUsage
from runtime.errors import ZidlError
from runtime.protocol.messages import BadRequest
from runtime.protocol.names import CALL, CANCEL, ERR, HELLO, OK, PING
from runtime.protocol.relay import (
    AWAITED,
    Head,
    alive_reply,
    cancelled_reply,
    hello_via,
    lost_reply,
    read_head,
    refusal,
    reply_head,
    with_timeout,
)
from runtime.protocol.wire import request_id_of
from runtime.registry.client import DeviceRecord
from runtime.registry.registration import Registration
from runtime.schema.interface import Interface
from runtime.server.intake import configure
from runtime.server.replies import Replies
from runtime.transport.addresses import beside
from runtime.transport.callers import Callers
from runtime.transport.security import Grant
from runtime.transport.sockets import NOBLOCK, Socket, bind, make_socket, readable, recv_frames

logger = logging.getLogger(__name__)

_RETRY: Final = 0.01
"""Seconds before held requests are offered again to a device whose pipe was full."""


class BridgedDevice:
    """The B-side face of one device registered on A's side."""

    def __init__(
        self,
        record: DeviceRecord,
        options: Options,
        loop: Loop,
        on_registered: Callable[[str, str], None],
        on_presence: Callable[[], None],
    ) -> None:
        self.record = record
        self.name = record.name
        self.due = 0.0
        """When ``tick`` is next needed (monotonic)."""
        self.leaving: float | None = None
        """When it leaves B's side, unless it is registered on A's again by then."""
        self.present = False
        self.registration: Registration | None = None
        self._options = options
        self._loop = loop
        self._on_registered = on_registered
        self._on_presence = on_presence
        self._what = f"bridged device {record.name}"
        self._curve = towards(record.public_key, options.registry_curve)
        self._interface: Interface | None = None
        self._oneway: frozenset[str] = frozenset()
        self._upstreams: dict[bytes, Upstream] = {}
        self._held = HeldRequests(self._what, options.max_held, options.max_held_bytes)
        self._grant: Grant | None = None
        self._sockets: list[Any] = []
        router = self._router = make_socket(zmq.ROUTER, options.heartbeat)
        self.signals = SignalRelay(make_socket(zmq.XPUB), self._what)
        try:
            self._replies = Replies(router, options.limits)  # ROUTER_MANDATORY, unread replies bounded
            configure(router, options.limits)
            if options.curve is not None:
                self._grant = options.curve.secure(router, self.signals.xpub)
            self.address = bind(router, options.bind)
            self.signal_address = self.signals.bind(beside(self.address, ".signals"))
            self._callers = Callers(router)
            self._control = Control(record.address, self._curve, options.heartbeat, options.limits)
        except BaseException:
            self.signals.close()
            router.close(linger=0)
            if self._grant is not None:
                self._grant.close()
            raise
        self._watch(self._callers.socket, self._dropped)  # before the ROUTER: see ``runtime.transport.callers``
        self._watch(router, self._requests)
        self._watch(self.signals.xpub, self.signals.subscriptions)
        self._watch(self.signals.xsub, self.signals.emissions)
        self._watch(self._control.socket, self._greeted)
        self._watch(self._control.monitor.socket, self._connection)
        logger.info("%s: serving B's side at %s for the device at %s", self._what, self.address, record.address)

    # --- following A's side ---------------------------------------------------------------------------

    def follow(self, record: DeviceRecord) -> None:
        """The device is registered on A's side as ``record``: stay, and go to its new address if it moved."""
        self.leaving = None
        moved = (record.address, record.public_key) != (self.record.address, self.record.public_key)
        self.record = record
        if not moved:
            return
        logger.info("%s: the device moved to %s", self._what, record.address)
        self._curve = towards(record.public_key, self._options.registry_curve)
        if self.present:
            self._away()
        self._control.move(record.address, self._curve)
        for upstream in self._upstreams.values():
            upstream.move(record.address, self._curve)

    def leave(self, now: float) -> None:
        """The device left A's registry: it leaves B's side too, unless it comes back within ``away`` seconds."""
        if self.leaving is None:
            self.leaving = now + self._options.away
            self.due = 0.0

    def tick(self, now: float) -> float:
        """Registration, held requests: what is due now; the seconds until more is."""
        due = math.inf
        if self.registration is not None:
            due = self.registration.tick(now)
        if self._replies.unread:
            due = min(due, self._replies.tick())
        if len(self._held):
            due = min(due, self._held.expire(now) - now)
            if self.present:
                self._flush(now)
                if len(self._held):
                    due = min(due, _RETRY)
        if self.leaving is not None:
            due = min(due, self.leaving - now)
        return max(0.0, due)

    def usage(self) -> BridgeUsage:
        """What the bridge holds for this device now (read from any thread: each count is read at once)."""
        upstreams = list(self._upstreams.values())
        return BridgeUsage(
            self.present,
            len(upstreams),
            sum(len(upstream.awaiting) for upstream in upstreams),
            len(self._held),
            self._held.refused,
            self._held.expired,
            self._replies.unread,
            self._replies.dropped,
        )

    def close(self) -> None:
        """Leave B's side (unregistered there), closing every socket; what was held is dropped."""
        self._held.drop_all()
        for sock in self._sockets:
            self._loop.unwatch(sock)
        if self.registration is not None:
            self.registration.close()
        for upstream in self._upstreams.values():
            upstream.close()
        self._control.close()
        self._callers.close()
        self.signals.close()
        self._router.close(linger=0)
        if self._grant is not None:
            self._grant.close()
        logger.info("%s: no longer bridged", self._what)

    # --- the device's connection and handshake ----------------------------------------------------------

    def _connection(self) -> None:
        monitor = self._control.monitor
        before = monitor.refused
        lost = monitor.drain()
        if (refused := monitor.refused) is not None and refused != before:  # else it retries in silence
            logger.warning("%s: the device at %s refused the bridge: %s", self._what, self._control.address, refused)
        if lost and self.present:
            self._away()
        if self._control.connected and not self.present:
            self.present = True
            self._control.greet()
            self.due = 0.0  # what was held goes now
            logger.info("%s: the device is there (%s)", self._what, self._control.address)
            self._on_presence()

    def _greeted(self) -> None:
        greeted = self._control.greeted()
        if greeted is None:
            return
        interface, signals = greeted
        self._oneway = frozenset(m.name for m in interface.methods if m.oneway)
        self.signals.learn(interface)
        self.signals.point(signals, self._curve)
        if self.registration is None or self._interface is None or self._interface.hash != interface.hash:
            self._register(interface)
        self._interface = interface

    def _register(self, interface: Interface) -> None:
        if self.registration is not None:
            self._loop.unwatch(self.registration.socket)
            self._sockets.remove(self.registration.socket)
            self.registration.close()
        options = self._options
        registration = Registration(
            options.to,
            self.name,
            interface.name,
            interface.version,
            interface.hash,
            self.address,
            public_key=options.curve.public_key if options.curve is not None else None,
            curve=options.to_curve,
            on_accepted=lambda accepted: self._on_registered(self.name, accepted),
        )
        self.registration = registration
        self._watch(registration.socket, self._registry)
        self.due = 0.0

    def _registry(self) -> None:
        if self.registration is not None:
            self.registration.handle_readable()
            self.due = 0.0

    def _away(self) -> None:
        """The device's connection dropped: the calls in flight end as lost; what comes next is held."""
        self.present = False
        logger.info("%s: the device went away; holding its requests", self._what)
        message = f"{self.name} went away (behind the bridge) while the call was in flight"
        for upstream in list(self._upstreams.values()):
            self._lose(upstream, message)
        self._on_presence()

    def _upstream_connection(self, upstream: Upstream) -> None:
        """``upstream``'s monitor: when its connection dropped, the device will answer none of what it awaited."""
        if upstream.monitor.drain() and upstream.awaiting:
            self._lose(upstream, f"the bridge's connection to {self.name} for this caller dropped during the call")

    def _lose(self, upstream: Upstream, message: str) -> None:
        """End every request ``upstream`` awaits with ``lost`` (a reply that finds its caller gone forgets it)."""
        for request_id in list(upstream.awaiting):
            self._reply(upstream.caller, lost_reply(request_id, message))
        upstream.awaiting.clear()

    # --- requests from B's side (``runtime.bridge.intake`` reads them), replies from the device ---------------

    def _requests(self) -> None:
        read_requests(self._router, self._callers, self._options.limits, self._request, self._refuse)
        if self._callers.departed:  # found as a new caller was noted
            self._dropped()

    def _refuse(self, caller: bytes, header: Any, why: str) -> None:
        self._reply(caller, refusal(request_id_of(header), f"{self._what}: {why}"))

    def _request(self, caller: bytes, frames: list[Any]) -> None:
        try:
            head = read_head(frames, self._options.limits)
        except BadRequest as exc:
            self._reply(caller, refusal(exc.request_id, f"{self._what}: {exc}"))
            return
        if head.kind == PING:
            self._reply(caller, alive_reply(head.request_id))
            return
        if head.kind == CANCEL and len(self._held):
            held = self._held.cancel(caller, head.request_id)
            if held is not None and held.head.kind in AWAITED:  # it never reached the device: answered here
                if not held.oneway:
                    message = f"{head.name or held.head.name} was cancelled by its caller before it reached {self.name}"
                    self._reply(caller, cancelled_reply(held.head.request_id, message))
                return
            # else only its credits (or an earlier cancel) were held: the call is on the device, the cancel goes on
        if head.kind in AWAITED and self._calls_of(caller) >= self._options.limits.max_calls_per_caller:
            most = self._options.limits.max_calls_per_caller
            self._reply(caller, refusal(head.request_id, f"{self._what}: {most} calls of this connection wait"))
            return
        if self.present and not len(self._held):
            upstream = self._upstream(caller, head)
            if upstream is None or upstream.send(frames, head, self._oneway):
                return
        self._hold(caller, frames, head)

    def _calls_of(self, caller: bytes) -> int:
        """``caller``'s requests the bridge has in hand: sent and not answered, or held."""
        upstream = self._upstreams.get(caller)
        return (len(upstream.awaiting) if upstream is not None else 0) + self._held.count(caller)

    def _hold(self, caller: bytes, frames: list[Any], head: Head) -> None:
        oneway = head.kind == CALL and head.name in self._oneway
        held = Held(caller, frames, head, time.monotonic(), oneway, sum(len(frame) for frame in frames))
        if self._held.add(held, self._options.limits.max_calls_per_caller):
            self.due = 0.0
        elif head.kind in AWAITED and not oneway:
            message = f"{self.name} is away and the bridge holds as many requests for it as it may"
            self._reply(caller, lost_reply(head.request_id, message))

    def _flush(self, now: float) -> None:
        """Offer the held requests to the device, in order, until one cannot go."""
        while self.present and (held := self._held.first()) is not None:
            head = held.head
            frames = held.frames
            if held.oneway:  # its caller waits for nothing: it runs whenever it arrives
                frames = with_timeout(frames, head, None) if head.timeout is not None else frames
            elif head.timeout is not None:
                frames = with_timeout(frames, head, head.timeout - (now - held.received))
            if held.caller is None:
                sent = self._control.send(frames)
            else:
                upstream = self._upstream(held.caller, head)
                sent = upstream is None or upstream.send(frames, head, self._oneway)
            if not sent:
                return
            self._held.pop()

    def _upstream(self, caller: bytes, head: Head) -> Upstream | None:
        """``caller``'s connection to the device, made for a new caller; None (refused) past ``max_callers``."""
        known = self._upstreams.get(caller)
        if known is not None:
            return known
        try:
            if len(self._upstreams) >= self._options.max_callers:
                raise ZidlError(f"the bridge serves {self._options.max_callers} connections to {self.name} already")
            upstream = Upstream(caller, self._control.address, self._curve, self._options.heartbeat)
        except ZidlError as exc:  # past the bound, or out of sockets or files
            logger.warning("%s: refused a new caller: %s", self._what, exc)
            if head.kind in AWAITED:
                self._reply(caller, refusal(head.request_id, str(exc)))
            return None
        self._upstreams[caller] = upstream
        self._watch(upstream.socket, lambda: self._device_replies(upstream))
        self._watch(upstream.monitor.socket, lambda: self._upstream_connection(upstream))  # after its replies
        return upstream

    def _device_replies(self, upstream: Upstream) -> None:
        sock = upstream.socket
        for turn in range(BATCH):
            if turn and not readable(sock):
                return
            frames = recv_frames(sock, flags=NOBLOCK)
            reply_id, kind = reply_head(frames[0])
            if kind in (OK, ERR) and upstream.answered(reply_id) == HELLO:
                frames = hello_via(frames, self.signal_address)
            self._reply(upstream.caller, frames)
            if upstream.caller not in self._upstreams:  # the caller was found gone
                return

    def _reply(self, caller: bytes, frames: list[Any]) -> None:
        self._replies.send(caller, frames)
        while self._replies.departed:  # a caller the send found gone: let go of at once (one thread, no lock held)
            self._gone(self._replies.departed.pop())

    def _dropped(self) -> None:
        for caller in self._callers.dropped():
            self._gone(caller)

    def _gone(self, caller: bytes) -> None:
        """``caller`` left B's side: its connection to the device closes, which cancels its calls there."""
        self._callers.forget(caller)
        self._held.gone(caller)
        upstream = self._upstreams.pop(caller, None)
        if upstream is not None:
            for sock in (upstream.socket, upstream.monitor.socket):
                self._loop.unwatch(sock)
                self._sockets.remove(sock)
            upstream.close()

    # --- helpers ---------------------------------------------------------------------------------------

    def _watch(self, sock: Socket, handler: Callable[[], None]) -> None:
        self._loop.watch(sock, handler)
        self._sockets.append(sock)
