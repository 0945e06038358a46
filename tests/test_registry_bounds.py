"""What a greedy peer can make the registry hold is bounded, answered for, and let go of; over real sockets."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from fixtures.registry_peers import HEARTBEAT, TTL, Device, Raw, dead_address

from runtime.errors import ProtocolError
from runtime.registry import Registry, RegistryClient, list_devices, watch

ROOT = Path(__file__).resolve().parent.parent


def _registry(**options: Any) -> Registry:
    return Registry(**{"ttl": TTL, "heartbeat": HEARTBEAT, "probe_timeout": 0.2, "beat_interval": 0.2, **options})


LONG = {"ttl": 30.0, "heartbeat": 10.0}
"""A registry whose devices outlast the test without heartbeats (a device never gets a longer lease)."""


class Tracebacks(logging.Handler):
    """Records logged at ERROR or above with a traceback."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.seen.append(record.getMessage())


@pytest.fixture
def tracebacks() -> Iterator[Tracebacks]:
    handler = Tracebacks()
    logger = logging.getLogger("runtime")
    logger.addHandler(handler)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)


@pytest.fixture
def devices() -> Iterator[list[Device]]:
    started: list[Device] = []
    yield started
    for device in started:
        device.stop()


def _register(request_id: int, name: str, address: str) -> bytes:
    fields = {"name": name, "interface": "Camera", "version": 1, "hash": "h", "address": address}
    return json.dumps({"v": 1, "id": request_id, "k": "register", **fields}).encode()


def _replies(sock: zmq.Socket[bytes], ids: set[int], timeout: float = 5.0) -> dict[int, dict[str, Any]]:
    """The reply to each of ``ids`` (every one answered once, no other reply among them)."""
    replies: dict[int, dict[str, Any]] = {}
    deadline = time.monotonic() + timeout
    while len(replies) < len(ids):
        assert sock.poll(max(1, int((deadline - time.monotonic()) * 1000))), f"{len(ids) - len(replies)} unanswered"
        reply = json.loads(sock.recv())
        assert reply["id"] in ids and reply["id"] not in replies, f"an unexpected or second reply: {reply}"
        replies[reply["id"]] = reply
    return replies


def _info(address: str) -> dict[str, Any]:
    with RegistryClient(address) as client:
        return client.request("info")


def test_registrations_in_all_are_bounded() -> None:
    with _registry(max_devices=3).running("tcp://127.0.0.1:0") as address:
        raw = Raw(address)
        try:
            leases = [raw.register(f"d{i}", dead_address())["lease"] for i in range(3)]
            assert raw.register("d3", dead_address())["error"] == "full"
            assert raw.register("d0", dead_address(), lease=leases[0])["name"] == "d0"  # its holder needs no room
            raw.request(k="unregister", lease=leases[1])
            assert raw.register("d3", dead_address())["name"] == "d3"
        finally:
            raw.close()


@pytest.mark.parametrize("bound", ["max_pending", "max_probes"])
def test_registrations_waiting_on_pings_and_the_pings_are_bounded(bound: str) -> None:
    with _registry(**{bound: 2}).running("tcp://127.0.0.1:0") as address:
        raw, flood = Raw(address), Raw(address)
        try:
            for name in "abc":
                raw.register(name, dead_address())  # held by holders that never answer their ping
            for request_id, name in enumerate("abc", start=1):
                flood.socket.send(_register(request_id, name, dead_address()))
            replies = _replies(flood.socket, {1, 2, 3})
            assert replies[3]["error"] == "busy"
            assert [replies[1].get("name"), replies[2].get("name")] == ["a", "b"]  # their holders did not answer
            info = _info(address)
            assert (info["pending"], info["probes"]) == (0, 0)
        finally:
            raw.close()
            flood.close()


_LOW_FILES = """
import resource, sys
resource.setrlimit(resource.RLIMIT_NOFILE, (int(sys.argv[2]), int(sys.argv[2])))
from runtime import Registry
Registry(ttl=5.0, probe_timeout=0.3, max_pending=1000, max_probes=1000).serve(sys.argv[1])
"""


