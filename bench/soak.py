"""A soak: normal traffic from several clients while greedy and lying peers take turns against one device and one
registry; the device's and the registry's resident memory sampled every second.

    python bench/soak.py                 # 20 minutes, then the table
    python bench/soak.py --minutes 2     # a short one
    python bench/soak.py --json          # the figures as one JSON object

The device (``Bench``, registered as ``soak``), the registry, each legitimate client
and the attacker run in processes of their own. A legitimate client checks every
answer (results, the registry's address of ``soak``), so a stolen name or a wrong
reply counts as a failed call. The attacks are those of issue 14, each at a size that
takes seconds, one after the other in a loop; each one leaves when it is done.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import statistics
import sys
import threading
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generated.bench import BenchClient
from bench.harness import CLIENT_CPU, SERVER_CPU, Child, children
from bench.servers import Bench
from runtime import Registry, list_devices
from runtime.protocol.messages import hello_body
from runtime.registry import RegistryClient

DEVICE = "soak"
LEGITIMATE_CLIENTS = 3
PACE = 0.005
"""Seconds a legitimate client rests between two rounds of calls."""
MIB = 1024 * 1024
WARM_UP = 10.0
"""Seconds of legitimate traffic alone before the baseline RSS is read."""


def serve_registry(link: Connection) -> None:
    with Registry().running("tcp://127.0.0.1:0") as address:
        link.send((address, os.getpid()))
        link.recv()


def serve_device(link: Connection, registry: str) -> None:
    with Bench().running("tcp://127.0.0.1:0", registry=registry, name=DEVICE) as address:
        link.send((address, os.getpid()))
        link.recv()


def legitimate(link: Connection, registry: str, device: str) -> None:
    """Rounds of calls, each answer checked, until the parent says "done"; sends (calls, failures, latencies)."""
    calls, failures, latencies = 0, list[str](), list[float]()
    stop = threading.Event()

    def until_done() -> None:
        link.recv()
        stop.set()

    threading.Thread(target=until_done, daemon=True).start()
    link.send("ready")
    with BenchClient.connect(device, timeout=5.0) as client, RegistryClient(registry, timeout=5.0) as directory:
        while not stop.is_set():
            start = time.perf_counter()
            try:
                assert client.small(3, 0.5) == {"sum": 3.5, "product": 1.5}
                client.gain = 2.0
                assert client.gain == 2.0
                assert len(client.make_bytes(64 * 1024)) == 64 * 1024
                assert directory.lookup(DEVICE).address == device
                if calls % 20 == 0:
                    assert [item["sum"] for item in client.stream_small(5)] == [3.5] * 5
                    assert DEVICE in {record.name for record in list_devices(registry=registry, timeout=5.0)}
            except Exception as exc:  # every failure is a finding: counted and described
                failures.append(f"{type(exc).__name__}: {exc}"[:200])
            latencies.append(time.perf_counter() - start)
            calls += 1
            stop.wait(PACE)
    link.send((calls, failures, latencies))


# --- the attacks ------------------------------------------------------------------------------------


class Peer:
    """The attacker's raw sockets, each closed as it leaves."""

    def __init__(self) -> None:
        self.context: zmq.Context[zmq.Socket[bytes]] = zmq.Context.instance()
        self.made: list[zmq.Socket[bytes]] = []

    def socket(self, kind: int, address: str, **options: int) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self.context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name), value)
        sock.connect(address)
        self.made.append(sock)
        return sock

    def leave(self) -> None:
        for sock in self.made:
            sock.close(linger=0)
        self.made.clear()


def _header(request_id: Any, kind: str, name: str | None, body: Any = None, **fields: Any) -> bytes:
    return json.dumps({"v": 1, "id": request_id, "k": kind, "n": name, "b": body, **fields}).encode()


@contextlib.contextmanager
def _dealer(address: str) -> Iterator[zmq.Socket[bytes]]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(address)
    try:
        yield sock
    finally:
        sock.close()


def _answered(sock: zmq.Socket[bytes], ids: set[Any], timeout: float = 30.0) -> int:
    """Read replies until each of ``ids`` is answered or ``timeout`` passes; how many went unanswered."""
    waiting, give_up = set(ids), time.monotonic() + timeout
    while waiting and sock.poll(max(1, int((give_up - time.monotonic()) * 1000))):
        header = json.loads(sock.recv_multipart()[0])
        waiting.discard(header.get("id"))
    return len(waiting)


def many_frames(peer: Peer, where: dict[str, str]) -> int:
    sock = peer.socket(zmq.DEALER, where["device"])
    for n in range(3):
        sock.send_multipart([_header(n, "call", "small", {"a": 1, "b": 1.0}), *([b"x"] * 300_000)])
    return _answered(sock, {0, 1, 2})


def big_header(peer: Peer, where: dict[str, str]) -> int:
    sock = peer.socket(zmq.DEALER, where["device"])
    padding = "x" * (50 * MIB)
    for n in range(3):
        sock.send(_header(n, "call", "small", {"a": 1, "b": 1.0, "pad": padding}))
    return _answered(sock, {0, 1, 2})


