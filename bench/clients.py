"""The clients that measure: zidl's generated clients and the raw pyzmq baselines, one function per benchmark.

Each runs in a client process (see ``harness.clients``): it connects, says it is
ready, waits for the go, runs every repetition and sends back one figure per
repetition. zidl and its baseline share the loops here (``latencies``,
``throughputs``), so that the only difference between them is the call.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from bench.generated.bench import AsyncBenchClient, BenchClient
from bench.harness import percentile, ready

Repetitions = list[dict[str, float]]


def latencies(call: Callable[[], object], reps: int, calls: int) -> Repetitions:
    """p50 and p99 of one call in µs, and calls/s, for each repetition of ``calls`` calls after a warm-up."""
    for _ in range(max(1, calls // 10)):
        call()
    out = []
    for _ in range(reps):
        times = []
        start = time.perf_counter()
        for _ in range(calls):
            before = time.perf_counter()
            call()
            times.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - start
        out.append(
            {"p50_us": percentile(times, 0.5) * 1e6, "p99_us": percentile(times, 0.99) * 1e6, "per_s": calls / elapsed}
        )
    return out


def throughputs(fetch: Callable[[int], object], sizes: list[int], reps: int, volume: int) -> dict[int, list[float]]:
    """MB/s (10^6 bytes) of fetching each size, about ``volume`` bytes a repetition, after a warm-up."""
    out: dict[int, list[float]] = {}
    for size in sizes:
        count = max(3, volume // size)
        fetch(size)
        fetch(size)
        out[size] = []
        for _ in range(reps):
            start = time.perf_counter()
            for _ in range(count):
                fetch(size)
            out[size].append(size * count / (time.perf_counter() - start) / 1e6)
    return out


def _dealer(address: str) -> zmq.Socket[bytes]:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(address)
    return dealer


def _shape(size: int) -> list[int]:
    """The image shape of a 36 MiB frame (4056x3040x3), else one row of ``size``."""
    return [3040, 4056, 3] if size == 3040 * 4056 * 3 else [size]


# --- the small call, blocking ---------------------------------------------------------------------


def zidl_small(link: Connection, address: str, reps: int, calls: int) -> None:
    with BenchClient.connect(address) as bench:
        ready(link)
        link.send(latencies(lambda: bench.small(3, 0.5), reps, calls))


def raw_small(link: Connection, address: str, reps: int, calls: int) -> None:
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(address)

    def call() -> object:
        req.send_json({"a": 3, "b": 0.5})
        return req.recv_json()

    ready(link)
    link.send(latencies(call, reps, calls))
    req.close()


# --- properties ---------------------------------------------------------------------------------------


def zidl_property(link: Connection, address: str, reps: int, calls: int) -> None:
    with BenchClient.connect(address) as bench:
        values = iter(range(1_000_000_000))

        def write() -> None:
            bench.gain = float(next(values))

        ready(link)
        link.send({"get": latencies(lambda: bench.gain, reps, calls), "set": latencies(write, reps, calls)})


# --- pipelined calls ------------------------------------------------------------------------------------


async def _zidl_pipelined(
    link: Connection, address: str, depths: list[int], reps: int, calls: int
) -> dict[int, list[float]]:
    async with AsyncBenchClient.connect(address) as bench:

        async def worker(count: int) -> None:
            for _ in range(count):
                await bench.small(3, 0.5)

        async def rate(depth: int) -> float:
            start = time.perf_counter()
            await asyncio.gather(*(worker(calls // depth) for _ in range(depth)))
            return depth * (calls // depth) / (time.perf_counter() - start)

        ready(link)
        out: dict[int, list[float]] = {}
        for depth in depths:
            await rate(depth)  # warm-up
            out[depth] = [await rate(depth) for _ in range(reps)]
        return out


def zidl_pipelined(link: Connection, address: str, depths: list[int], reps: int, calls: int) -> None:
    link.send(asyncio.run(_zidl_pipelined(link, address, depths, reps, calls)))


def raw_pipelined(link: Connection, address: str, depths: list[int], reps: int, calls: int) -> None:
    dealer = _dealer(address)
    request = json.dumps({"op": "small", "a": 3, "b": 0.5}).encode()

    def rate(depth: int) -> float:
        start = time.perf_counter()
        for _ in range(depth):
            dealer.send(request)
        sent = depth
        for _ in range(calls):
            json.loads(dealer.recv())
            if sent < calls:
                dealer.send(request)
                sent += 1
        return calls / (time.perf_counter() - start)

    ready(link)
    out: dict[int, list[float]] = {}
    for depth in depths:
        rate(depth)
        out[depth] = [rate(depth) for _ in range(reps)]
    link.send(out)
    dealer.close()


# --- bytes and arrays ------------------------------------------------------------------------------------


def zidl_bytes(link: Connection, address: str, sizes: list[int], reps: int, volume: int) -> None:
    with BenchClient.connect(address) as bench:
        ready(link)
        link.send(throughputs(lambda size: bench.make_bytes(size, timeout=60.0), sizes, reps, volume))


def raw_bytes(link: Connection, address: str, sizes: list[int], reps: int, volume: int) -> None:
    """DEALER/ROUTER multipart; the client ends up with a ``bytes`` object, as zidl's does."""
    dealer = _dealer(address)

    def fetch(size: int) -> bytes:
        dealer.send(json.dumps({"op": "bytes", "size": size}).encode())
        _header, data = dealer.recv_multipart()
        return data

    ready(link)
    link.send(throughputs(fetch, sizes, reps, volume))
    dealer.close()