def test_a_ping_that_cannot_be_made_is_answered_busy_once() -> None:
    address = dead_address()
    process = subprocess.Popen(
        [sys.executable, "-c", _LOW_FILES, address, "40"],
        cwd=ROOT,
        stderr=subprocess.PIPE,
        text=True,
    )
    raw, flood = Raw(address), Raw(address)
    try:
        assert raw.request(k="ping", timeout=30.0)["ok"] is True  # up, and connected before the files run out
        flood.request(k="ping")
        names = [f"held-{i}" for i in range(80)]
        for name in names:
            raw.register(name, dead_address())
        for request_id, name in enumerate(names, start=1):
            flood.socket.send(_register(request_id, name, dead_address()))
        replies = _replies(flood.socket, set(range(1, len(names) + 1)))
        outcomes = {reply.get("error", "ok") for reply in replies.values()}
        assert "busy" in outcomes and outcomes <= {"ok", "busy", "superseded"}, outcomes  # superseded: a port twice
        assert raw.request(k="ping")["ok"] is True
    finally:
        raw.close()
        flood.close()
        process.terminate()
        _, stderr = process.communicate(timeout=10)
    assert "Traceback" not in stderr and "internal" not in stderr, stderr[-2000:]


def test_a_flood_of_registrations_is_answered_and_leaves_nothing_behind(
    tracebacks: Tracebacks, devices: list[Device]
) -> None:
    # a holder has a second to answer a probe (a loaded machine's device may take longer than the usual 0.2 s)
    with _registry(max_pending=64, max_probes=32, probe_timeout=1.0).running("tcp://127.0.0.1:0") as address:
        cam = Device(address, "cam")
        devices.append(cam)
        assert cam.name() == "cam"
        latencies: list[float] = []
        found: set[str] = set()
        done = threading.Event()

        def look_up() -> None:
            with RegistryClient(address) as client:
                while not done.is_set():
                    start = time.perf_counter()
                    found.add(client.lookup("cam").address)
                    latencies.append(time.perf_counter() - start)

        looker = threading.Thread(target=look_up)
        looker.start()
        flood = Raw(address)
        other: Device | None = None
        try:
            count, window, sent = 1000, 100, 0
            replies: dict[int, dict[str, Any]] = {}
            while len(replies) < count:  # at most ``window`` in flight: a flood as fast as the registry answers
                while sent < count and sent - len(replies) < window:
                    sent += 1
                    flood.socket.send(_register(sent, "cam" if sent % 3 else f"cam-{sent % 40}", dead_address()))
                if sent == count // 2 and other is None:
                    other = Device(address, "other")  # a device that comes during the flood
                    devices.append(other)
                assert flood.socket.poll(5000), "the registry stopped answering"
                reply = json.loads(flood.socket.recv())
                assert reply["id"] not in replies, f"a second reply: {reply}"
                replies[reply["id"]] = reply
            assert other is not None and other.name() == "other"
            # superseded: a newer register from the same peer for the same address (a free port seen twice)
            assert {reply.get("error", "ok") for reply in replies.values()} <= {"ok", "busy", "superseded"}
        finally:
            done.set()
            looker.join()
            flood.close()
        assert found == {cam.address}, "the name went to another holder while its own answered"
        latencies.sort()
        assert latencies and latencies[int(len(latencies) * 0.99)] < 0.1, f"lookup p99 {latencies[-1]:.3f} s"
        back = threading.Event()
        left: set[str] = {d.name for d in list_devices(registry=address)} - {"cam", "other"}

        def on_change(kind: str, record: Any) -> None:
            (left.discard if kind == "removed" else left.add)(record.name)
            if not left - {"cam", "other"}:
                back.set()

        with watch(on_change, registry=address, initial=False):
            assert back.is_set() or back.wait(20 * TTL), f"flood's entries outlived their leases: {sorted(left)[:5]}"
        info = _info(address)
        assert (info["pending"], info["probes"], info["devices"]) == (0, 0, 2)
        assert not tracebacks.seen, tracebacks.seen[:3]


def _held_reaches(address: str, least: int, seconds: float = 5.0) -> int:
    """The registry's unread reply bytes once they reach ``least`` (asked again until then, ``seconds`` at most)."""
    deadline = time.monotonic() + seconds
    held: int = _info(address)["unread_bytes"]
    while held < least and time.monotonic() < deadline:
        held = _info(address)["unread_bytes"]
    return held


