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
from fixtures.registry_peers import HEARTBEAT, TTL, Device, Raw, dead_address

from runtime.errors import DeviceNotFound, RegistryUnavailable
from runtime.registry import (
    DeviceRecord,
    Registry,
    RegistryClient,
    list_devices,
    lookup,
    lookup_async,
    watch,
)
from runtime.transport.addresses import connectable, effective_address
from runtime.transport.systemd import SystemdNotifier


def _registry(**options: Any) -> Registry:
    return Registry(ttl=TTL, heartbeat=HEARTBEAT, probe_timeout=0.2, beat_interval=0.2, **options)


@pytest.fixture
def registry() -> Iterator[str]:
    with _registry().running("tcp://127.0.0.1:0") as address:
        yield address


@pytest.fixture
def raw(registry: str) -> Iterator[Raw]:
    client = Raw(registry)
    yield client
    client.close()


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    started: list[Device] = []
    yield started
    for device in started:
        device.stop()


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
    assert raw.register("cam", dead_address())["name"] == "cam"  # its lease has not run out yet
    start = time.monotonic()
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    assert time.monotonic() - start < TTL
    assert lookup("cam", registry=registry).address == devices[0].address


def test_takeover_does_not_evict_a_live_holder(registry: str, raw: Raw, devices: list[Device]) -> None:
    # takeover once evicted a live holder; it now means a plain register: the holder answers, so it keeps its name
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    assert raw.register("cam", dead_address(), takeover=True)["name"] == "cam-1"
    assert lookup("cam", registry=registry).address == devices[0].address


def test_address_registered_again_by_another_keeps_its_entry(registry: str, raw: Raw) -> None:
    # the second register once replaced the first: without the first's lease it now only adds its own
    address = dead_address()
    first = raw.register("first", address)
    assert raw.register("second", address)["name"] == "second"
    assert [d.name for d in list_devices(registry=registry)] == ["first", "second"]
    again = raw.register("renamed", address, lease=first["lease"])  # with the lease: the entry is replaced
    assert again["name"] == "renamed"
    assert [d.name for d in list_devices(registry=registry)] == ["renamed", "second"]


def test_registering_at_a_live_devices_address_never_removes_it(registry: str, raw: Raw, devices: list[Device]) -> None:
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    victim = devices[0].address
    removed: list[str] = []
    with watch(lambda kind, r: removed.append(r.name) if kind == "removed" else None, registry=registry) as watcher:
        assert watcher.ready.wait(2)
        with RegistryClient(registry) as client:
            for n in range(50):  # its name, other names, a takeover, a lease of its own: none removes the device
                fields: dict[str, Any] = {"takeover": True} if n % 3 == 0 else {"lease": "forged"} if n % 3 else {}
                assert raw.register("cam" if n % 2 else f"squat-{n}", victim, **fields)["ok"] is True
                assert client.lookup("cam").address == victim
    assert "cam" not in removed
    assert devices[0].registration is not None and devices[0].registration.accepted_name == "cam"


def test_a_lease_longer_than_the_registrys_is_cut_to_it(registry: str, raw: Raw) -> None:
    reply = raw.register("ghost", dead_address(), ttl=86400, heartbeat=3600)
    assert (reply["ttl"], reply["heartbeat"]) == (TTL, HEARTBEAT)
    assert raw.register("brief", dead_address(), ttl=0.3, heartbeat=0.1)["ttl"] == 0.3  # shorter: as asked
    removed = threading.Event()
    with watch(lambda kind, r: removed.set() if r.name == "ghost" else None, registry=registry, initial=False):
        assert removed.wait(5), "a lease asked for a day outlived the registry's ttl"


def test_only_its_lease_renews_replaces_or_unregisters_an_entry(registry: str, raw: Raw, devices: list[Device]) -> None:
    holder = Device(None)  # answers pings at its address
    devices.append(holder)
    lease = raw.register("cam", holder.address)["lease"]
    assert raw.request(k="unregister", lease="forged")["error"] == "unknown"
    assert raw.request(k="heartbeat", lease="forged")["error"] == "unknown"
    assert raw.register("cam", holder.address, lease="forged")["name"] == "cam-1"  # a stranger, held apart
    seq = raw.request(k="info")["seq"]
    again = raw.register("cam", holder.address, lease=lease)  # its holder: renewed as it is
    assert (again["name"], again["lease"]) == ("cam", lease)
    assert raw.request(k="info")["seq"] == seq, "renewing an entry announced a change"
    assert raw.register("cam", holder.address, lease=lease, hash="new")["lease"] != lease  # replaced by its holder
    assert lookup("cam", registry=registry).hash == "new"