def backlog_flood(peer: Peer, where: dict[str, str]) -> int:
    sock = peer.socket(zmq.DEALER, where["device"], SNDHWM=0)
    padding = "y" * (64 * 1024)
    ids = set(range(8000))
    for n in ids:
        sock.send(_header(n, "call", "small", {"a": n, "b": 1.0}, pad=padding))
    return _answered(sock, ids)


def unread_replies(peer: Peer, where: dict[str, str]) -> int:
    for _ in range(4):
        sock = peer.socket(zmq.DEALER, where["device"], RCVHWM=1, RCVBUF=4096, SNDHWM=0)
        for n in range(1500):
            sock.send(_header(n, "call", "make_bytes", {"size": MIB}))
    with _dealer(where["device"]) as probe:
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up:  # hold the replies unread while the device goes on answering others
            probe.send(_header(0, "get", "gain"))
            if not probe.poll(5000):
                return 1
            probe.recv_multipart()
    return 0


def subscriptions(peer: Peer, where: dict[str, str]) -> int:
    sock = peer.socket(zmq.XSUB, where["signals"], SNDHWM=0)
    rng = random.Random(1)
    for _ in range(200_000):
        sock.send(b"\x01" + rng.randbytes(rng.randrange(1, 48)))
    return 0


def lying_numbers(peer: Peer, where: dict[str, str]) -> int:
    sock = peer.socket(zmq.DEALER, where["device"], SNDHWM=0)
    ids = set(range(3000))
    for n in ids:
        case = n % 5
        if case == 0:
            sock.send_multipart([_header(n, "call", "make_array", {"shape": {"$a": [1, "<u2", [10**30, 0]]}}), b""])
        elif case == 1:
            sock.send(_header(n, "call", "small", {"a": 1, "b": 1.0}, t=10**999))
        elif case == 2:
            sock.send(json.dumps({"v": random.choice([0, 2, "1", None]), "id": n, "k": "get", "n": "gain"}).encode())
        elif case == 3:
            sock.send(f'{{"v": 1, "id": {n}, "k": "set", "n": "gain", "b": NaN}}'.encode())
        else:
            sock.send(_header(n, "call", "make_bytes", {"size": 2**70}))
    return _answered(sock, ids)


def streams_unread(peer: Peer, where: dict[str, str]) -> int:
    for _ in range(3):
        sock = peer.socket(zmq.DEALER, where["device"], RCVHWM=1, RCVBUF=4096, SNDHWM=0)
        for n in range(400):
            sock.send(_header(n, "stream", "forever", {}, c=64))
    with _dealer(where["device"]) as probe:
        probe.send(_header(0, "get", "gain"))
        return 0 if probe.poll(5000) else 1


def idle_connections(peer: Peer, where: dict[str, str]) -> int:
    for _ in range(500):
        peer.socket(zmq.DEALER, where["device"])
    for _ in range(200):
        peer.socket(zmq.DEALER, where["registry"])
    return 0


def registration_flood(peer: Peer, where: dict[str, str]) -> int:
    sock = peer.socket(zmq.DEALER, where["registry"], SNDHWM=0)
    unanswered, window, sent, received = 0, 100, 0, 0
    while received < 2000:
        while sent < 2000 and sent - received < window:
            sent += 1
            address = f"tcp://127.0.0.1:{random.randrange(20000, 60000)}"
            name = DEVICE if sent % 4 == 0 else f"flood-{sent}"
            fields = {"name": name, "interface": "Bench", "version": 1, "hash": "h", "address": address}
            if sent % 8 == 0:
                fields["takeover"] = True  # the legitimate clients check that the name stays with its holder
            sock.send(json.dumps({"v": 1, "id": sent, "k": "register", "lease": 86400, **fields}).encode())
        if not sock.poll(10_000):
            return sent - received + unanswered
        sock.recv()
        received += 1
    return unanswered


def unread_listings(peer: Peer, where: dict[str, str]) -> int:
    for _ in range(2):
        sock = peer.socket(zmq.DEALER, where["registry"], RCVHWM=1, RCVBUF=4096, SNDHWM=0)
        for n in range(300):
            sock.send(json.dumps({"v": 1, "id": n, "k": "list"}).encode())
    with RegistryClient(where["registry"], timeout=5.0) as directory:
        return 0 if directory.lookup(DEVICE).address == where["device"] else 1


ATTACKS: list[Callable[[Peer, dict[str, str]], int]] = [
    many_frames,
    big_header,
    backlog_flood,
    unread_replies,
    subscriptions,
    lying_numbers,
    streams_unread,
    idle_connections,
    registration_flood,
    unread_listings,
]


