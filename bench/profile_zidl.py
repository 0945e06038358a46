"""Where a zidl small call spends its time, client side and server side, and how many thread hops it makes.

    python bench/profile_zidl.py [--calls 5000] [--top 25]

The server runs in a process of its own on the server CPU with every Python thread
it starts under its own ``cProfile`` (``threading.Thread.run`` is wrapped before the
server starts); the client runs in this process on the client CPU, under
``cProfile`` too (the blocking client makes no thread hop of its own). Context
switches per call, from ``/proc``, count the hops: they are printed beside those of
the raw REQ/REP baseline, which makes none.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import os
import pstats
import sys
import tempfile
import threading
from multiprocessing.connection import Connection
from pathlib import Path

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.generated.bench import AsyncBenchClient, BenchClient
from bench.harness import CLIENT_CPU, SERVER_CPU, children
from bench.servers import Bench, rep_server


def profiled_server(link: Connection, address: str, stats_path: str) -> None:
    """``zidl_server`` with each thread profiled; the merged stats go to ``stats_path`` when the parent says stop."""
    profiles: list[cProfile.Profile] = []
    original = threading.Thread.run

    def run(thread: threading.Thread) -> None:
        profile = cProfile.Profile()
        profiles.append(profile)
        profile.runcall(original, thread)

    threading.Thread.run = run  # type: ignore[method-assign]
    with Bench().running(address) as bound:
        link.send((bound, os.getpid()))
        link.recv()
    threading.Thread.run = original  # type: ignore[method-assign]
    pstats.Stats(*profiles).dump_stats(stats_path)
    link.send("dumped")


def report(stats: pstats.Stats, top: int, title: str) -> str:
    out = io.StringIO()
    stats.stream = out  # type: ignore[attr-defined]
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return f"=== {title} ===\n{out.getvalue()}"


def switches(pid: int) -> int:
    """Context switches so far of every thread of ``pid`` (ZeroMQ's I/O thread included)."""
    total = 0
    for status in Path(f"/proc/{pid}/task").glob("*/status"):
        with contextlib.suppress(FileNotFoundError):
            total += sum(int(line.split()[1]) for line in status.read_text().splitlines() if "ctxt_switches" in line)
    return total


def per_call(pid: int, call: object, calls: int) -> float:
    """Context switches of process ``pid`` per call of ``call``."""
    assert callable(call)
    before = switches(pid)
    for _ in range(calls):
        call()
    return (switches(pid) - before) / calls


async def pipelined(address: str, depth: int, calls: int) -> None:
    """``calls`` small calls from one async client, ``depth`` in flight."""
    async with AsyncBenchClient.connect(address) as bench:

        async def worker() -> None:
            for _ in range(calls // depth):
                await bench.small(3, 0.5)

        await asyncio.gather(*(worker() for _ in range(depth)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--depth", type=int, default=32, help="calls in flight for the async client's profile")
    parser.add_argument("--top", type=int, default=25)
    options = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CPU})
    me = os.getpid()

    with children(rep_server, ("tcp://127.0.0.1:0",), cpu=SERVER_CPU) as (rep,):
        req = zmq.Context.instance().socket(zmq.REQ)
        req.connect(rep.receive())

        def raw_call() -> object:
            req.send_json({"a": 3, "b": 0.5})
            return req.recv_json()

        raw_call()
        raw_switches = per_call(rep.process.pid or 0, raw_call, options.calls), per_call(me, raw_call, options.calls)
        req.close(linger=0)

    blocking, asynchronous = cProfile.Profile(), cProfile.Profile()
    with tempfile.TemporaryDirectory() as folder:
        stats_path = f"{folder}/server.prof"
        with children(profiled_server, ("tcp://127.0.0.1:0", stats_path), cpu=SERVER_CPU) as (child,):
            address, pid = child.receive()
            with BenchClient.connect(address) as bench:
                bench.small(3, 0.5)
                zidl_switches = (
                    per_call(pid, lambda: bench.small(3, 0.5), options.calls),
                    per_call(me, lambda: bench.small(3, 0.5), options.calls),
                )
                blocking.runcall(lambda: [bench.small(3, 0.5) for _ in range(options.calls)])
            asynchronous.runcall(asyncio.run, pipelined(address, options.depth, options.calls))
            child.link.send("stop")
            child.receive()
            server_stats = pstats.Stats(stats_path)

    print(report(pstats.Stats(blocking), options.top, f"blocking client, {options.calls} small calls, by own time"))
    title = f"async client, {options.calls} small calls, {options.depth} in flight, by own time"
    print(report(pstats.Stats(asynchronous), options.top, title))
    print(report(server_stats, options.top, f"server, all threads, all {4 * options.calls + 2} calls, by own time"))
    print("=== context switches per blocking small call (all threads; server, client) ===")
    print(f"raw REQ/REP: {raw_switches[0]:.2f}, {raw_switches[1]:.2f}")
    print(f"zidl:        {zidl_switches[0]:.2f}, {zidl_switches[1]:.2f}")


if __name__ == "__main__":
    main()
