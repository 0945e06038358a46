"""The registry, a device's registration and the client directory, over real sockets."""

from __future__ import annotations

import asyncio
import json
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq

from runtime.errors import DeviceNotFound, RegistryUnavailable
from runtime.registry import (
    DeviceRecord,
    Registration,
    Registry,
    RegistryClient,
    list_devices,
    lookup,
    lookup_async,
    watch,
)
from runtime.server.systemd import SystemdNotifier
from runtime.transport.addresses import connectable, effective_address

TTL = 0.6
HEARTBEAT = 0.2


def _registry(**options: Any) -> Registry:
    return Registry(ttl=TTL, heartbeat=HEARTBEAT, probe_timeout=0.2, beat_interval=0.2, **options)


@pytest.fixture
def registry() -> Iterator[str]:
    with _registry().running("tcp://127.0.0.1:0") as address:
        yield address


class Raw:
    """A bare DEALER speaking the registry protocol by hand."""

    def __init__(self, address: str) -> None:
        self.socket: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)

    def send(self, *frames: bytes) -> dict[str, Any]:
        self.socket.send_multipart(list(frames))
        assert self.socket.poll(2000), "the registry did not answer"
        reply = json.loads(self.socket.recv())
        assert isinstance(reply, dict)
        return reply

    def request(self, **fields: Any) -> dict[str, Any]:
        return self.send(json.dumps({"v": 1, "id": 7, **fields}).encode())

    def register(self, name: str, address: str, **fields: Any) -> dict[str, Any]:
        return self.request(k="register", name=name, interface="Camera", version=1, hash="h", address=address, **fields)

    def close(self) -> None:
        self.socket.close(0)


@pytest.fixture
def raw(registry: str) -> Iterator[Raw]:
    client = Raw(registry)
    yield client
    client.close()


class Device:
    """A stand-in for a zidl server: a ROUTER that answers pings, and its Registration, driven by one loop."""

    def __init__(self, registry: str | None, name: str = "cam", **options: Any) -> None:
        ctx = zmq.Context.instance()
        self.router: zmq.Socket[bytes] = ctx.socket(zmq.ROUTER)
        self.router.setsockopt(zmq.LINGER, 0)
        self.router.bind(options.pop("bind", "tcp://127.0.0.1:0"))
        self.address = self.router.getsockopt_string(zmq.LAST_ENDPOINT)
        self.accepted: queue.Queue[str] = queue.Queue()
        self.registration: Registration | None = None
        if registry is not None:
            options.setdefault("heartbeat", HEARTBEAT)
            options.setdefault("ttl", TTL)
            self.registration = Registration(
                registry, name, "Camera", 1, "h", self.address, on_accepted=self.accepted.put, **options
            )
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        poller = zmq.Poller()
        poller.register(self.router, zmq.POLLIN)
        reg = self.registration
        if reg is not None:
            poller.register(reg.socket, zmq.POLLIN)
        while not self._stop.is_set():
            wait = min(0.05, reg.tick(time.monotonic())) if reg is not None else 0.05
            events = dict(poller.poll(int(wait * 1000)))
            if self.router in events:
                ident, *_ = self.router.recv_multipart()
                self.router.send_multipart([ident, b'{"v":1,"id":1,"ok":true}'])
            if reg is not None and reg.socket in events:
                reg.handle_readable()
        if reg is not None:
            reg.close(unregister=self.unregister_on_close)
        self.router.close(0)

    unregister_on_close = True

    def name(self, timeout: float = 3.0) -> str:
        return self.accepted.get(timeout=timeout)

    def stop(self, unregister: bool = True) -> None:
        self.unregister_on_close = unregister
        self._stop.set()
        self._thread.join()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    started: list[Device] = []
    yield started
    for device in started:
        device.stop()