def test_a_device_that_lost_its_name_asks_for_it_until_it_has_it(
    registry: str, raw: Raw, devices: list[Device]
) -> None:
    devices.append(Device(registry, "cam"))
    assert devices[0].name() == "cam"
    devices.append(Device(registry, "cam"))
    assert devices[1].name() == "cam-1"
    reg = devices[1].registration
    assert reg is not None
    asked: queue.Queue[str] = queue.Queue()
    send = reg._send

    def spy(message: bytes, sock: zmq.Socket[bytes] | None = None) -> bool:
        request = json.loads(message)
        if request["k"] == "register":
            asked.put(request["name"])
        return send(message, sock)

    reg._send = spy  # type: ignore[method-assign]
    seq = raw.request(k="info")["seq"]
    assert [asked.get(timeout=3 * TTL) for _ in range(2)] == ["cam", "cam"]  # once a ttl, with its lease
    assert raw.request(k="info")["seq"] == seq, "asking while the holder lives changed the registry"
    devices[0].stop(unregister=False)  # the holder dies; its lease runs out
    assert devices[1].name(timeout=5) == "cam"
    assert lookup("cam", registry=registry).address == devices[1].address
    assert [d.name for d in list_devices(registry=registry)] == ["cam"]


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
        raw.register("ghost", dead_address(), ttl=0.3, heartbeat=0.1)  # and never a heartbeat
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
    options: dict[str, Any] = {"heartbeats_bind": dead_address()} if heartbeat_port == "same" else {}
    beat = 0.5  # longer than the other tests' beat: two of them leave a loaded machine time to answer
    lease = {"ttl": 3 * beat, "heartbeat": beat}
    with Registry(**lease, **options).running("tcp://127.0.0.1:0") as address:
        devices.append(Device(address, "cam", **lease))
        assert devices[0].name() == "cam"
    with Registry(**lease, **options).running(address):
        start = time.monotonic()
        assert devices[0].name(timeout=5) == "cam"
        elapsed = time.monotonic() - start
        assert elapsed < 2 * beat, f"registered again after {elapsed:.2f} s"
        assert lookup("cam", registry=address).address == devices[0].address


def _beats(raw: Raw) -> Raw:
    """A bare DEALER on the registry's heartbeat socket."""
    return Raw(connectable(raw.request(k="info")["heartbeats"]))


def test_heartbeats_on_their_own_socket_renew_the_lease(registry: str, raw: Raw) -> None:
    lease = raw.register("ghost", dead_address(), ttl=0.3, heartbeat=0.1)["lease"]
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
    lease = raw.register("ghost", dead_address(), ttl=ttl, heartbeat=0.1)["lease"]
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
    address = dead_address()
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
        lookup("cam", registry=dead_address(), timeout=0.3)
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
    assert raw.register("cam", dead_address())["name"] == "cam"


_CLAIM = b'"k": "register", "name": "cam", "interface": "X", "version": 1, "address": "tcp://127.0.0.1:1"'


@pytest.mark.parametrize(
    ("message", "answered_id"),
    [
        (b'{"v": 2, "id": 5, "k": "list"}', 5),
        (b'{"v": 1e999, "id": "x", "k": "ping"}', "x"),
        (b'{"v": 1, "id": 1000000000000000000000000000000, "k": "ping"}', 10**30),
        (b'{"v": 1, "id": -9223372036854775808, "k": "lookup", "name": "nobody"}', -(2**63)),
        (b'{"v": 1, "id": 1.5, "k": "ping"}', 1.5),
        (b'{"v": 1, "id": true, "k": "ping"}', True),
        (b'{"v": 1, "id": 7, ' + _CLAIM + b', "ttl": 1e999}', 7),
        (b'{"v": 1, "id": 7, ' + _CLAIM + b', "ttl": NaN, "heartbeat": -Infinity}', 7),
        (b'{"v": 1, "id": 7, ' + _CLAIM.replace(b'"version": 1', b'"version": 1' + b"0" * 5000) + b"}", 7),
        (b'{"v": 1, "id": 7, ' + _CLAIM.replace(b'"version": 1', b'"version": 4294967296') + b"}", 7),
        (b'{"v": 1, "id": NaN, "k": "ping"}', None),  # no JSON can carry it back
        (b'{"v": 1, "id": "' + b"x" * 2000 + b'", "k": "ping"}', None),  # too long to echo
    ],
)
def test_every_request_with_an_id_is_answered_with_it_in_strict_json(
    raw: Raw, message: bytes, answered_id: Any
) -> None:
    reply = raw.send(message)  # Raw refuses NaN and Infinity in what comes back
    assert reply["id"] == answered_id and type(reply["id"]) is type(answered_id)


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
