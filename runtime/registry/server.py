"""The device registry: unique names mapped to addresses, kept alive by leases.

One I/O thread owns a ROUTER that answers requests (single JSON frames, see
``docs/registry.md``), a second ROUTER that takes lease renewals (heartbeats) and
a PUB that announces every change. Devices register, renew their lease with
heartbeats and unregister; a lease that is not renewed within its time to live
drops the device.

Why heartbeats have a socket of their own: with a thousand devices beating once a
second, waking up once per heartbeat costs more than handling it. The heartbeat
ROUTER is not polled; the loop drains it on a timer (``batch_interval``, 25 ms),
so a thousand heartbeats cost some forty wake-ups a second, while the request
ROUTER is polled and a lookup is answered at once. A heartbeat there is answered
only when it fails or carries ``"ack": true``: each reply wakes libzmq's I/O
thread and costs more than the heartbeat did, so a device asks for one only as
often as it needs to know the registry still answers. A heartbeat waits at most one
batch interval in ZeroMQ's queue, so a lease that stops being renewed is dropped
within ``ttl`` plus one batch interval (plus the sweep's own granularity).
Heartbeats sent to the request socket are still answered at once: a device falls
back to it whenever its heartbeat socket is not connected. Names are unique: a newcomer asking for
a name whose holder still answers a ping gets ``name-1``, ``name-2``...; a holder
that no longer answers (a device restarted before its old lease ran out) loses the
name to the newcomer at once. Holder pings are DEALER sockets polled by the same
loop, so a probe never blocks any other request.

Address rule: a device registers the address it bound. When that address is a
wildcard (``tcp://*:PORT``, ``tcp://0.0.0.0:PORT``, ``tcp://[::]:PORT``), the
registry substitutes the address it sees the device's message come from; when
that is loopback (device and registry share a host) or unknown, it substitutes the
``host`` the device sent (its host name, or its ``advertise`` override).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from types import FrameType
from typing import Any, Final

import zmq

from runtime.protocol.names import VERSION as PROTOCOL
from runtime.transport.addresses import TRANSPORTS, beside, connectable, effective_address
from runtime.transport.security import CurveClient, CurveServer, Grant, is_key
from runtime.transport.sockets import bind

__all__ = [
    "DEFAULT_REGISTRY",
    "PING",
    "Registry",
]

log = logging.getLogger(__name__)

DEFAULT_REGISTRY: Final = "tcp://127.0.0.1:5555"
PING: Final = "ping"
MAX_REQUEST_BYTES: Final = 64 * 1024
MAX_NAME_LENGTH: Final = 100
MAX_SUFFIX_PROBES: Final = 32
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


class _BadRequest(Exception):
    """A request the registry answers with an error code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(eq=False, slots=True)
class _Entry:
    """One registered device and its lease."""

    name: str
    interface: str
    version: int
    hash: str
    address: str
    public_key: str | None
    lease: str
    ttl: float
    heartbeat: float
    last_seen: float

    def record(self, now: float) -> dict[str, Any]:
        return {
            "name": self.name,
            "interface": self.interface,
            "version": self.version,
            "hash": self.hash,
            "address": self.address,
            "public_key": self.public_key,
            "age": round(max(0.0, now - self.last_seen), 3),
        }


@dataclass(eq=False, slots=True)
class _Probe:
    """A ping to a name's holder, answered (alive), timed out (dead) or waiting (None)."""

    entry: _Entry
    socket: zmq.Socket[bytes]
    deadline: float
    alive: bool | None = None


@dataclass(eq=False, slots=True)
class _Pending:
    """A registration waiting for its probes before it can be given a name."""

    envelope: list[bytes]
    request_id: Any
    fields: dict[str, Any]
    probes: dict[str, _Probe] = field(default_factory=dict)


def _candidates(name: str) -> Iterator[str]:
    yield name
    n = 1
    while True:
        yield f"{name}-{n}"
        n += 1


