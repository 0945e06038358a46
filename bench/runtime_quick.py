"""Quick runtime benchmark: zidl against raw pyzmq in the same run, printed as ratios.

* small call: p50 round trip of a one-int call, against REQ/REP ``send_json``
  (target: at most 1.3x);
* a 36 MiB ndarray returned by a call, in MB/s, against raw DEALER/ROUTER with
  ``copy=False`` and ``np.frombuffer`` (target: at least 0.9x).

Each server runs in a separate process, pinned to the server CPU, and the client to
the client CPU, as ``bench/run.py`` places them: unpinned, where the scheduler put
the processes moved the raw round trip between 135 and 300 us from one run to the
next. Run: ``.venv/bin/python bench/runtime_quick.py``.
"""

from __future__ import annotations

import multiprocessing
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.harness import CLIENT_CPU, SERVER_CPU
from runtime import Client, FieldSpec, Interface, MethodSpec, NDArray, Server

SMALL_CALLS = 3000
BIG_CALLS = 24
ROUNDS = 6
BIG_SHAPE = (3072, 4096, 3)  # uint8: 36 MiB

BENCH = Interface(
    name="Bench",
    version=1,
    methods=(
        MethodSpec("echo", args=(FieldSpec("value", "int"),), returns=FieldSpec("return", "int")),
        MethodSpec("frame", returns=FieldSpec("return", "ndarray")),
    ),
)


class BenchServer(Server, interface=BENCH):
    def __init__(self) -> None:
        super().__init__()
        self.image = np.random.default_rng(0).integers(0, 255, BIG_SHAPE, dtype=np.uint8)

    def echo(self, value: int) -> int:
        return value

    def frame(self) -> NDArray:
        return self.image


class BenchClient(Client, interface=BENCH):
    def echo(self, value: int, *, timeout: float | None = 10.0) -> int:
        result: int = self._call("echo", {"value": value}, timeout)
        return result

    def frame(self, *, timeout: float | None = 10.0) -> NDArray:
        result: NDArray = self._call("frame", {}, timeout)
        return result


def _zidl_server(address: str, ready: Any) -> None:
    server = BenchServer()
    with server.running(address) as bound:
        ready.put(bound)
        ready.get()  # the parent says stop  # (a second queue item)


def _raw_rep(address: str, ready: Any) -> None:
    ctx = zmq.Context.instance()
    rep = ctx.socket(zmq.REP)
    port = rep.bind_to_random_port(address)
    ready.put(f"{address}:{port}")
    while True:
        message = rep.recv_json()
        rep.send_json(message)
        if message == "stop":
            return


def _raw_router(address: str, ready: Any) -> None:
    ctx = zmq.Context.instance()
    router = ctx.socket(zmq.ROUTER)
    port = router.bind_to_random_port(address)
    image = np.random.default_rng(0).integers(0, 255, BIG_SHAPE, dtype=np.uint8)
    ready.put(f"{address}:{port}")
    while True:
        identity, request = router.recv_multipart()
        if request == b"stop":
            router.send_multipart([identity, b"bye"])
            return
        router.send_multipart([identity, b'{"dtype":"|u1"}', image], copy=False)


def _start(target: Any, address: str) -> tuple[multiprocessing.Process, Any, str]:
    """Start a server on the server CPU (the child and all its threads inherit the affinity at start)."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(address, queue))
    saved = os.sched_getaffinity(0)
    if len(saved) > 1:
        os.sched_setaffinity(0, {SERVER_CPU})
    try:
        process.start()
    finally:
        os.sched_setaffinity(0, saved)
    return process, queue, queue.get(timeout=30)


def _p50(samples: list[float]) -> float:
    return statistics.median(samples) * 1e6


def main() -> None:
    """Alternate short blocks of raw and zidl calls so that a busy machine weighs on both alike."""
    rep_process, _, rep_address = _start(_raw_rep, "tcp://127.0.0.1")
    router_process, _, router_address = _start(_raw_router, "tcp://127.0.0.1")
    zidl_process, zidl_queue, zidl_address = _start(_zidl_server, "tcp://127.0.0.1:0")
    if len(os.sched_getaffinity(0)) > 1:
        os.sched_setaffinity(0, {CLIENT_CPU})
    ctx = zmq.Context.instance()
    req = ctx.socket(zmq.REQ)
    req.connect(rep_address)
    dealer = ctx.socket(zmq.DEALER)
    dealer.connect(router_address)
    raw_small: list[float] = []
    zidl_small: list[float] = []
    raw_big = zidl_big = 0.0
    with BenchClient.connect(zidl_address) as client:
        for round_ in range(ROUNDS + 1):
            keep = round_ > 0  # the first round warms up
            for i in range(SMALL_CALLS // ROUNDS):
                start = time.perf_counter()
                req.send_json({"value": i})
                req.recv_json()
                if keep:
                    raw_small.append(time.perf_counter() - start)
            for i in range(SMALL_CALLS // ROUNDS):
                start = time.perf_counter()
                client.echo(i)
                if keep:
                    zidl_small.append(time.perf_counter() - start)
            for _ in range(BIG_CALLS // ROUNDS):
                start = time.perf_counter()
                dealer.send(b"frame")
                _, data = dealer.recv_multipart(copy=False)
                array = np.frombuffer(data.buffer, dtype=np.uint8).reshape(BIG_SHAPE)
                if keep:
                    raw_big += time.perf_counter() - start
                del array, data
            for _ in range(BIG_CALLS // ROUNDS):
                start = time.perf_counter()
                array = client.frame()
                if keep:
                    zidl_big += time.perf_counter() - start
                assert array.shape == BIG_SHAPE
                del array
    req.send_json("stop")
    req.recv_json()
    dealer.send(b"stop")
    dealer.recv()
    zidl_queue.put("stop")
    for process in (rep_process, router_process, zidl_process):
        process.join()
    req.close(linger=0)
    dealer.close(linger=0)

    big_bytes = (BIG_CALLS // ROUNDS) * ROUNDS * float(np.prod(BIG_SHAPE))
    raw_latency, latency = _p50(raw_small), _p50(zidl_small)
    raw_rate, rate = big_bytes / raw_big / 1e6, big_bytes / zidl_big / 1e6
    print(f"{'':24}{'raw pyzmq':>11}{'zidl':>9}{'ratio':>8}  target")
    print(f"{'small call p50 (us)':24}{raw_latency:11.1f}{latency:9.1f}{latency / raw_latency:8.2f}  <= 1.3")
    print(f"{'36 MiB ndarray (MB/s)':24}{raw_rate:11.0f}{rate:9.0f}{rate / raw_rate:8.2f}  >= 0.9")


if __name__ == "__main__":
    main()
