"""What CurveZMQ costs: the same zidl server with and without Curve, side by side, as ratios.

* small call: p50 round trip of a one-int call;
* a 36 MiB ndarray returned by a call, in MB/s (Curve encrypts every byte).

Each server runs in a process of its own; blocks of plain and Curve calls alternate
so a busy machine weighs on both alike. Run: ``.venv/bin/python bench/curve_bench.py``.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from runtime_quick import BIG_SHAPE, BenchClient, BenchServer

from runtime import CurveClient, CurveServer, KeyPair, generate_keypair

SMALL_CALLS = 3000
BIG_CALLS = 12
ROUNDS = 6


def _serve(address: str, keys: tuple[KeyPair, KeyPair] | None, ready: Any) -> None:
    curve = CurveServer(keys[0].secret, allowed=[keys[1].public]) if keys is not None else None
    with BenchServer().running(address, curve=curve) as bound:
        ready.put(bound)
        ready.get()  # the parent says stop


def _start(keys: tuple[KeyPair, KeyPair] | None) -> tuple[multiprocessing.Process, Any, str]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=_serve, args=("tcp://127.0.0.1:0", keys, queue))
    process.start()
    return process, queue, queue.get(timeout=30)


def _measure(client: BenchClient, small: list[float], keep: bool) -> float:
    """One block: small calls into ``small``; returns the seconds the big calls took."""
    for i in range(SMALL_CALLS // ROUNDS):
        start = time.perf_counter()
        client.echo(i)
        if keep:
            small.append(time.perf_counter() - start)
    big = 0.0
    for _ in range(BIG_CALLS // ROUNDS):
        start = time.perf_counter()
        array = client.frame()
        big += time.perf_counter() - start
        assert array.shape == BIG_SHAPE
        del array
    return big if keep else 0.0


def main() -> None:
    server_keys, client_keys = generate_keypair(), generate_keypair()
    plain_process, plain_queue, plain_address = _start(None)
    curve_process, curve_queue, curve_address = _start((server_keys, client_keys))
    curve = CurveClient(server_keys.public, secret_key=client_keys.secret)
    plain_small: list[float] = []
    curve_small: list[float] = []
    plain_big = curve_big = 0.0
    try:
        with BenchClient.connect(plain_address) as plain, BenchClient.connect(curve_address, curve=curve) as secured:
            for round_ in range(ROUNDS + 1):
                keep = round_ > 0  # the first round warms up
                plain_big += _measure(plain, plain_small, keep)
                curve_big += _measure(secured, curve_small, keep)
    finally:
        for queue in (plain_queue, curve_queue):
            queue.put("stop")
        for process in (plain_process, curve_process):
            process.join(30)
    big_bytes = (BIG_CALLS // ROUNDS) * ROUNDS * float(np.prod(BIG_SHAPE))
    plain_latency, curve_latency = statistics.median(plain_small) * 1e6, statistics.median(curve_small) * 1e6
    plain_rate, curve_rate = big_bytes / plain_big / 1e6, big_bytes / curve_big / 1e6
    print(f"{'':24}{'plain':>9}{'Curve':>9}{'ratio':>8}")
    print(f"{'small call p50 (us)':24}{plain_latency:9.1f}{curve_latency:9.1f}{curve_latency / plain_latency:8.2f}")
    print(f"{'36 MiB ndarray (MB/s)':24}{plain_rate:9.0f}{curve_rate:9.0f}{curve_rate / plain_rate:8.2f}")


if __name__ == "__main__":
    main()
