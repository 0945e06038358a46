"""Benchmark: a registry holding 1,000 devices that heartbeat every second.

What it simulates, honestly: the registry runs in a process of its own, exactly as
``zidl registry`` would. The 1,000 devices are simulated by one other process that
owns ``--sockets`` DEALERs (default 100, ten devices each) that register, and as
many again connected to the heartbeat socket the register reply names, as a
``Registration`` does; it sends every device's heartbeat there once a second,
spread evenly over the second, asking for an answer every other second as a
``Registration`` does at the default lease, and reads every reply; real devices
would be 1,000 processes with a connection each, which costs the registry more
file descriptors but the same work per heartbeat. Device addresses are distinct
and names unique, so no holder probes run.

Measured: the registry process's CPU use (psutil, user+system) over a window with
only heartbeats, as a percentage of one core; then lookup latency p50 (a
``RegistryClient`` reusing its socket, and the one-shot ``lookup()`` that connects
each time) while the heartbeats go on, beside a raw pyzmq DEALER->ROUTER JSON round
trip to an echo process measured in the same run. Targets: under 10 % of one core;
lookup within 2x raw.

    .venv/bin/python bench/registry_bench.py [--devices 1000] [--seconds 10]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import zmq

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from runtime.registry import Registry, RegistryClient, lookup  # noqa: E402
from runtime.transport.addresses import connectable  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def serve_registry(address: str) -> None:
    if os.environ.get("ZIDL_BENCH_PROFILE"):
        os.execv(sys.executable, [sys.executable, os.environ["ZIDL_BENCH_PROFILE"], address, "20"])
    Registry(ttl=3.0).serve(address)


def echo(address: str) -> None:
    """The raw baseline: a ROUTER that parses a JSON request and answers a small JSON reply."""
    router: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(address)
    while True:
        ident, body = router.recv_multipart()
        request = json.loads(body)
        router.send_multipart([ident, json.dumps({"v": 1, "id": request["id"], "ok": True}).encode()])


def _dealers(address: str, count: int, poller: zmq.Poller) -> list[zmq.Socket[bytes]]:
    socks: list[zmq.Socket[bytes]] = []
    for _ in range(count):
        s: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 0)
        s.connect(address)
        socks.append(s)
        poller.register(s, zmq.POLLIN)
    return socks


def simulate(address: str, devices: int, sockets: int) -> None:
    """Register ``devices`` devices over ``sockets`` DEALERs, then heartbeat each once a second."""
    poller = zmq.Poller()
    socks = _dealers(address, sockets, poller)
    leases: list[str] = [""] * devices
    heartbeats = ""
    for i in range(devices):
        request = {
            "v": 1,
            "id": i,
            "k": "register",
            "name": f"dev-{i}",
            "interface": "Camera",
            "version": 1,
            "hash": "0" * 16,
            "address": f"tcp://10.{i // 65536}.{(i // 256) % 256}.{i % 256}:5000",
        }
        socks[i % sockets].send(json.dumps(request).encode())
    pending = devices
    while pending:
        for s, _ in poller.poll(5000):
            while True:
                try:
                    reply = json.loads(s.recv(zmq.NOBLOCK))
                except zmq.Again:
                    break
                leases[reply["id"]] = reply.get("lease", "")  # the echo baseline gives none
                heartbeats = reply.get("heartbeats", "")  # nor a heartbeat socket
                pending -= 1
    if heartbeats:
        socks = _dealers(connectable(heartbeats), sockets, poller)
    print("registered", flush=True)
    messages = [json.dumps({"v": 1, "id": i, "k": "heartbeat", "lease": leases[i]}).encode() for i in range(devices)]
    # A Registration at the default lease (heartbeat 1 s, ttl 3 s) asks for an answer every other heartbeat.
    asking = [
        json.dumps({"v": 1, "id": i, "k": "heartbeat", "lease": leases[i], "ack": True}).encode()
        for i in range(devices)
    ]
    replies = unknown = 0
    start = time.monotonic()
    report = start + 5.0
    sent = 0
    while True:
        due = int((time.monotonic() - start) * devices)  # heartbeats that should have gone by now
        while sent < due:
            i = sent % devices
            socks[i % sockets].send((asking if (sent // devices) % 2 else messages)[i])
            sent += 1
        for s, _ in poller.poll(1):
            while True:
                try:
                    raw = s.recv(zmq.NOBLOCK)
                except zmq.Again:
                    break
                replies += 1
                if b'"ok":false' in raw:
                    unknown += 1
        if time.monotonic() >= report:
            report += 5.0
            print(f"simulator: heartbeats sent={sent} replies={replies} errors={unknown}", file=sys.stderr, flush=True)


def _wait_for_devices(address: str, count: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    with RegistryClient(address) as client:
        while time.monotonic() < deadline:
            if client.request("info").get("devices") == count:
                return
            time.sleep(0.1)
    raise SystemExit(f"the registry did not reach {count} devices")


def _p50_us(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--sockets", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--role", choices=["registry", "simulate", "echo"], help=argparse.SUPPRESS)
    parser.add_argument("--address", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "registry":
        return serve_registry(args.address)
    if args.role == "echo":
        return echo(args.address)
    if args.role == "simulate":
        return simulate(args.address, args.devices, args.sockets)

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    me = [sys.executable, __file__]
    reg_address = f"tcp://127.0.0.1:{_free_port()}"
    echo_address = f"tcp://127.0.0.1:{_free_port()}"
    procs: list[subprocess.Popen[Any]] = []
    try:
        registry = subprocess.Popen([*me, "--role", "registry", "--address", reg_address], env=env)
        procs.append(registry)
        procs.append(subprocess.Popen([*me, "--role", "echo", "--address", echo_address], env=env))
        time.sleep(0.5)
        simulator = subprocess.Popen(
            [
                *me,
                "--role",
                "simulate",
                "--address",
                reg_address,
                "--devices",
                str(args.devices),
                "--sockets",
                str(args.sockets),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(simulator)
        assert simulator.stdout is not None
        simulator.stdout.readline()
        _wait_for_devices(reg_address, args.devices, 30)
        time.sleep(2.0)  # let the heartbeat rhythm settle

        reg_ps, sim_ps = psutil.Process(registry.pid), psutil.Process(simulator.pid)
        reg0, sim0, t0 = reg_ps.cpu_times(), sim_ps.cpu_times(), time.monotonic()
        time.sleep(args.seconds)
        reg1, sim1, t1 = reg_ps.cpu_times(), sim_ps.cpu_times(), time.monotonic()
        reg_cpu = (reg1.user + reg1.system - reg0.user - reg0.system) / (t1 - t0) * 100
        sim_cpu = (sim1.user + sim1.system - sim0.user - sim0.system) / (t1 - t0) * 100

        # The floor: the same heartbeat load against the raw echo process.
        echo_sim = subprocess.Popen(
            [
                *me,
                "--role",
                "simulate",
                "--address",
                echo_address,
                "--devices",
                str(args.devices),
                "--sockets",
                str(args.sockets),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(echo_sim)
        assert echo_sim.stdout is not None
        echo_sim.stdout.readline()
        simulator.terminate()  # one load at a time on this machine
        time.sleep(2.0)
        echo_ps = psutil.Process(procs[1].pid)
        e0, t0 = echo_ps.cpu_times(), time.monotonic()
        time.sleep(args.seconds)
        e1, t1 = echo_ps.cpu_times(), time.monotonic()
        echo_cpu = (e1.user + e1.system - e0.user - e0.system) / (t1 - t0) * 100
        echo_sim.terminate()
        echo_sim.wait(5)
        simulator = subprocess.Popen(
            [
                *me,
                "--role",
                "simulate",
                "--address",
                reg_address,
                "--devices",
                str(args.devices),
                "--sockets",
                str(args.sockets),
            ],
            env=env,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(simulator)
        assert simulator.stdout is not None
        simulator.stdout.readline()  # registered again under fresh addresses: the old ones are replaced
        time.sleep(1.0)

        with RegistryClient(reg_address) as client:
            for _ in range(200):
                client.lookup("dev-1")
            samples = []
            for i in range(args.lookups):
                start = time.perf_counter()
                client.lookup(f"dev-{i % args.devices}")
                samples.append(time.perf_counter() - start)
        lookup_p50 = _p50_us(samples)
        one_shot = []
        for i in range(min(500, args.lookups)):
            start = time.perf_counter()
            lookup(f"dev-{i % args.devices}", registry=reg_address)
            one_shot.append(time.perf_counter() - start)
        one_shot_p50 = _p50_us(one_shot)

        raw: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(echo_address)
        raw_samples = []
        for i in range(200 + args.lookups):
            start = time.perf_counter()
            raw.send(json.dumps({"v": 1, "id": i, "k": "lookup", "name": f"dev-{i % args.devices}"}).encode())
            json.loads(raw.recv())
            if i >= 200:
                raw_samples.append(time.perf_counter() - start)
        raw.close(0)
        raw_p50 = _p50_us(raw_samples)

        print(f"devices heartbeating once a second: {args.devices} (over {args.sockets} DEALERs in one process)")
        print(f"registry CPU: {reg_cpu:.1f} % of one core over {t1 - t0:.1f} s (target < 10 %)")
        print(f"simulator CPU: {sim_cpu:.1f} % of one core (for reference)")
        print(f"raw pyzmq JSON echo process under the same heartbeat load: {echo_cpu:.1f} % of one core (the floor)")
        print(f"raw pyzmq DEALER/ROUTER JSON round trip p50: {raw_p50:.0f} us")
        print(
            f"lookup p50 (RegistryClient, socket reused): {lookup_p50:.0f} us"
            f" = {lookup_p50 / raw_p50:.2f}x raw (target < 2x)"
        )
        print(
            f"lookup p50 (one-shot lookup(), connects each time): {one_shot_p50:.0f} us"
            f" = {one_shot_p50 / raw_p50:.2f}x raw"
        )
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                proc.kill()


if __name__ == "__main__":
    main()