def _dead_address() -> str:
    """A TCP address nobody listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"tcp://127.0.0.1:{s.getsockname()[1]}"


def test_register_and_list(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    [record] = list_devices(registry=registry)
    assert (record.name, record.interface, record.version, record.address) == ("cam", "Camera", 1, devices[0].address)
    assert list_devices(registry=registry, interface="Turntable") == []


def test_lookup_reads_registry_from_environment(
    registry: str, devices: list[Device], monkeypatch: pytest.MonkeyPatch
) -> None:
    devices.append(Device(registry, "cam"))
    devices[0].name()
    monkeypatch.setenv("ZIDL_REGISTRY", registry)
    assert lookup("cam").address == devices[0].address


def test_duplicate_name_gets_suffix_while_holder_lives(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    devices.append(Device(registry, "cam"))
    assert devices[1].name() == "cam-1"
    devices.append(Device(registry, "cam"))
    assert devices[2].name() == "cam-2"
    assert lookup("cam", registry=registry).address == devices[0].address


def test_dead_holder_loses_its_name_to_a_newcomer_at_once(registry: str, raw: Raw, devices: list[Device]) -> None:
    assert raw.register("cam", _dead_address())["name"] == "cam"  # its lease has not run out yet
    start = time.monotonic()
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    assert time.monotonic() - start < TTL
    assert lookup("cam", registry=registry).address == devices[0].address


def test_takeover_takes_a_live_holders_name(registry: str, raw: Raw, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    newcomer = _dead_address()
    assert raw.register("cam", newcomer, takeover=True)["name"] == "cam"
    assert lookup("cam", registry=registry).address == newcomer


def test_address_registered_again_replaces_its_entry(registry: str, raw: Raw) -> None:
    address = _dead_address()
    raw.register("first", address)
    assert raw.register("second", address)["name"] == "second"
    assert [d.name for d in list_devices(registry=registry)] == ["second"]


def test_unregister_on_clean_stop(registry: str) -> None:
    device = Device(registry, "cam")
    device.name()
    device.stop(unregister=True)
    with pytest.raises(DeviceNotFound, match="cam"):
        lookup("cam", registry=registry)


def test_expired_lease_drops_the_device_and_a_watcher_sees_it(registry: str, raw: Raw) -> None:
    changes: queue.Queue[tuple[str, DeviceRecord]] = queue.Queue()
    with watch(lambda kind, record: changes.put((kind, record)), registry=registry) as watcher:
        assert watcher.ready.wait(2)
        raw.register("ghost", _dead_address(), ttl=0.3, heartbeat=0.1)  # and never a heartbeat
        kind, record = changes.get(timeout=2)
        assert (kind, record.name) == ("added", "ghost")
        kind, record = changes.get(timeout=2)
        assert (kind, record.name) == ("removed", "ghost")
        assert watcher.devices == {}
    with pytest.raises(DeviceNotFound):
        lookup("ghost", registry=registry)


def test_watcher_reports_devices_already_registered(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    devices[0].name()
    changes: queue.Queue[tuple[str, DeviceRecord]] = queue.Queue()
    with watch(lambda kind, record: changes.put((kind, record)), registry=registry):
        kind, record = changes.get(timeout=2)
    assert (kind, record.name, record.address) == ("added", "cam", devices[0].address)


def test_heartbeats_keep_a_device_registered_past_its_ttl(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    devices[0].name()
    removed = threading.Event()
    with watch(lambda kind, r: removed.set() if kind == "removed" else None, registry=registry, initial=False):
        assert not removed.wait(3 * TTL)
    assert lookup("cam", registry=registry).last_heartbeat < TTL


@pytest.mark.parametrize("heartbeat_port", ["new", "same"])
def test_restarted_registry_has_the_device_back_within_two_heartbeats(
    devices: list[Device], heartbeat_port: str
) -> None:
    # A new heartbeat port: the device's heartbeat DEALER is not connected, the heartbeat falls back
    # to the request socket and is refused at once. The same port: the heartbeat socket refuses it.
    options = {"heartbeats_bind": _dead_address()} if heartbeat_port == "same" else {}
    first = _registry(**options)
    with first.running("tcp://127.0.0.1:0") as address:
        devices.append(Device(address, "cam"))
        assert devices[0].name() == "cam"
    with _registry(**options).running(address):
        start = time.monotonic()
        assert devices[0].name(timeout=5) == "cam"
        elapsed = time.monotonic() - start
        assert elapsed < 2 * HEARTBEAT, f"registered again after {elapsed:.2f} s"
        assert lookup("cam", registry=address).address == devices[0].address


def _beats(raw: Raw) -> Raw:
    """A bare DEALER on the registry's heartbeat socket."""
    return Raw(connectable(raw.request(k="info")["heartbeats"]))


def test_heartbeats_on_their_own_socket_renew_the_lease(registry: str, raw: Raw) -> None:
    lease = raw.register("ghost", _dead_address(), ttl=0.3, heartbeat=0.1)["lease"]
    beats = _beats(raw)
    removed = threading.Event()
    try:
        with watch(lambda kind, r: removed.set() if kind == "removed" else None, registry=registry, initial=False):
            for n in range(12):  # 1.2 s: four times the ttl
                ack = n % 4 == 3
                beats.socket.send(json.dumps({"v": 1, "id": n, "k": "heartbeat", "lease": lease, "ack": ack}).encode())
                if ack:  # the unasked-for heartbeats before it got no answer: this is the first one waiting
                    assert beats.socket.poll(2000) and json.loads(beats.socket.recv()) == {"v": 1, "id": n, "ok": True}
                assert not removed.wait(0.1)
    finally:
        beats.close()
    assert lookup("ghost", registry=registry).last_heartbeat < 0.3


