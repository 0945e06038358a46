"""What the bridge costs: the same device called directly and through a bridge, in one run, as ratios.

* small call p50 (aim: at most 1.6x direct, one more hop), beside what a hop costs at the least: raw REQ/REP
  through ``zmq.proxy`` against raw REQ/REP direct;
* bytes of 1 MiB and 36 MiB and a 36 MiB ndarray returned by a call, MB/s (aim: 0.9x direct at 36 MiB), and a
  stream of 36 MiB ndarray items, whose items are in flight together;
* signals: a burst to 10 subscribers through the bridge, against the device's own publisher to 10 (what the
  bridge costs) and to 1 (the aim: 0.9x, 0 lost; on one machine the 10 subscriber processes share a core).

The device (``bench.servers.Bench``, registered in registry A) runs in a process of its
own on the server CPU, the clients on the client CPU (``bench.harness``), and the
bridge (A to B) in a process of its own on the client CPU (``ZIDL_BRIDGE_CPU=1``: the
server's); the bridged client finds the device by name in B. Repetitions of
the bridged and the direct client are taken in turns. Run:
``.venv/bin/python bench/bridge_bench.py`` (``--quick`` for fewer repetitions).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import zmq

from bench import clients, servers, streams
from bench.generated.bench import BenchClient
from bench.harness import CLIENT_CPU, Clients, Figure, children, measure, server
from bench.run import IMAGE, MIB, Row, burst, compared, key, machine, table
from bench.servers import Bench
from runtime import Bridge, Registry, lookup_device

BIND = "tcp://127.0.0.1:0"
SUBSCRIBERS = 10
SHAPE = [3040, 4056, 3]
STREAMED = 12
"""36 MiB items of one repetition of the stream: items are in flight together (the credit window), calls are not."""
BRIDGE_CPU = int(os.environ.get("ZIDL_BRIDGE_CPU", CLIENT_CPU))
"""The bridge's CPU: beside the clients, which wait while it works (on a third host it would have its own)."""


def device(link: Connection, address: str, registry: str) -> None:
    """The device, registered in registry A as ``bench``."""
    with Bench().running(address, registry=registry, name="bench") as bound:
        link.send(bound)
        link.recv()


def raw_proxy(link: Connection, upstream: str) -> None:
    """What a hop costs at the least: ``zmq.proxy`` (libzmq's own loop, in C) from a ROUTER to a DEALER."""
    context = zmq.Context.instance()
    front, back = context.socket(zmq.ROUTER), context.socket(zmq.DEALER)
    front.bind(BIND)
    back.connect(upstream)
    link.send(front.getsockopt_string(zmq.LAST_ENDPOINT))
    zmq.proxy(front, back)


def bridge(link: Connection, registry: str, to: str) -> None:
    with Bridge(registry, to, bind=BIND).running() as running:
        link.send(running.names)
        link.recv()


@contextlib.contextmanager
def bridged() -> Iterator[tuple[str, str]]:
    """The device's address, and its address through the bridge (as found in registry B)."""
    with (
        Registry(ttl=60.0).running(BIND) as a,  # in the parent, which the clients' CPU keeps busy: long leases
        Registry(ttl=60.0).running(BIND) as b,
        server(device, BIND, a) as direct,
        children(bridge, (a, b), cpu=BRIDGE_CPU) as (child,),
    ):
        names = child.receive()
        assert names == {"bench": "bench"}, names
        yield direct, lookup_device("bench", registry=b).address