def test_unread_list_replies_are_bounded_in_bytes() -> None:
    page, per_peer, total = 64 * 1024, 128 * 1024, 192 * 1024
    options = {"max_list_bytes": page, "max_unread_bytes": per_peer, "max_unread_total": total, **LONG}
    with _registry(**options).running("tcp://127.0.0.1:0") as address:
        raw = Raw(address)
        greedy: list[zmq.Socket[bytes]] = []

        def flood() -> None:
            sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.setsockopt(zmq.RCVHWM, 1)
            sock.setsockopt(zmq.RCVBUF, 4096)
            sock.connect(address)
            greedy.append(sock)
            for n in range(400):  # 22 MB of replies, never read
                sock.send(json.dumps({"v": 1, "id": n, "k": "list"}).encode())

        try:
            for i in range(300):  # a page of about 55 KB
                raw.register(f"device-{i:03}", dead_address())
            flood()  # one peer meets its own bound
            held = _held_reaches(address, per_peer - page)
            assert per_peer - page <= held <= per_peer, f"{held} bytes held for a peer that does not read"
            while held < total - page and len(greedy) < 8:  # each holds no more than is free: a few meet the total
                flood()
                held = _held_reaches(address, total - page, seconds=1.0)
            held = _held_reaches(address, total - page)  # the last one may still be flooding
            assert total - page <= held <= total, f"{held} bytes held for {len(greedy)} peers that do not read"
            try:  # refused while the registry's bound is met; served once a page has gone out
                list_devices(registry=address)
            except ProtocolError as exc:
                assert "busy" in str(exc), exc
            with RegistryClient(address) as client:
                assert client.lookup("device-001").name == "device-001"  # everything else goes on
        finally:
            for sock in greedy:
                sock.close(0)
        deadline = time.monotonic() + 5
        while (held := _info(address)["unread_bytes"]) and time.monotonic() < deadline:
            pass  # each info lets the registry see the closed connections
        assert held == 0, f"{held} bytes still held for peers that left"
        assert len(list_devices(registry=address)) == 300
        raw.close()


def test_one_peer_that_never_reads_leaves_the_others_room_to_list() -> None:
    page, bound = 64 * 1024, 384 * 1024  # the peer's own bound as large as the registry's
    options = {"max_list_bytes": page, "max_unread_bytes": bound, "max_unread_total": bound, **LONG}
    with _registry(**options).running("tcp://127.0.0.1:0") as address:
        raw = Raw(address)
        greedy: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        try:
            for i in range(300):  # a page of about 55 KB
                raw.register(f"device-{i:03}", dead_address())
            greedy.setsockopt(zmq.RCVHWM, 1)
            greedy.setsockopt(zmq.RCVBUF, 4096)
            greedy.connect(address)
            for n in range(400):
                greedy.send(json.dumps({"v": 1, "id": n, "k": "list"}).encode())
            held = _held_reaches(address, bound // 2 - page)
            assert bound // 2 - page <= held <= bound // 2, f"{held} bytes held for one peer that does not read"
            for _ in range(3):  # the other half is the others'
                assert len(list_devices(registry=address)) == 300
        finally:
            greedy.close(0)
            raw.close()


def test_a_listing_comes_in_pages(tmp_path: Path) -> None:
    with _registry(max_list_bytes=2048, **LONG).running("tcp://127.0.0.1:0") as address:
        raw = Raw(address)
        try:
            names = [f"cam-{i:02}" for i in range(30)]
            for name in reversed(names):
                raw.register(name, dead_address())
            page = raw.request(k="list")
            assert page["more"] is True and 0 < len(page["devices"]) < 30
            rest = raw.request(k="list", after=page["devices"][-1]["name"])
            assert rest["devices"][0]["name"] == names[len(page["devices"])]
            assert [d.name for d in list_devices(registry=address)] == names
            seen: set[str] = set()
            with watch(lambda kind, record: seen.add(record.name), registry=address) as watcher:
                assert watcher.ready.wait(2)
            assert seen == set(names)
        finally:
            raw.close()