def test_lease_renewed_on_the_heartbeat_socket_expires_within_ttl_and_a_batch(registry: str, raw: Raw) -> None:
    ttl = 0.3
    lease = raw.register("ghost", _dead_address(), ttl=ttl, heartbeat=0.1)["lease"]
    beats = _beats(raw)
    removed: queue.Queue[str] = queue.Queue()
    try:
        with watch(
            lambda kind, r: removed.put(r.name) if kind == "removed" else None, registry=registry, initial=False
        ):
            last = time.monotonic()
            assert beats.request(k="heartbeat", lease=lease, ack=True)["ok"] is True  # the last one
            assert removed.get(timeout=2) == "ghost"
            elapsed = time.monotonic() - last
    finally:
        beats.close()
    # renewed no earlier than it was sent; dropped within ttl + batch (25 ms) + sweep (30 ms), plus slack
    assert ttl <= elapsed < ttl + 0.5, f"dropped {elapsed:.2f} s after the last heartbeat"


def test_heartbeat_socket_refuses_everything_but_heartbeats(raw: Raw) -> None:
    beats = _beats(raw)
    try:
        assert beats.request(k="lookup", name="cam")["error"] == "unknown-kind"
        assert beats.request(k="heartbeat", lease="nope", ack=True)["error"] == "unknown"
        assert beats.request(k="heartbeat", lease="nope")["error"] == "unknown"  # failures are always answered
    finally:
        beats.close()


