"""A device's registration with the registry, driven by the server's own I/O loop.

``Registration`` owns one DEALER connected to the registry and never blocks: the
server polls ``socket`` with its other sockets, calls ``handle_readable()`` when it
is readable and ``tick(now)`` on every turn of its loop (``tick`` returns how long
the loop may sleep before the next call is due). While the registry is down it
retries registering with a backoff capped at the heartbeat interval; when the
registry restarts or answers "unknown" it registers again by itself, under the
name it was last given, so a registry restart never renames a device. Every
register carries the lease the device holds or last held: the registry renews or
replaces an entry only for the holder of its lease. A device given ``name-N``
because its name was held asks for its own name again once every ttl (with its
lease: the registry moves it once the name is free, and otherwise leaves it be).

Heartbeats go to the registry's heartbeat socket, which the register reply names
(the registry drains it in batches rather than waking up for each one). The device
side of it is a second DEALER that the server's loop does not poll: ``tick()``
reads its answers shortly after each heartbeat (``_ACK_WAIT``), so a server needs
to poll ``socket`` only. The registry answers a heartbeat there only when it fails
(``unknown``: register again) or when the device asks, which it does once its
last answer is half a ttl old. Whenever that DEALER is not connected (the registry
restarted on a new heartbeat port, a firewall lets only the request port through,
an older registry named none) a heartbeat goes to ``socket`` instead, where the
registry answers it at once; that is also how a restarted registry is noticed
within a heartbeat interval.
"""

from __future__ import annotations

import contextlib
import logging
import math
import socket as _socket
import time
from collections.abc import Callable
from typing import Any, Final

import zmq

from runtime.protocol.names import HEARTBEAT, REGISTER, UNREGISTER
from runtime.protocol.registry_messages import (
    read_registry_message,
    registry_failure,
    registry_id,
    registry_request,
    registry_succeeded,
)
from runtime.transport.addresses import TRANSPORTS, advertised, connectable, host_of
from runtime.transport.monitor import Monitor
from runtime.transport.security import CurveClient

__all__ = ["Registration"]

log = logging.getLogger(__name__)

_FIRST_BACKOFF: Final = 0.05
_ACK_WAIT: Final = 0.1
"""Seconds after a heartbeat when its answer is read: above the registry's batch interval plus a round trip."""