def zidl_array(link: Connection, address: str, sizes: list[int], reps: int, volume: int) -> None:
    with BenchClient.connect(address) as bench:
        ready(link)
        link.send(throughputs(lambda size: bench.make_array(_shape(size), timeout=60.0), sizes, reps, volume))


def raw_array(link: Connection, address: str, sizes: list[int], reps: int, volume: int) -> None:
    """DEALER/ROUTER multipart received with ``copy=False``, the array rebuilt over the frame by ``np.frombuffer``."""
    dealer = _dealer(address)

    def fetch(size: int) -> np.ndarray[Any, Any]:
        dealer.send(json.dumps({"op": "array", "shape": _shape(size)}).encode())
        header, data = dealer.recv_multipart(copy=False)
        described = json.loads(header.bytes)
        return np.frombuffer(data.buffer, dtype=described["dtype"]).reshape(described["shape"])

    ready(link)
    link.send(throughputs(fetch, sizes, reps, volume))
    dealer.close()


# --- signals ----------------------------------------------------------------------------------------------


class Counter:
    """Counts the events of one burst and notes when the last one arrived (CLOCK_MONOTONIC, shared by processes)."""

    def __init__(self) -> None:
        self.expected = 0
        self.received = 0
        self.last = 0.0
        self.done = threading.Event()

    def arm(self, expected: int) -> None:
        self.expected, self.received = expected, 0
        self.done.clear()

    def on_tick(self, seq: int) -> None:
        self.received += 1
        self.last = time.monotonic()
        if self.received >= self.expected:
            self.done.set()

    def wait(self, quiet: float = 2.0) -> tuple[int, float]:
        """(events received, when the last arrived), once all came or none came for ``quiet`` seconds."""
        seen = -1
        while not self.done.wait(quiet) and self.received != seen:
            seen = self.received
        return self.received, self.last


def _subscribe(link: Connection, counter: Counter) -> None:
    """The parent sends a count per burst; answer "armed", then (received, last) once the burst is over."""
    link.send("ready")
    while True:
        counter.arm(link.recv())
        link.send("armed")
        link.send(counter.wait())


def zidl_subscriber(link: Connection, address: str) -> None:
    with BenchClient.connect(address) as bench:
        counter = Counter()
        bench.tick.connect(counter.on_tick)
        _subscribe(link, counter)


def raw_subscriber(link: Connection, address: str) -> None:
    """A SUB socket read by a thread; raw PUB/SUB cannot tell when a subscription is live, so it waits 0.5 s."""
    sub = zmq.Context.instance().socket(zmq.SUB)
    sub.setsockopt(zmq.LINGER, 0)
    sub.setsockopt(zmq.RCVHWM, 0)
    sub.setsockopt(zmq.SUBSCRIBE, b"tick")
    sub.connect(address)
    counter = Counter()

    def read() -> None:
        while True:
            _topic, message = sub.recv_multipart()
            counter.on_tick(json.loads(message)["seq"])

    threading.Thread(target=read, daemon=True).start()
    time.sleep(0.5)
    _subscribe(link, counter)
