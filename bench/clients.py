"""The clients that measure: zidl's generated clients and the raw pyzmq baselines, one function per benchmark.

Each runs in a client process (see ``harness.measure``): it connects, warms up,
says it is ready, then measures one repetition each time the parent says go
(``goes``, ``answer``), so that the parent can alternate zidl's repetitions with its
baseline's. zidl and its baseline share the loops here (``latency``,
``throughput``), so that the only difference between them is the call.
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
from bench.harness import goes, percentile

Repetition = Callable[[], Any]


def answer(link: Connection, repetition: Repetition) -> None:
    """Say ready, then send the figures of one repetition each time the parent says go."""
    for _ in goes(link):
        link.send(repetition())


def latency(call: Callable[[], object], calls: int) -> Repetition:
    """After a warm-up, a repetition of ``calls`` calls: p50 and p99 of one call in µs, and calls/s."""
    for _ in range(max(1, calls // 10)):
        call()

    def repetition() -> dict[str, float]:
        times = []
        start = time.perf_counter()
        for _ in range(calls):
            before = time.perf_counter()
            call()
            times.append(time.perf_counter() - before)
        elapsed = time.perf_counter() - start
        return {
            "p50_us": percentile(times, 0.5) * 1e6,
            "p99_us": percentile(times, 0.99) * 1e6,
            "per_s": calls / elapsed,
        }

    return repetition


def throughput(fetch: Callable[[int], object], sizes: list[int], volume: int) -> Repetition:
    """After a warm-up, a repetition: MB/s (10^6 bytes) of fetching each size, about ``volume`` bytes of each."""
    for size in sizes:
        fetch(size)
        fetch(size)

    def repetition() -> dict[int, float]:
        out: dict[int, float] = {}
        for size in sizes:
            count = max(3, volume // size)
            start = time.perf_counter()
            for _ in range(count):
                fetch(size)
            out[size] = size * count / (time.perf_counter() - start) / 1e6
        return out

    return repetition


def _dealer(address: str) -> zmq.Socket[bytes]:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(address)
    return dealer


def _shape(size: int) -> list[int]:
    """The image shape of a 36 MiB frame (4056x3040x3), else one row of ``size``."""
    return [3040, 4056, 3] if size == 3040 * 4056 * 3 else [size]


# --- the small call, blocking ---------------------------------------------------------------------


def zidl_small(link: Connection, address: str, calls: int) -> None:
    with BenchClient.connect(address) as bench:
        answer(link, latency(lambda: bench.small(3, 0.5), calls))


def raw_small(link: Connection, address: str, calls: int) -> None:
    req = zmq.Context.instance().socket(zmq.REQ)
    req.setsockopt(zmq.LINGER, 0)
    req.connect(address)

    def call() -> object:
        req.send_json({"a": 3, "b": 0.5})
        return req.recv_json()

    answer(link, latency(call, calls))
    req.close()


# --- properties ---------------------------------------------------------------------------------------


def zidl_property(link: Connection, address: str, calls: int) -> None:
    with BenchClient.connect(address) as bench:
        values = iter(range(1_000_000_000))

        def write() -> None:
            bench.gain = float(next(values))

        get, set_ = latency(lambda: bench.gain, calls), latency(write, calls)
        answer(link, lambda: {"get": get(), "set": set_()})


# --- pipelined calls ------------------------------------------------------------------------------------


async def _zidl_pipelined(link: Connection, address: str, depths: list[int], calls: int) -> None:
    async with AsyncBenchClient.connect(address) as bench:

        async def worker(count: int) -> None:
            for _ in range(count):
                await bench.small(3, 0.5)

        async def rate(depth: int) -> float:
            start = time.perf_counter()
            await asyncio.gather(*(worker(calls // depth) for _ in range(depth)))
            return depth * (calls // depth) / (time.perf_counter() - start)

        for depth in depths:
            await rate(depth)  # warm-up
        for _ in goes(link):  # the loop blocks waiting for the parent between repetitions: nothing is in flight then
            link.send({depth: await rate(depth) for depth in depths})


def zidl_pipelined(link: Connection, address: str, depths: list[int], calls: int) -> None:
    asyncio.run(_zidl_pipelined(link, address, depths, calls))


def raw_pipelined(link: Connection, address: str, depths: list[int], calls: int) -> None:
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

    for depth in depths:
        rate(depth)  # warm-up
    answer(link, lambda: {depth: rate(depth) for depth in depths})
    dealer.close()


# --- bytes and arrays ------------------------------------------------------------------------------------


def zidl_bytes(link: Connection, address: str, sizes: list[int], volume: int) -> None:
    with BenchClient.connect(address) as bench:
        answer(link, throughput(lambda size: bench.make_bytes(size, timeout=60.0), sizes, volume))


def raw_bytes(link: Connection, address: str, sizes: list[int], volume: int) -> None:
    """DEALER/ROUTER multipart; the client ends up with a ``bytes`` object, as zidl's does."""
    dealer = _dealer(address)

    def fetch(size: int) -> bytes:
        dealer.send(json.dumps({"op": "bytes", "size": size}).encode())
        _header, data = dealer.recv_multipart()
        return data

    answer(link, throughput(fetch, sizes, volume))
    dealer.close()


def zidl_array(link: Connection, address: str, sizes: list[int], volume: int) -> None:
    with BenchClient.connect(address) as bench:
        answer(link, throughput(lambda size: bench.make_array(_shape(size), timeout=60.0), sizes, volume))


def raw_array(link: Connection, address: str, sizes: list[int], volume: int) -> None:
    """DEALER/ROUTER multipart received with ``copy=False``, the array rebuilt over the frame by ``np.frombuffer``."""
    dealer = _dealer(address)

    def fetch(size: int) -> np.ndarray[Any, Any]:
        dealer.send(json.dumps({"op": "array", "shape": _shape(size)}).encode())
        header, data = dealer.recv_multipart(copy=False)
        described = json.loads(header.bytes)
        return np.frombuffer(data.buffer, dtype=described["dtype"]).reshape(described["shape"])

    answer(link, throughput(fetch, sizes, volume))
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