def attacker(link: Connection, where: dict[str, str]) -> None:
    """The attacks in turn, each leaving before the next, until told "done"; sends each attack's rounds and the
    requests with an id that went unanswered."""
    rounds = dict.fromkeys((attack.__name__ for attack in ATTACKS), 0)
    unanswered = dict(rounds)
    link.send("ready")
    peer = Peer()
    for attack in _turns():
        if link.poll(0):
            break
        try:
            unanswered[attack.__name__] += attack(peer, where)
        finally:
            peer.leave()
        rounds[attack.__name__] += 1
        time.sleep(1.0)  # the device lets go of what the attack held while the legitimate clients go on
    link.recv()
    link.send((rounds, unanswered))


def _turns() -> Iterator[Callable[[Peer, dict[str, str]], int]]:
    while True:
        yield from ATTACKS


# --- the parent: processes, samples, the table ------------------------------------------------------


def _rss(pid: int) -> int:
    with open(f"/proc/{pid}/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _hello(device: str) -> str:
    """The device's signal address, from its handshake."""
    with _dealer(device) as sock:
        sock.send(_header(1, "hello", None, hello_body(None)))
        assert sock.poll(5000), "the device did not answer its handshake"
        return str(json.loads(sock.recv_multipart()[0])["b"]["signals"])


def soak(minutes: float) -> dict[str, Any]:
    with children(serve_registry, (), cpu=SERVER_CPU) as (registry_process,):
        registry, registry_pid = registry_process.receive()
        with children(serve_device, (registry,), cpu=SERVER_CPU) as (device_process,):
            device, device_pid = device_process.receive()
            where = {"device": device, "signals": _hello(device), "registry": registry}
            pids = {"device": device_pid, "registry": registry_pid}
            samples: dict[str, list[int]] = {name: [] for name in pids}
            with children(legitimate, (registry, device), count=LEGITIMATE_CLIENTS, cpu=CLIENT_CPU) as clients:
                for client in clients:
                    client.receive()
                time.sleep(WARM_UP)  # the legitimate traffic alone, before the baseline is read
                baseline = {name: _rss(pid) for name, pid in pids.items()}
                with children(attacker, (where,), cpu=CLIENT_CPU) as (attack,):
                    attack.receive()
                    end = time.monotonic() + minutes * 60
                    while time.monotonic() < end:
                        if attack.link.poll(0):
                            attack.receive()  # the attacker failed: raises with its message
                        for name, pid in pids.items():
                            samples[name].append(_rss(pid))
                        time.sleep(1.0)
                    attack.link.send("done")
                    rounds, unanswered = attack.receive(timeout=120.0)
                results = _legitimate_results(clients)
    return {
        "minutes": minutes,
        "memory": {name: _memory(baseline[name], samples[name]) for name in pids},
        "legitimate": results,
        "attack_rounds": rounds,
        "unanswered": unanswered,
    }


def _legitimate_results(clients: list[Child]) -> dict[str, Any]:
    calls, failures, latencies = 0, list[str](), list[float]()
    for client in clients:
        client.link.send("done")
    for client in clients:
        made, failed, timed = client.receive(timeout=60.0)
        calls, failures, latencies = calls + made, failures + failed, latencies + timed
    latencies.sort()
    return {
        "rounds": calls,
        "failed": len(failures),
        "first_failures": failures[:5],
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1000, 2),
        "max_ms": round(latencies[-1] * 1000, 2),
    }


def _memory(baseline: int, samples: list[int]) -> dict[str, float]:
    """The peak against the baseline, and the growth: the attacks come round every minute or so, so the last ten
    minutes' peak is compared with the ten before, and the last sample with the one a minute and ten minutes back."""
    half = len(samples) // 2
    window = min(600, half)
    return {
        "baseline_mib": round(baseline / MIB, 1),
        "max_mib": round(max(samples) / MIB, 1),
        "max_over_baseline_mib": round((max(samples) - baseline) / MIB, 1),
        "last_minute_growth_mib": round((samples[-1] - samples[-min(60, len(samples))]) / MIB, 1),
        "last_ten_minutes_growth_mib": round((samples[-1] - samples[-min(600, len(samples))]) / MIB, 1),
        "peak_growth_mib": round((max(samples[-window:]) - max(samples[-2 * window : -window])) / MIB, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = soak(args.minutes)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"soak of {figures['minutes']} minutes (device and registry RSS sampled every second)")
    for name, memory in figures["memory"].items():
        print(f"  {name:8} " + ", ".join(f"{key} {value}" for key, value in memory.items()))
    legit = figures["legitimate"]
    print(
        f"  legitimate rounds {legit['rounds']}, failed {legit['failed']}, p50 {legit['p50_ms']} ms, "
        f"p99 {legit['p99_ms']} ms, max {legit['max_ms']} ms"
    )
    for failure in legit["first_failures"]:
        print(f"    {failure}")
    print("  attack rounds " + ", ".join(f"{name} {count}" for name, count in figures["attack_rounds"].items()))
    print(f"  requests with an id left unanswered: {sum(figures['unanswered'].values())}")


if __name__ == "__main__":
    main()