def test_a_devices_heartbeats_go_to_the_heartbeat_socket(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    devices[0].name()
    reg = devices[0].registration
    assert reg is not None
    with RegistryClient(registry) as client:
        assert reg.heartbeats == connectable(client.request("info")["heartbeats"])
    sent: list[bool] = []  # per heartbeat: went to the heartbeat socket
    three = threading.Event()
    send = reg._send

    def spy(message: bytes, sock: zmq.Socket[bytes] | None = None) -> bool:
        if json.loads(message)["k"] == "heartbeat":
            sent.append(sock is not None)
            if len(sent) == 3:
                three.set()
        return send(message, sock)

    reg._send = spy  # type: ignore[method-assign]
    assert three.wait(2)
    assert all(sent), sent


def test_registration_waits_for_a_registry_that_is_not_there_yet(devices: list[Device]) -> None:
    address = _dead_address()
    device = Device(address, "cam")
    devices.append(device)
    reg = device.registration
    assert reg is not None
    assert device.accepted.empty() and not reg.registered
    with _registry().running(address):
        assert device.name(timeout=3) == "cam"


def test_lookup_of_unknown_name_raises_device_not_found(registry: str) -> None:
    with pytest.raises(DeviceNotFound, match="nobody"):
        lookup("nobody", registry=registry)


def test_unreachable_registry_raises_registry_unavailable_within_bound() -> None:
    start = time.monotonic()
    with pytest.raises(RegistryUnavailable):
        lookup("cam", registry=_dead_address(), timeout=0.3)
    assert time.monotonic() - start < 1.0


def test_async_lookup(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    devices[0].name()

    async def main() -> DeviceRecord:
        with pytest.raises(DeviceNotFound):
            await lookup_async("nobody", registry=registry)
        return await lookup_async("cam", registry=registry)

    assert asyncio.run(main()).address == devices[0].address


@pytest.mark.parametrize(
    "frames",
    [
        [b"\xff\x00\x13garbage"],
        [b"not json"],
        [b"[1, 2, 3]"],
        [b'{"v": 1, "id": 1, "k": "register", "name": 5}'],
        [b'{"v": 1, "id": 1, "k": "register", "name": "a b", "interface": "X", "version": 1, "address": "tcp://x:1"}'],
        [b'{"v": 1, "id": 1, "k": "register", "name": "a", "interface": "X", "version": "1", "address": "tcp://x:1"}'],
        [b'{"v": 1, "id": 1, "k": "register", "name": "a", "interface": "X", "version": 1, "address": "http://x"}'],
        [
            b'{"v": 1, "id": 1, "k": "register", "name": "a", "interface": "X", "version": 1, "address": "tcp://x:1", '
            b'"ttl": -1}'
        ],
        [b'{"v": 2, "id": 1, "k": "list"}'],
        [b'{"v": 1, "id": 1, "k": "explode"}'],
        [b'{"v": 1, "id": 1, "k": "heartbeat", "lease": [1]}'],
        [b'{"v": 1, "id": {"deep": 1}, "k": "lookup", "name": null}'],
        [b'{"v": 1, "id": 1, "k": "list", "interface": 3}'],
        [b'{"v": 1, "id": 1, "k": "unregister", "lease": "nope"}'],
        [b"one", b"two"],
        [b"x" * 100_000],
        [b'{"v": 1, "id": 1, "k": "lookup", "name": "' + b"[" * 5000],
    ],
)
@pytest.mark.parametrize("to", ["requests", "heartbeats"])
def test_malformed_request_gets_an_error_and_the_registry_keeps_working(raw: Raw, frames: list[bytes], to: str) -> None:
    target = raw if to == "requests" else _beats(raw)
    try:
        reply = target.send(*frames)
    finally:
        if target is not raw:
            target.close()
    assert reply["ok"] is False and isinstance(reply["error"], str)
    assert raw.request(k="ping")["ok"] is True
    assert raw.register("cam", _dead_address())["name"] == "cam"


def test_wildcard_address_becomes_the_host_name_from_loopback(raw: Raw) -> None:
    reply = raw.register("cam", "tcp://0.0.0.0:4242", host="rig-pi-3")
    assert reply["address"] == "tcp://rig-pi-3:4242"
    assert raw.register("cam2", "tcp://*:4243", host="rig-pi-3")["address"] == "tcp://rig-pi-3:4243"
    assert raw.register("cam3", "tcp://10.1.2.3:4244", host="rig-pi-3")["address"] == "tcp://10.1.2.3:4244"


def test_advertise_overrides_the_registered_host(registry: str, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam", advertise="cam.example"))
    devices[0].name()
    port = devices[0].address.rsplit(":", 1)[1]
    assert lookup("cam", registry=registry).address == f"tcp://cam.example:{port}"


def _local_ip() -> str | None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))
            ip: str = s.getsockname()[0]
        except OSError:
            return None
    return None if ip.startswith("127.") else ip


def test_wildcard_address_becomes_the_peer_address_seen_by_the_registry() -> None:
    ip = _local_ip()
    if ip is None:
        pytest.skip("this machine has no non-loopback IPv4 address")
    with _registry().running(f"tcp://{ip}:0") as address:
        client = Raw(address)
        try:
            assert client.register("cam", "tcp://0.0.0.0:4242", host="ignored")["address"] == f"tcp://{ip}:4242"
        finally:
            client.close()


def test_effective_address_rule() -> None:
    assert effective_address("tcp://*:1", "10.0.0.7", "pi") == "tcp://10.0.0.7:1"
    assert effective_address("tcp://0.0.0.0:1", "::ffff:10.0.0.7", "pi") == "tcp://10.0.0.7:1"
    assert effective_address("tcp://[::]:1", "fe80::1", "pi") == "tcp://[fe80::1]:1"
    assert effective_address("tcp://*:1", "127.0.0.1", "pi") == "tcp://pi:1"
    assert effective_address("tcp://*:1", None, None) == "tcp://127.0.0.1:1"
    assert effective_address("ipc:///tmp/x", "10.0.0.7", "pi") == "ipc:///tmp/x"


def test_registry_stops_on_stop_from_another_thread() -> None:
    reg = _registry()
    thread = threading.Thread(target=reg.serve, args=("tcp://127.0.0.1:0",))
    thread.start()
    reg.stop()
    thread.join(2)
    assert not thread.is_alive()


def test_systemd_notifier_sends_ready_and_feeds_the_watchdog(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        listener.settimeout(2)
        env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "2000000"}
        notifier = SystemdNotifier.from_env(env)
        assert notifier is not None and notifier.watchdog_interval == 1.0
        try:
            assert notifier.ready()
            assert listener.recv(100) == b"READY=1"
            assert notifier.tick(100.0) == 1.0
            assert listener.recv(100) == b"WATCHDOG=1"
            assert notifier.tick(100.5) == pytest.approx(0.5)
        finally:
            notifier.close()
    assert SystemdNotifier.from_env({}) is None


def test_systemd_notifier_reaches_abstract_sockets() -> None:
    name = f"zidl-test-{time.monotonic_ns()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind("\0" + name)
        listener.settimeout(2)
        notifier = SystemdNotifier.from_env({"NOTIFY_SOCKET": "@" + name})
        assert notifier is not None and notifier.watchdog_interval is None
        try:
            assert notifier.notify("STATUS=serving")
            assert listener.recv(100) == b"STATUS=serving"
        finally:
            notifier.close()