class Registration:
    """Keeps one device registered under a unique name while its server runs.

    ``address`` is the endpoint the server bound (wildcards allowed; see the
    address rule in ``docs/registry.md``). ``advertise`` replaces the host of a
    TCP address with a name or IP other hosts can reach. ``on_accepted`` is called
    with the accepted name each time the registry accepts the device. ``curve``
    reaches a registry that has CurveZMQ on (``server_key`` its public key); a
    refused handshake is logged as an error at once and kept in ``refused``.
    """

    def __init__(
        self,
        registry_url: str,
        name: str,
        interface_name: str,
        version: int,
        hash: str,
        address: str,
        *,
        heartbeat: float = 1.0,
        ttl: float = 3.0,
        advertise: str | None = None,
        public_key: str | None = None,
        on_accepted: Callable[[str], None] | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        if not 0 < heartbeat < ttl:
            raise ValueError(f"heartbeat ({heartbeat}) must be positive and shorter than ttl ({ttl})")
        self.registry_url = registry_url
        self.name = name
        self.on_accepted = on_accepted
        address = advertised(address, advertise)
        self._request: dict[str, Any] = {  # the fields of every register
            "name": name,
            "interface": interface_name,
            "version": version,
            "hash": hash,
            "address": address,
            "host": advertise or _socket.gethostname(),
            "ttl": ttl,
            "heartbeat": heartbeat,
        }
        if public_key is not None:
            self._request["public_key"] = public_key
        self.accepted_name: str | None = None
        self.address: str | None = None  # as registered, after the registry's substitution
        self._heartbeat = heartbeat
        self._ttl = ttl
        self._reply_timeout = max(1.0, heartbeat)
        self._lease: str | None = None
        self._last_lease: str | None = None  # sent with a register: the proof that the entry is ours
        self._lease_id = 0  # the last id sent before the lease was given: later "unknown"s are about it
        self._reclaim_id: int | None = None  # the register asking for our own name back
        self._next_reclaim = math.inf
        self._refusal: str | None = None  # the last refusal logged, so a repeated one is not
        self._next_id = 0
        self._waiting_id: int | None = None  # the register request awaiting its reply
        self._waiting_until = 0.0
        self._backoff = _FIRST_BACKOFF
        self._next_due = 0.0
        self._last_answer = 0.0
        self._silent_logged = False
        self._closed = False
        self._curve = curve
        sock = self._dealer()
        self._monitor = Monitor(sock)  # before connecting: a refusal at once is not missed
        sock.connect(registry_url)
        self.socket = sock
        self.refused: str | None = None
        """Why the registry refused the security handshake, while it does."""
        self.heartbeats: str | None = None
        """Where heartbeats go, as the registry named it (None: to ``socket``)."""
        self._beats: zmq.Socket[bytes] | None = None
        self._ack_check = math.inf  # when to read the heartbeat socket's answers

    @property
    def registered(self) -> bool:
        """True while the device holds a lease the registry has not denied."""
        return self._lease is not None

    def tick(self, now: float | None = None) -> float:
        """Send a register or heartbeat when due; return seconds until the next is due."""
        if self._closed:
            return math.inf
        if now is None:
            now = time.monotonic()
        self._check_handshake()
        silent = self._lease is not None and now - self._last_answer > self._ttl
        if self._beats is not None and (now >= self._ack_check or silent):  # silent: an answer may just be late
            self._ack_check = math.inf
            self._read(self._beats)
        if self._lease is None:
            if self._waiting_id is not None:
                if now < self._waiting_until:
                    return self._waiting_until - now
                log.debug("registry %s: no answer to register; retrying", self.registry_url)
                self._waiting_id = None
                self._next_due = now
            if now >= self._next_due:
                self._send_register(now)
        else:
            if now - self._last_answer > self._ttl:
                if not self._silent_logged:
                    log.warning("registry %s not answering; will register again when it does", self.registry_url)
                    self._silent_logged = True
                self._lease = None
                self._next_due = now
                self._send_register(now)
            else:
                if now >= self._next_due:
                    self._send_heartbeat(self._lease, now)
                    self._next_due = now + self._heartbeat
                if now >= self._next_reclaim:
                    self._send_reclaim(self._lease, now)
        if self._waiting_id is not None:
            due = min(self._waiting_until, self._next_due if self._lease else math.inf, self._ack_check)
        else:
            due = min(self._next_due, self._ack_check)
        if self._lease is not None:
            due = min(due, self._next_reclaim)
        return max(0.0, due - now)

    def handle_readable(self) -> None:
        """Process every reply waiting on ``socket``; never blocks."""
        self._read(self.socket)

    def close(self, unregister: bool = True, timeout: float = 0.25) -> None:
        """Stop; when registered and ``unregister``, tell the registry (waits at most ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        try:
            if unregister and self._lease is not None:
                request_id = self._new_id()
                if self._send(registry_request(UNREGISTER, request_id, lease=self._lease)):
                    deadline = time.monotonic() + timeout
                    while (left := deadline - time.monotonic()) > 0 and self.socket.poll(int(left * 1000) + 1):
                        with contextlib.suppress(zmq.ZMQError):
                            reply = read_registry_message(self.socket.recv(zmq.NOBLOCK))
                            if reply is not None and registry_id(reply) == request_id:
                                log.info("unregistered %s from %s", self.accepted_name, self.registry_url)
                                break
            self._lease = None
        finally:
            self._monitor.close()
            self.socket.close(0)
            self._use_heartbeats(None)

    # -- internals --------------------------------------------------------

    def _dealer(self) -> zmq.Socket[bytes]:
        """A DEALER towards the registry; both of a device's are alike, Curve included."""
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing towards a registry that is not there
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        if self._curve is not None and self._curve.server_key is not None:
            self._curve.apply(sock)
        return sock

    def _use_heartbeats(self, endpoint: str | None) -> None:
        """Send heartbeats to ``endpoint`` (wildcard host: the registry's), or to ``socket`` when None."""
        if endpoint is not None:
            endpoint = connectable(endpoint, host_of(self.registry_url))
        if endpoint == self.heartbeats:
            return
        if self._beats is not None:
            self._beats.close(0)
        self._beats = self.heartbeats = None
        self._ack_check = math.inf
        if endpoint is None:
            return
        sock = self._dealer()
        try:
            sock.connect(endpoint)
        except zmq.ZMQError as exc:
            log.warning("registry %s: cannot reach its heartbeat socket %s: %s", self.registry_url, endpoint, exc)
            sock.close(0)
            return
        self._beats, self.heartbeats = sock, endpoint

    def _send_heartbeat(self, lease: str, now: float) -> None:
        """Renew the lease; on the heartbeat socket, ask for an answer once the last is half a ttl old.

        The registry answers a heartbeat there only when asked (or when it fails), as
        answering costs it more than the heartbeat; asking at half the ttl still tells
        a silent registry within the ttl, with one lost answer to spare.
        """
        request_id = self._new_id()
        if self._beats is not None:
            ask = {"ack": True} if now - self._last_answer >= self._ttl / 2 else {}
            if self._send(registry_request(HEARTBEAT, request_id, lease=lease, **ask), self._beats):
                self._ack_check = now + min(_ACK_WAIT, self._heartbeat / 2)
                return
        # Not connected (yet, or any more): the request socket answers at once.
        self._send(registry_request(HEARTBEAT, request_id, lease=lease))

    def _read(self, sock: zmq.Socket[bytes]) -> None:
        """Process every reply waiting on ``sock``; never blocks."""
        while not self._closed:
            try:
                raw = sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                log.debug("registry %s: receive failed: %s", self.registry_url, exc)
                return
            try:
                reply = read_registry_message(raw)
                if reply is not None:
                    self._on_reply(reply)
            except Exception:
                log.debug("registry %s: ignored a malformed reply", self.registry_url, exc_info=True)

    def _check_handshake(self) -> None:
        self._monitor.drain()
        refused = self._monitor.refused
        if refused != self.refused:
            self.refused = refused
            if refused is not None:
                log.error("registry %s refused %s: %s", self.registry_url, self.name, refused)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    def _send(self, message: bytes, sock: zmq.Socket[bytes] | None = None) -> bool:
        target = self.socket if sock is None else sock
        try:
            target.send(message, zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # Again: the registry is not connected
            return False

    def _send_register(self, now: float) -> None:
        request_id = self._new_id()
        fields = self._request if self.accepted_name is None else dict(self._request, name=self.accepted_name)
        if self._last_lease is not None:
            fields = dict(fields, lease=self._last_lease)
        if self._send(registry_request(REGISTER, request_id, **fields)):
            self._waiting_id = request_id
            self._waiting_until = now + self._reply_timeout
        else:
            self._next_due = now + self._backoff
            self._backoff = min(self._backoff * 2, self._heartbeat)

    def _send_reclaim(self, lease: str, now: float) -> None:
        """Ask for the configured name again, with the lease of the ``name-N`` held meanwhile."""
        self._reclaim_id = self._new_id()
        self._next_reclaim = now + self._ttl
        self._send(registry_request(REGISTER, self._reclaim_id, **dict(self._request, lease=lease)))

    def _on_reply(self, reply: dict[str, Any]) -> None:
        now = time.monotonic()
        request_id = registry_id(reply)
        if registry_succeeded(reply):
            if request_id in (self._waiting_id, self._reclaim_id) and isinstance(reply.get("lease"), str):
                self._accepted(reply, now)
            elif self._lease is not None:
                self._last_answer = now
                self._silent_logged = False
            return
        error, message = registry_failure(reply)
        if (
            error == "unknown"
            and self._lease is not None
            and isinstance(request_id, int)
            and request_id > self._lease_id
        ):
            log.info("registry %s forgot %s; registering again", self.registry_url, self.accepted_name)
            self._lease = None
            self._waiting_id = None
            self._next_due = now
            self._backoff = _FIRST_BACKOFF
        elif request_id == self._waiting_id:
            if message != self._refusal:  # once: a device the registry keeps refusing retries every heartbeat
                level = logging.WARNING if error in ("busy", "full") else logging.ERROR
                log.log(level, "registry %s refused %s: %s", self.registry_url, self.name, message or error)
                self._refusal = message
            self._waiting_id = None
            self._next_due = now + self._heartbeat
        elif request_id == self._reclaim_id:
            log.debug("registry %s: %s stays %s: %s", self.registry_url, self.name, self.accepted_name, message)

    def _accepted(self, reply: dict[str, Any], now: float) -> None:
        name = reply.get("name")
        if not isinstance(name, str):
            return
        previous, lease = self.accepted_name, str(reply["lease"])
        unchanged = lease == self._lease and name == previous
        self._lease = self._last_lease = lease
        self._lease_id = self._next_id
        self._waiting_id = self._reclaim_id = None
        self._refusal = None
        self._backoff = _FIRST_BACKOFF
        self._last_answer = now
        self._silent_logged = False
        heartbeat = reply.get("heartbeat")
        ttl = reply.get("ttl")
        if isinstance(heartbeat, (int, float)) and isinstance(ttl, (int, float)) and 0 < heartbeat < ttl:
            self._heartbeat, self._ttl = float(heartbeat), float(ttl)
        self._next_due = now + self._heartbeat
        self._next_reclaim = math.inf if name == self.name else now + self._ttl
        self.accepted_name = name
        address = reply.get("address")
        self.address = address if isinstance(address, str) else None
        heartbeats = reply.get("heartbeats")
        self._use_heartbeats(heartbeats if isinstance(heartbeats, str) and heartbeats.startswith(TRANSPORTS) else None)
        if unchanged:  # a request for our own name, which is still held: nothing changed
            return
        if previous is None:
            log.info("registered as %r at %s (address %s)", name, self.registry_url, self.address)
        elif name == self.name:
            log.info("registered as %r again, no longer %r, at %s", name, previous, self.registry_url)
        elif previous != name:
            log.warning("registered again as %r, no longer %r, at %s", name, previous, self.registry_url)
        else:
            log.info("registered again as %r at %s", name, self.registry_url)
        if self.on_accepted is not None:
            try:
                self.on_accepted(name)
            except Exception:
                log.exception("on_accepted callback failed")