def rows(reps: int, calls: int, volume: int, events: int) -> list[Row]:
    sizes = [MIB, IMAGE]
    with (
        server(servers.rep_server, BIND) as rep,
        children(raw_proxy, (rep,), cpu=BRIDGE_CPU) as (proxy,),
        bridged() as (direct, through),
    ):
        raw, raw_direct = (
            {"tcp": figures}
            for figures in measure(
                [Clients(clients.raw_small, (proxy.receive(), calls)), Clients(clients.raw_small, (rep, calls))], reps
            )
        )
        small, small_direct, data, data_direct, arrays, arrays_direct, items, items_direct = (
            {"tcp": figures}
            for figures in measure(
                [
                    Clients(clients.zidl_small, (through, calls)),
                    Clients(clients.zidl_small, (direct, calls)),
                    Clients(clients.zidl_bytes, (through, sizes, volume)),
                    Clients(clients.zidl_bytes, (direct, sizes, volume)),
                    Clients(clients.zidl_array, (through, [IMAGE], volume)),
                    Clients(clients.zidl_array, (direct, [IMAGE], volume)),
                    Clients(streams.zidl_array_stream, (through, SHAPE, STREAMED)),
                    Clients(streams.zidl_array_stream, (direct, SHAPE, STREAMED)),
                ],
                reps,
            )
        )
        with BenchClient.connect(direct) as driver:

            def trigger(count: int) -> None:
                driver.burst(count, timeout=60.0)

            signals = burst(clients.zidl_subscriber, through, SUBSCRIBERS, events, reps, trigger)
            signals_many = burst(clients.zidl_subscriber, direct, SUBSCRIBERS, events, reps, trigger)
            signals_one = burst(clients.zidl_subscriber, direct, 1, events, reps, trigger)
    base = "the same, direct"

    def at(size: int) -> Callable[[list[dict[int, float]]], list[float]]:
        return lambda reps: [rep[size] for rep in reps]

    return [
        compared("zmq.proxy: raw small call p50", "µs", "raw REQ/REP, direct", raw, raw_direct, key("p50_us")),
        compared("bridged: small call p50", "µs", base, small, small_direct, key("p50_us")),
        compared("bridged: small call p99", "µs", base, small, small_direct, key("p99_us")),
        compared("bridged: bytes 1 MiB", "MB/s", base, data, data_direct, at(MIB)),
        compared("bridged: bytes 36 MiB (4056x3040x3)", "MB/s", base, data, data_direct, at(IMAGE)),
        compared("bridged: ndarray 36 MiB (4056x3040x3)", "MB/s", base, arrays, arrays_direct, at(IMAGE)),
        compared("bridged: stream of 36 MiB ndarray items", "MB/s", base, items, items_direct, key("per_s")),
        *(
            row
            for baseline, direct_signals in (
                (f"the device's publisher to {SUBSCRIBERS}, direct", signals_many),
                ("the device's publisher to 1, direct", signals_one),
            )
            for row in (
                Row(
                    f"bridged: signals to {SUBSCRIBERS} subscribers",
                    "events/s",
                    baseline,
                    {"tcp": Figure.of(signals["rates"])},
                    {"tcp": Figure.of(direct_signals["rates"])},
                ),
                Row(
                    f"bridged: signals lost, {SUBSCRIBERS} subscribers",
                    "events",
                    baseline,
                    {"tcp": Figure.of(signals["lost"])},
                    {"tcp": Figure.of(direct_signals["lost"])},
                ),
            )
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer repetitions")
    options = parser.parse_args()
    os.sched_setaffinity(0, {CLIENT_CPU})  # the parent drives the signal bursts as a client
    started = time.monotonic()
    reps = 5 if options.quick else 9
    measured = rows(reps, calls=1000, volume=300_000_000 if not options.quick else 150_000_000, events=20_000)
    about = machine()
    print(
        f"\n{about['cpu']}, {about['cores']} cores, {about['system']}, Python {about['python']}, "
        f"pyzmq {about['pyzmq']}, libzmq {about['libzmq']}, {about['date']}, {time.monotonic() - started:.0f} s"
    )
    print(f"Placement: {about['pinning']}; the bridge on CPU {BRIDGE_CPU}. Medians of {reps} repetitions.\n")
    print(table(measured, ["tcp"]))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
