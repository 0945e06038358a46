"""A device's registration with the registry, driven by the server's own I/O loop.

``Registration`` owns one DEALER connected to the registry and never blocks: the
server polls ``socket`` with its other sockets, calls ``handle_readable()`` when it
is readable and ``tick(now)`` on every turn of its loop (``tick`` returns how long
the loop may sleep before the next call is due). While the registry is down it
retries registering with a backoff capped at the heartbeat interval; when the
registry restarts or answers "unknown" it registers again by itself, under the
name it was last given, so a registry restart never renames a device.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import socket as _socket
import time
from collections.abc import Callable
from typing import Any, Final

import zmq

from ._registry import PROTOCOL, _split_tcp, _tcp
from ._security import CurveClient
from ._transport import Monitor

__all__ = ["Registration"]

log = logging.getLogger(__name__)

_FIRST_BACKOFF: Final = 0.05


class Registration:
    """Keeps one device registered under a unique name while its server runs.

    ``address`` is the endpoint the server bound (wildcards allowed; see the
    address rule in ``runtime._registry``). ``advertise`` replaces the host of a
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
        takeover: bool = False,
        public_key: str | None = None,
        on_accepted: Callable[[str], None] | None = None,
        curve: CurveClient | None = None,
    ) -> None:
        if not 0 < heartbeat < ttl:
            raise ValueError(f"heartbeat ({heartbeat}) must be positive and shorter than ttl ({ttl})")
        self.registry_url = registry_url
        self.name = name
        self.on_accepted = on_accepted
        parts = _split_tcp(address)
        if advertise is not None and parts is not None:
            address = _tcp(advertise, parts[1])
        self._request: dict[str, Any] = {
            "v": PROTOCOL,
            "k": "register",
            "name": name,
            "interface": interface_name,
            "version": version,
            "hash": hash,
            "address": address,
            "host": advertise or _socket.gethostname(),
            "ttl": ttl,
            "heartbeat": heartbeat,
        }
        if takeover:
            self._request["takeover"] = True
        if public_key is not None:
            self._request["public_key"] = public_key
        self.accepted_name: str | None = None
        self.address: str | None = None  # as registered, after the registry's substitution
        self._heartbeat = heartbeat
        self._ttl = ttl
        self._reply_timeout = max(1.0, heartbeat)
        self._lease: str | None = None
        self._lease_id = 0  # the id of the register request that gave the lease
        self._next_id = 0
        self._waiting_id: int | None = None  # the register request awaiting its reply
        self._waiting_until = 0.0
        self._backoff = _FIRST_BACKOFF
        self._next_due = 0.0
        self._last_answer = 0.0
        self._silent_logged = False
        self._closed = False
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IMMEDIATE, 1)  # no queueing towards a registry that is not there
        sock.setsockopt(zmq.SNDHWM, 16)
        sock.setsockopt(zmq.MAXMSGSIZE, 1 << 20)
        if curve is not None and curve.server_key is not None:
            curve.apply(sock)
        self._monitor = Monitor(sock)  # before connecting: a refusal at once is not missed
        sock.connect(registry_url)
        self.socket = sock
        self.refused: str | None = None
        """Why the registry refused the security handshake, while it does."""

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
            elif now >= self._next_due:
                self._send({"v": PROTOCOL, "id": self._new_id(), "k": "heartbeat", "lease": self._lease})
                self._next_due = now + self._heartbeat
        if self._waiting_id is not None:
            return max(0.0, min(self._waiting_until, self._next_due if self._lease else math.inf) - now)
        return max(0.0, self._next_due - now)

    def handle_readable(self) -> None:
        """Process every reply waiting on ``socket``; never blocks."""
        while not self._closed:
            try:
                raw = self.socket.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                log.debug("registry %s: receive failed: %s", self.registry_url, exc)
                return
            try:
                reply = json.loads(raw)
                if isinstance(reply, dict):
                    self._on_reply(reply)
            except Exception:
                log.debug("registry %s: ignored a malformed reply", self.registry_url, exc_info=True)

    def close(self, unregister: bool = True, timeout: float = 0.25) -> None:
        """Stop; when registered and ``unregister``, tell the registry (waits at most ``timeout``)."""
        if self._closed:
            return
        self._closed = True
        try:
            if unregister and self._lease is not None:
                request_id = self._new_id()
                if self._send({"v": PROTOCOL, "id": request_id, "k": "unregister", "lease": self._lease}):
                    deadline = time.monotonic() + timeout
                    while (left := deadline - time.monotonic()) > 0 and self.socket.poll(int(left * 1000) + 1):
                        with contextlib.suppress(ValueError, zmq.ZMQError):
                            reply = json.loads(self.socket.recv(zmq.NOBLOCK))
                            if isinstance(reply, dict) and reply.get("id") == request_id:
                                log.info("unregistered %s from %s", self.accepted_name, self.registry_url)
                                break
            self._lease = None
        finally:
            self._monitor.close()
            self.socket.close(0)

    # -- internals --------------------------------------------------------

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

    def _send(self, message: dict[str, Any]) -> bool:
        try:
            self.socket.send(json.dumps(message, separators=(",", ":")).encode(), zmq.NOBLOCK)
            return True
        except zmq.ZMQError:  # Again: the registry is not connected
            return False

    def _send_register(self, now: float) -> None:
        request_id = self._new_id()
        request = dict(self._request, id=request_id)
        if self.accepted_name is not None:
            request["name"] = self.accepted_name
        if self._send(request):
            self._waiting_id = request_id
            self._waiting_until = now + self._reply_timeout
        else:
            self._next_due = now + self._backoff
            self._backoff = min(self._backoff * 2, self._heartbeat)

    def _on_reply(self, reply: dict[str, Any]) -> None:
        now = time.monotonic()
        request_id = reply.get("id")
        if reply.get("ok") is True:
            if request_id == self._waiting_id and isinstance(reply.get("lease"), str):
                self._accepted(reply, now)
            elif self._lease is not None:
                self._last_answer = now
                self._silent_logged = False
            return
        error = reply.get("error")
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
            log.error("registry %s refused %s: %s", self.registry_url, self.name, reply.get("message", error))
            self._waiting_id = None
            self._next_due = now + self._heartbeat

    def _accepted(self, reply: dict[str, Any], now: float) -> None:
        name = reply.get("name")
        if not isinstance(name, str):
            return
        previous = self.accepted_name
        self._lease = str(reply["lease"])
        self._lease_id = self._waiting_id or 0
        self._waiting_id = None
        self._backoff = _FIRST_BACKOFF
        self._last_answer = now
        self._silent_logged = False
        heartbeat = reply.get("heartbeat")
        ttl = reply.get("ttl")
        if isinstance(heartbeat, (int, float)) and isinstance(ttl, (int, float)) and 0 < heartbeat < ttl:
            self._heartbeat, self._ttl = float(heartbeat), float(ttl)
        self._next_due = now + self._heartbeat
        self.accepted_name = name
        address = reply.get("address")
        self.address = address if isinstance(address, str) else None
        if previous is None:
            log.info("registered as %r at %s (address %s)", name, self.registry_url, self.address)
        elif previous != name:
            log.warning("registered again as %r, no longer %r, at %s", name, previous, self.registry_url)
        else:
            log.info("registered again as %r at %s", name, self.registry_url)
        if self.on_accepted is not None:
            try:
                self.on_accepted(name)
            except Exception:
                log.exception("on_accepted callback failed")