def _encode(message: dict[str, Any]) -> bytes:
    return json.dumps(message, separators=(",", ":")).encode()


class Registry:
    """Maps unique device names to addresses; run it with ``serve()`` or ``running()``.

    ``bind`` is the request endpoint, ``events_bind`` the PUB endpoint (by default
    a free port on the same host, so two registries never fight over it; ``info``
    tells clients where). ``ttl`` and
    ``heartbeat`` are the lease given to a device that does not ask for its own;
    ``probe_timeout`` bounds how long a name's holder has to answer its ping.
    ``heartbeats_bind`` is the heartbeat endpoint (default: a free port beside
    ``bind``; the register reply tells each device where), drained every
    ``batch_interval`` seconds.
    ``curve`` switches CurveZMQ on for all three sockets: only allowed client keys can
    register, look up, list or watch. Holders registered with a public key are
    pinged over Curve with the registry's own key pair, which they must allow.
    """

    def __init__(
        self,
        bind: str = DEFAULT_REGISTRY,
        *,
        ttl: float = 3.0,
        heartbeat: float | None = None,
        events_bind: str | None = None,
        probe_timeout: float = 0.5,
        beat_interval: float = 1.0,
        heartbeats_bind: str | None = None,
        batch_interval: float = 0.025,
        curve: CurveServer | None = None,
    ) -> None:
        if not ttl > 0:
            raise ValueError(f"ttl must be positive, not {ttl!r}")
        if not batch_interval > 0:
            raise ValueError(f"batch_interval must be positive, not {batch_interval!r}")
        self.bind = bind
        self.ttl = float(ttl)
        self.heartbeat = float(heartbeat) if heartbeat is not None else self.ttl / 3
        self.events_bind = events_bind
        self.probe_timeout = probe_timeout
        self.beat_interval = beat_interval
        self.heartbeats_bind = heartbeats_bind
        self.batch_interval = float(batch_interval)
        self.curve = curve
        self._grant: Grant | None = None
        self._address: str | None = None
        self._events_address: str | None = None
        self._events_bound = ""
        self._heartbeats_bound = ""
        self._bound = threading.Event()
        self._bind_error: BaseException | None = None
        self._stopping = False
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)
        self._epoch = secrets.token_hex(4)
        self._seq = 0
        self._by_name: dict[str, _Entry] = {}
        self._by_address: dict[str, _Entry] = {}
        self._by_lease: dict[str, _Entry] = {}
        self._pending: dict[str, _Pending] = {}  # by effective address
        self._probes: dict[zmq.Socket[bytes], tuple[_Probe, _Pending]] = {}
        self._router: zmq.Socket[bytes] | None = None
        self._beats: zmq.Socket[bytes] | None = None
        self._pub: zmq.Socket[bytes] | None = None
        self._poller = zmq.Poller()
        self._handlers: dict[str, Callable[[list[bytes], Any, dict[str, Any], zmq.Frame, float], None]] = {
            "register": self._on_register,
            "unregister": self._on_unregister,
            "list": self._on_list,
            "lookup": self._on_lookup,
            "info": self._on_info,
            PING: self._on_ping,
        }

    # -- lifetime ---------------------------------------------------------

    @property
    def address(self) -> str:
        """The connectable request address (wildcards and port 0 resolved) once bound."""
        if self._address is None:
            raise RuntimeError("the registry is not serving yet")
        return self._address

    @property
    def events_address(self) -> str:
        """The connectable PUB address once bound."""
        if self._events_address is None:
            raise RuntimeError("the registry is not serving yet")
        return self._events_address

    def serve(self) -> None:
        """Serve until ``stop()``; in the main thread SIGINT and SIGTERM stop it too."""
        restore: list[tuple[int, Any]] = []
        if threading.current_thread() is threading.main_thread():

            def on_signal(signum: int, frame: FrameType | None) -> None:
                log.info("registry: signal %d, stopping", signum)
                self.stop()

            for sig in (signal.SIGINT, signal.SIGTERM):
                restore.append((sig, signal.signal(sig, on_signal)))
        try:
            try:
                self._open()
            except BaseException as exc:
                self._bind_error = exc
                raise
            finally:
                self._bound.set()
            log.info("registry serving at %s, events at %s", self._address, self._events_address)
            self._loop()
        finally:
            self._close()
            for old_sig, handler in restore:
                signal.signal(old_sig, handler)

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Serve in a background thread; yield the connectable address; stop on exit."""
        thread = threading.Thread(target=self._serve_quietly, name="zidl-registry", daemon=True)
        thread.start()
        self._bound.wait()
        if self._bind_error is not None:
            thread.join()
            raise self._bind_error
        try:
            yield self.address
        finally:
            self.stop()
            thread.join()

    def stop(self) -> None:
        """Ask the serving loop to stop; safe from any thread and from a signal handler."""
        self._stopping = True
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def _serve_quietly(self) -> None:
        with contextlib.suppress(Exception):
            self.serve()

    def _open(self) -> None:
        ctx: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        router, beats = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
        for owned in (router, beats):
            owned.setsockopt(zmq.LINGER, 0)
            owned.setsockopt(zmq.MAXMSGSIZE, 4 * MAX_REQUEST_BYTES)
            owned.setsockopt(zmq.ROUTER_MANDATORY, 0)
        pub: zmq.Socket[bytes] = ctx.socket(zmq.PUB)
        pub.setsockopt(zmq.LINGER, 0)
        self._router, self._beats, self._pub = router, beats, pub
        if self.curve is not None:
            self._grant = self.curve.secure(router, beats, pub)
        bind(router, self.bind)
        endpoint = router.getsockopt_string(zmq.LAST_ENDPOINT)
        self._address = connectable(endpoint)
        bind(pub, self.events_bind or beside(endpoint, ".events"))
        self._events_bound = pub.getsockopt_string(zmq.LAST_ENDPOINT)
        self._events_address = connectable(self._events_bound)
        self._heartbeats_bound = bind(beats, self.heartbeats_bind or beside(endpoint, ".heartbeats"))
        self._poller.register(router, zmq.POLLIN)
        self._poller.register(self._wake_r.fileno(), zmq.POLLIN)

    def _close(self) -> None:
        for probe, _ in self._probes.values():
            probe.socket.close(0)
        self._probes.clear()
        for owned in (self._router, self._beats, self._pub):
            if owned is not None:
                owned.close(0)
        self._router = self._beats = self._pub = None
        if self._grant is not None:
            self._grant.close()
            self._grant = None
        self._poller = zmq.Poller()
        self._wake_r.close()
        self._wake_w.close()
        log.info("registry stopped")

    # -- the loop ---------------------------------------------------------

    def _loop(self) -> None:
        router = self._router
        assert router is not None
        poll = self._poller.poll

        def ready() -> int:
            return int(router.get(zmq.EVENTS))

        recv = router.recv_multipart
        wake = self._wake_r.fileno()
        sweep_every = min(0.5, max(0.02, self.ttl / 20))
        next_sweep = next_beat = next_drain = time.monotonic()
        while not self._stopping:
            deadline = min(next_sweep, next_beat, next_drain)
            if self._probes:
                deadline = min(deadline, *(probe.deadline for probe, _ in self._probes.values()))
            events = poll(max(0, math.ceil((deadline - time.monotonic()) * 1000)))
            # The hot path: read every waiting request, with no exception raised at the end.
            for _ in range(5000):
                if not ready() & zmq.POLLIN:
                    break
                frames = recv(zmq.NOBLOCK, copy=False)
                try:
                    self._on_message(router, frames)
                except Exception:
                    log.exception("registry: a request failed")
            for sock, _ in events:
                if sock is wake:
                    with contextlib.suppress(OSError):
                        self._wake_r.recv(4096)
                elif sock in self._probes:
                    self._on_probe_reply(sock)
            now = time.monotonic()
            if now < deadline:
                continue
            if self._probes:
                self._expire_probes(now)
            if now >= next_drain or now >= next_sweep:  # before a sweep: a heartbeat in the queue still counts
                self._drain_heartbeats()
                next_drain = now + self.batch_interval
            if now >= next_sweep:
                self._sweep(now)
                next_sweep = now + sweep_every
            if now >= next_beat:
                self._publish({"k": "beat"}, advance=False)
                next_beat = now + self.beat_interval

    def _drain_heartbeats(self) -> None:
        """Read what queued since the last drain (one zmq.Again ends a batch: no exception per message)."""
        beats = self._beats
        assert beats is not None
        recv = beats.recv_multipart
        for _ in range(5000):  # bounded, as requests are: a flood cannot keep lookups waiting
            try:
                frames = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            try:
                self._on_message(beats, frames)
            except Exception:
                log.exception("registry: a heartbeat failed")

    def _on_message(self, sock: zmq.Socket[bytes], frames: list[zmq.Frame]) -> None:
        """Answer one message from ``sock``: any request on the request ROUTER, heartbeats only on the other."""
        # Envelope: the identity, plus everything up to an empty delimiter (REQ peers).
        split = 1
        if len(frames) > 2:
            for i, frame in enumerate(frames[1:], start=1):
                if not frame.bytes:
                    split = i + 1
                    break
        envelope = [f.bytes for f in frames[:split]]
        body = frames[split:]
        now = time.monotonic()
        if len(body) != 1:
            self._error(envelope, None, "bad-request", "a request is exactly one JSON frame", sock)
            return
        raw = body[0].bytes
        if len(raw) > MAX_REQUEST_BYTES:
            self._error(envelope, None, "too-large", f"a request is at most {MAX_REQUEST_BYTES} bytes", sock)
            return
        try:
            msg = json.loads(raw)
        except (ValueError, UnicodeDecodeError, RecursionError):  # RecursionError: nested too deeply
            self._error(envelope, None, "bad-request", "a request is a JSON object", sock)
            return
        if not isinstance(msg, dict):
            self._error(envelope, None, "bad-request", "a request is a JSON object", sock)
            return
        request_id = msg.get("id")
        if isinstance(request_id, (dict, list)):
            request_id = None
        if msg.get("v") != PROTOCOL:
            self._error(envelope, request_id, "unsupported-version", f"this registry speaks v={PROTOCOL}", sock)
            return
        kind = msg.get("k")
        if kind == "heartbeat":  # the hot path: one dict lookup, one reply
            lease = msg.get("lease")
            entry = self._by_lease.get(lease) if isinstance(lease, str) else None
            if entry is None:
                self._error(envelope, request_id, "unknown", "no such lease; register again", sock)
            else:
                entry.last_seen = now
                if sock is self._beats and msg.get("ack") is not True:
                    return  # answering costs more than receiving: only when the device asks
                envelope.append(b'{"v":1,"id":%s,"ok":true}' % json.dumps(request_id).encode())
                self._send(envelope, sock)
            return
        if sock is self._beats:
            self._error(envelope, request_id, "unknown-kind", "the heartbeat socket takes heartbeats only", sock)
            return
        handler = self._handlers.get(kind) if isinstance(kind, str) else None
        if handler is None:
            self._error(envelope, request_id, "unknown-kind", f"unknown request kind {kind!r}")
            return
        try:
            handler(envelope, request_id, msg, body[0], now)
        except _BadRequest as exc:
            self._error(envelope, request_id, exc.code, exc.message)
        except Exception:
            log.exception("registry: %s request failed", kind)
            self._error(envelope, request_id, "internal", "the registry failed on this request")

    def _send(self, frames: list[bytes], sock: zmq.Socket[bytes] | None = None) -> None:
        """Send on ``sock``, by default the request ROUTER (where every reply but a heartbeat's goes)."""
        if sock is None:
            sock = self._router
        assert sock is not None
        try:
            sock.send_multipart(frames, zmq.NOBLOCK)
        except zmq.ZMQError as exc:  # the peer is gone or its queue is full; it will retry
            log.debug("registry: reply dropped: %s", exc)

    def _reply(self, envelope: list[bytes], request_id: Any, **fields: Any) -> None:
        self._send([*envelope, _encode({"v": PROTOCOL, "id": request_id, "ok": True, **fields})])

    def _error(
        self, envelope: list[bytes], request_id: Any, code: str, message: str, sock: zmq.Socket[bytes] | None = None
    ) -> None:
        log.debug("registry: %s: %s", code, message)
        self._send(
            [*envelope, _encode({"v": PROTOCOL, "id": request_id, "ok": False, "error": code, "message": message})],
            sock,
        )

    # -- requests ---------------------------------------------------------

    def _on_ping(
        self, envelope: list[bytes], request_id: Any, msg: dict[str, Any], frame: zmq.Frame, now: float
    ) -> None:
        self._reply(envelope, request_id)

    def _on_info(
        self, envelope: list[bytes], request_id: Any, msg: dict[str, Any], frame: zmq.Frame, now: float
    ) -> None:
        self._reply(
            envelope,
            request_id,
            events=self._events_bound,
            heartbeats=self._heartbeats_bound,
            epoch=self._epoch,
            seq=self._seq,
            ttl=self.ttl,
            heartbeat=self.heartbeat,
            devices=len(self._by_name),
            beat=self.beat_interval,
        )

    def _on_list(
        self, envelope: list[bytes], request_id: Any, msg: dict[str, Any], frame: zmq.Frame, now: float
    ) -> None:
        interface = msg.get("interface")
        if interface is not None and not isinstance(interface, str):
            raise _BadRequest("bad-request", "'interface' is a string")
        devices = [e.record(now) for e in self._by_name.values() if interface is None or e.interface == interface]
        devices.sort(key=lambda d: d["name"])
        self._reply(envelope, request_id, devices=devices, epoch=self._epoch, seq=self._seq)

    def _on_lookup(
        self, envelope: list[bytes], request_id: Any, msg: dict[str, Any], frame: zmq.Frame, now: float
    ) -> None:
        name = msg.get("name")
        if not isinstance(name, str):
            raise _BadRequest("bad-request", "'name' is a string")
        entry = self._by_name.get(name)
        if entry is None:
            raise _BadRequest("not-found", f"no device named {name!r}")
        self._reply(envelope, request_id, device=entry.record(now))

    def _on_unregister(
        self, envelope: list[bytes], request_id: Any, msg: dict[str, Any], frame: zmq.Frame, now: float
    ) -> None:
        lease = msg.get("lease")
        entry = self._by_lease.get(lease) if isinstance(lease, str) else None
        if entry is None:
            raise _BadRequest("unknown", "no such lease")
        self._remove(entry, "unregistered")
        self._reply(envelope, request_id)

    def _on_register(
        self, envelope: list[bytes], request_id: Any, msg: dict[str, Any], frame: zmq.Frame, now: float
    ) -> None:
        fields = self._check_register(msg)
        peer: str | None
        try:
            peer = frame.get("Peer-Address")  # type: ignore[assignment]
        except zmq.ZMQError:
            peer = None
        fields["address"] = effective_address(fields["address"], peer, fields.pop("host"))
        address = fields["address"]
        pending = self._pending.get(address)
        if pending is not None:  # a retry while the first waits on probes: answer the newest
            self._error(
                pending.envelope, pending.request_id, "superseded", "a newer register for this address replaced it"
            )
            pending.envelope, pending.request_id, pending.fields = envelope, request_id, fields
            return
        old = self._by_address.get(address)
        if old is not None:
            self._remove(old, "replaced")
        name = fields["name"]
        if fields.pop("takeover"):
            holder = self._by_name.get(name)
            if holder is not None:
                self._remove(holder, "taken-over")
            self._accept(envelope, request_id, name, fields, now)
            return
        pending = _Pending(envelope, request_id, fields)
        for candidate in _candidates(name):
            holder = self._by_name.get(candidate)
            if holder is None or len(pending.probes) >= MAX_SUFFIX_PROBES:
                break
            pending.probes[candidate] = self._start_probe(holder, pending, now)
        if not pending.probes:
            self._accept(envelope, request_id, name, fields, now)
        else:
            self._pending[address] = pending

    def _check_register(self, msg: dict[str, Any]) -> dict[str, Any]:
        name = msg.get("name")
        if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
            raise _BadRequest("bad-request", "'name' is letters, digits, '_', '.' and '-', at most 100 long")
        address = msg.get("address")
        if not isinstance(address, str) or not address.startswith(TRANSPORTS) or len(address) > 1024:
            raise _BadRequest("bad-request", "'address' is a tcp://, ipc:// or inproc:// address")
        interface, version, hash_ = msg.get("interface"), msg.get("version"), msg.get("hash", "")
        if not isinstance(interface, str) or not interface or len(interface) > 200:
            raise _BadRequest("bad-request", "'interface' is a non-empty string")
        if not isinstance(version, int) or isinstance(version, bool):
            raise _BadRequest("bad-request", "'version' is an integer")
        if not isinstance(hash_, str) or len(hash_) > 200:
            raise _BadRequest("bad-request", "'hash' is a string")
        host = msg.get("host")
        if host is not None and (not isinstance(host, str) or not host or len(host) > 255 or "/" in host):
            raise _BadRequest("bad-request", "'host' is a host name")
        public_key = msg.get("public_key")
        if public_key is not None and (not isinstance(public_key, str) or not is_key(public_key)):
            raise _BadRequest("bad-request", "'public_key' is a Z85 Curve public key (40 characters)")
        takeover = msg.get("takeover", False)
        if not isinstance(takeover, bool):
            raise _BadRequest("bad-request", "'takeover' is true or false")
        ttl = self._number(msg, "ttl", self.ttl)
        heartbeat = self._number(msg, "heartbeat", min(self.heartbeat, ttl / 3) if "ttl" in msg else self.heartbeat)
        if heartbeat >= ttl:
            raise _BadRequest("bad-request", "'heartbeat' must be shorter than 'ttl'")
        return {
            "name": name,
            "interface": interface,
            "version": version,
            "hash": hash_,
            "address": address,
            "host": host,
            "public_key": public_key,
            "takeover": takeover,
            "ttl": ttl,
            "heartbeat": heartbeat,
        }

    @staticmethod
    def _number(msg: dict[str, Any], key: str, default: float) -> float:
        value = msg.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.01 <= value <= 86400:
            raise _BadRequest("bad-request", f"{key!r} is a number of seconds between 0.01 and 86400")
        return float(value)

    def _accept(self, envelope: list[bytes], request_id: Any, name: str, fields: dict[str, Any], now: float) -> None:
        entry = _Entry(
            name=name,
            interface=fields["interface"],
            version=fields["version"],
            hash=fields["hash"],
            address=fields["address"],
            public_key=fields["public_key"],
            lease=secrets.token_hex(12),
            ttl=fields["ttl"],
            heartbeat=fields["heartbeat"],
            last_seen=now,
        )
        self._by_name[name] = entry
        self._by_address[entry.address] = entry
        self._by_lease[entry.lease] = entry
        log.info("registry: %s (%s v%d) at %s", name, entry.interface, entry.version, entry.address)
        self._publish({"k": "added", "device": entry.record(now)})
        self._reply(
            envelope,
            request_id,
            name=name,
            address=entry.address,
            lease=entry.lease,
            ttl=entry.ttl,
            heartbeat=entry.heartbeat,
            heartbeats=self._heartbeats_bound,
        )

    def _remove(self, entry: _Entry, reason: str) -> None:
        if self._by_lease.pop(entry.lease, None) is None:
            return
        if self._by_name.get(entry.name) is entry:
            del self._by_name[entry.name]
        if self._by_address.get(entry.address) is entry:
            del self._by_address[entry.address]
        log.info("registry: %s at %s removed (%s)", entry.name, entry.address, reason)
        self._publish({"k": "removed", "device": entry.record(time.monotonic()), "reason": reason})

    def _publish(self, event: dict[str, Any], *, advance: bool = True) -> None:
        if advance:
            self._seq += 1
        assert self._pub is not None
        try:
            self._pub.send(_encode({"v": PROTOCOL, "epoch": self._epoch, "seq": self._seq, **event}), zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            log.debug("registry: event dropped: %s", exc)

    def _sweep(self, now: float) -> None:
        expired = [e for e in self._by_lease.values() if now - e.last_seen > e.ttl]
        for entry in expired:
            self._remove(entry, "expired")

    # -- holder probes ----------------------------------------------------

    def _start_probe(self, holder: _Entry, pending: _Pending, now: float) -> _Probe:
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_REQUEST_BYTES)
        probe = _Probe(holder, sock, now + self.probe_timeout)
        try:
            if holder.public_key is not None:
                curve = self.curve.client_of(holder.public_key) if self.curve is not None else None
                (curve or CurveClient(holder.public_key)).apply(sock)  # checked at register: a key
            sock.connect(holder.address)
            sock.send(_encode({"v": PROTOCOL, "id": 1, "k": PING}), zmq.NOBLOCK)
        except (zmq.ZMQError, ValueError) as exc:  # ValueError: a public key that is not one
            log.debug("registry: cannot ping %s at %s: %s", holder.name, holder.address, exc)
            probe.deadline = now  # counts as not answering at the next expiry check
        self._probes[sock] = (probe, pending)
        self._poller.register(sock, zmq.POLLIN)
        return probe

    def _on_probe_reply(self, sock: zmq.Socket[bytes]) -> None:
        with contextlib.suppress(zmq.ZMQError):
            sock.recv_multipart(zmq.NOBLOCK)
        self._finish_probe(sock, alive=True)

    def _expire_probes(self, now: float) -> None:
        for sock, (probe, _) in list(self._probes.items()):
            if now >= probe.deadline:
                self._finish_probe(sock, alive=False)

    def _finish_probe(self, sock: zmq.Socket[bytes], *, alive: bool) -> None:
        probe, pending = self._probes.pop(sock)
        probe.alive = alive
        self._poller.unregister(sock)
        sock.close(0)
        log.debug(
            "registry: holder %s at %s %s",
            probe.entry.name,
            probe.entry.address,
            "answers" if alive else "does not answer",
        )
        if all(p.alive is not None for p in pending.probes.values()):
            self._resolve(pending)

    def _resolve(self, pending: _Pending) -> None:
        fields = pending.fields
        if self._pending.get(fields["address"]) is pending:
            del self._pending[fields["address"]]
        now = time.monotonic()
        old = self._by_address.get(fields["address"])
        if old is not None:
            self._remove(old, "replaced")
        for candidate in _candidates(fields["name"]):
            holder = self._by_name.get(candidate)
            if holder is None:
                break
            probe = pending.probes.get(candidate)
            if probe is not None and probe.entry is holder and probe.alive is False:
                self._remove(holder, "not answering")
                break
        try:
            self._accept(pending.envelope, pending.request_id, candidate, fields, now)
        except Exception:
            log.exception("registry: registration of %s failed", fields["name"])
