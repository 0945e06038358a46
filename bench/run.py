"""zidl against raw pyzmq and the peers, in one run: one table, and the figures in bench/results.json.

    python bench/run.py            # the whole suite, about 5 minutes; writes bench/results.json
    python bench/run.py --quick    # a reduced suite, under a minute
    python bench/run.py --quick --json   # the reduced suite as one JSON object, for checks

Servers and clients each run in a process of their own (see ``bench.harness`` for
how they are pinned); every figure is the median of several repetitions, with
their spread, beside its baseline measured in the same run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import clients, peers, servers, streams
from bench.generated.bench import BenchClient
from bench.harness import (
    CLIENT_CPU,
    GLIBC_NO_MMAP,
    BenchmarkFailed,
    Clients,
    Figure,
    children,
    measure,
    pinning,
    server,
)

MIB = 1024 * 1024
IMAGE = 4056 * 3040 * 3
"""A 4056x3040x3 uint8 image: 36 MiB (35.3 MiB exactly)."""
RESULTS = Path(__file__).resolve().parent / "results.json"


@dataclass(frozen=True)
class Settings:
    reps: int
    calls: int
    depths: list[int]
    pipelined_calls: int
    sizes: list[int]
    volume: int
    burst: int
    subscribers: list[int]
    transports: list[str]
    extended: bool
    """Four clients, properties, the peers and the MALLOC_MMAP_MAX_ opt-in."""
    stream_items: int = 20_000
    """Small items in one repetition of the small-item stream."""
    stream_arrays: int = 12
    """36 MiB items in one repetition of the ndarray stream."""
    cancels: int = 200
    slow_bytes: int = 2 * 1024 * MIB
    """Streamed to the slow reader (50 ms an item) while the server's RSS is watched."""
    slow_reps: int = 3


QUICK = Settings(
    11, 600, [32], 6000, [MIB, IMAGE], 150_000_000, 10_000, [1], ["tcp"], False, 5000, 6, 100, 360 * MIB, 1
)
FULL = Settings(
    7, 2000, [1, 8, 32, 128], 6000, [MIB, 8 * MIB, IMAGE], 300_000_000, 20_000, [1, 10], ["tcp", "ipc"], True
)
SLOW_READER_PAUSE = 0.05
"""Seconds the slow reader takes over each item."""


@dataclass
class Row:
    """One line of the table: a figure per transport beside its baseline's.

    ``pairs`` holds, per transport, the ratio of each repetition to the baseline's
    repetition measured next to it; the row's ratio is their median. A row whose
    baseline was measured elsewhere in the run (the peers, the properties) has none,
    and its ratio is that of the medians.
    """

    name: str
    unit: str
    baseline: str
    measured: dict[str, Figure]
    base: dict[str, Figure] = field(default_factory=dict)
    pairs: dict[str, Figure] = field(default_factory=dict)

    def ratio(self, transport: str) -> float | None:
        if transport in self.pairs:
            return self.pairs[transport].median
        if transport not in self.measured or transport not in self.base or not self.base[transport].median:
            return None
        return self.measured[transport].median / self.base[transport].median

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "baseline": self.baseline,
            "measured": {t: f.as_dict() for t, f in self.measured.items()},
            "base": {t: f.as_dict() for t, f in self.base.items()},
            "ratio": {t: self.ratio(t) for t in self.measured},
            "ratio_of_pairs": {t: f.as_dict() for t, f in self.pairs.items()},
        }


PerTransport = dict[str, Any]


def figures(results: PerTransport, pick: Callable[[Any], list[float]]) -> dict[str, Figure]:
    return {transport: Figure.of(pick(result)) for transport, result in results.items()}


def compared(
    name: str, unit: str, baseline: str, zidl: PerTransport, raw: PerTransport, pick: Callable[[Any], list[float]]
) -> Row:
    """A row of zidl's repetitions against the baseline's, taken in turns: their medians and the ratio of each pair."""
    pairs = {}
    for transport, result in zidl.items():
        ratios = [z / r for z, r in zip(pick(result), pick(raw[transport]), strict=True) if r]
        if ratios:
            pairs[transport] = Figure.of(ratios)
    return Row(name, unit, baseline, figures(zidl, pick), figures(raw, pick), pairs)


def key(name: str) -> Callable[[Any], list[float]]:
    """The values of ``name`` in a list of repetitions."""
    return lambda reps: [rep[name] for rep in reps]


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Suite:
    """The benchmarks, each a method returning its rows; servers are started once per transport and shared."""

    def __init__(self, settings: Settings, addresses: dict[str, dict[str, Any]]) -> None:
        self.s = settings
        self.addresses = addresses
        self.rows: list[Row] = []
        self.summary: dict[str, float] = {}
        self.failed: list[str] = []

    def against(
        self, zidl: Callable[..., None], raw: Callable[..., None], raw_server: str, *args: Any, count: int = 1
    ) -> tuple[PerTransport, PerTransport]:
        """zidl's client against its server and the baseline's against ``raw_server``, repetitions taken in turns,
        on every transport. Per transport, the figures of each repetition (see ``harness.measure``)."""
        zidl_out: PerTransport = {}
        raw_out: PerTransport = {}
        for transport, addresses in self.addresses.items():
            zidl_out[transport], raw_out[transport] = measure(
                [Clients(zidl, (addresses["zidl"], *args), count), Clients(raw, (addresses[raw_server], *args), count)],
                self.s.reps,
            )
        return zidl_out, raw_out

    def add(self, row: Row, summary: str | None = None) -> Row:
        self.rows.append(row)
        progress(f"{row.name}: " + ", ".join(f"{t} {f.median:,.1f}" for t, f in row.measured.items()))
        if summary is not None and (ratio := row.ratio("tcp")) is not None:
            self.summary[summary] = round(ratio, 3)
        return row

    def row(self, name: str) -> Row:
        """The row called ``name``, measured earlier in this run."""
        return next(row for row in self.rows if row.name == name)

    def small_call(self) -> None:
        zidl, raw = self.against(clients.zidl_small, clients.raw_small, "rep", self.s.calls)
        base = "raw REQ/REP send_json"
        p50 = self.add(compared("small call p50", "µs", base, zidl, raw, key("p50_us")), "small_call_p50_ratio")
        self.add(compared("small call p99", "µs", base, zidl, raw, key("p99_us")))
        rate = self.add(compared("small call, blocking", "calls/s", base, zidl, raw, key("per_s")))
        self.summary["small_call_p50_us"] = round(p50.measured["tcp"].median, 1)
        self.summary["raw_req_rep_p50_us"] = round(p50.base["tcp"].median, 1)
        self.summary["small_call_per_s"] = round(rate.measured["tcp"].median)

    def pipelined(self) -> None:
        zidl, raw = self.against(
            clients.zidl_pipelined, clients.raw_pipelined, "router", self.s.depths, self.s.pipelined_calls
        )
        for depth in self.s.depths:
            row = self.add(
                compared(
                    f"pipelined, {depth} in flight (async)",
                    "calls/s",
                    "raw DEALER/ROUTER, same depth",
                    zidl,
                    raw,
                    lambda reps, d=depth: [rep[d] for rep in reps],
                ),
                f"pipelined_{depth}_ratio",
            )
            if depth == 32 and "small_call_per_s" in self.summary:
                self.summary["pipelined_32_over_blocking"] = round(
                    row.measured["tcp"].median / self.summary["small_call_per_s"], 2
                )

    def four_clients(self) -> None:
        zidl, raw = self.against(clients.zidl_small, clients.raw_small, "rep", self.s.calls // 2, count=4)

        def total(reps: list[list[dict[str, float]]]) -> list[float]:
            return [sum(process["per_s"] for process in rep) for rep in reps]

        self.add(compared("four blocking clients at once", "calls/s", "4 raw REQ clients", zidl, raw, total))

    def properties(self) -> None:
        """Property read and write round trips, beside the raw REQ/REP small call of this run."""
        zidl = {
            transport: measure([Clients(clients.zidl_property, (addresses["zidl"], self.s.calls))], self.s.reps)[0]
            for transport, addresses in self.addresses.items()
        }
        raw = self.row("small call p50").base
        for operation in ("get", "set"):
            self.add(
                Row(
                    f"property {operation} p50",
                    "µs",
                    "raw REQ/REP send_json",
                    figures(zidl, lambda r, o=operation: [rep[o]["p50_us"] for rep in r]),
                    raw,
                )
            )

    def transfers(self, env: dict[str, str] | None = None, sizes: list[int] | None = None) -> None:
        """bytes and ndarray MB/s; with ``env``, over servers and clients started with it (tcp only)."""
        sizes = sizes or self.s.sizes
        args = (sizes, self.s.volume)
        suffix = "".join(f", {name}={value}" for name, value in (env or {}).items())
        if env is None:
            zidl_bytes, raw_bytes = self.against(clients.zidl_bytes, clients.raw_bytes, "router", *args)
            zidl_array, raw_array = self.against(clients.zidl_array, clients.raw_array, "router", *args)
        else:
            with (
                server(servers.zidl_server, "tcp://127.0.0.1:0", env=env) as zidl,
                server(servers.router_server, "tcp://127.0.0.1:0", env=env) as router,
            ):
                zidl_bytes, raw_bytes, zidl_array, raw_array = (
                    {"tcp": figures}
                    for figures in measure(
                        [
                            Clients(clients.zidl_bytes, (zidl, *args)),
                            Clients(clients.raw_bytes, (router, *args)),
                            Clients(clients.zidl_array, (zidl, *args)),
                            Clients(clients.raw_array, (router, *args)),
                        ],
                        self.s.reps,
                        env=env,
                    )
                )
        for size in sizes:
            label = "36 MiB (4056x3040x3)" if size == IMAGE else f"{size // MIB} MiB"
            name = "36mib" if size == IMAGE else f"{size // MIB}mib"

            def at(reps: list[dict[int, float]], n: int = size) -> list[float]:
                return [rep[n] for rep in reps]

            self.add(
                compared(
                    f"bytes {label}{suffix}", "MB/s", "raw DEALER/ROUTER multipart, bytes", zidl_bytes, raw_bytes, at
                ),
                None if env else f"bytes_{name}_ratio",
            )
            if size == IMAGE:
                self.add(
                    compared(
                        f"ndarray {label}{suffix}",
                        "MB/s",
                        "raw DEALER/ROUTER copy=False + np.frombuffer",
                        zidl_array,
                        raw_array,
                        at,
                    ),
                    None if env else f"ndarray_{name}_ratio",
                )

    def signals(self) -> None:
        """Bursts of ``tick`` to 1 (and 10) subscriber processes (tcp): events/s until the last arrives, and losses."""
        zidl_address = self.addresses["tcp"]["zidl"]
        publisher, control = self.addresses["tcp"]["publisher"]
        raw_control = zmq.Context.instance().socket(zmq.REQ)
        raw_control.connect(control)

        def raw_trigger(count: int) -> None:
            raw_control.send_json(count)
            raw_control.recv_json()

        with BenchClient.connect(zidl_address) as driver:
            for subscribers in self.s.subscribers:
                zidl = burst(
                    clients.zidl_subscriber,
                    zidl_address,
                    subscribers,
                    self.s.burst,
                    self.s.reps,
                    lambda count: driver.burst(count, timeout=60.0),
                )
                raw = burst(clients.raw_subscriber, publisher, subscribers, self.s.burst, self.s.reps, raw_trigger)
                label = f"{subscribers} subscriber{'s' if subscribers > 1 else ''}"
                rate = self.add(
                    Row(
                        f"signals to {label}",
                        "events/s",
                        "raw PUB/SUB",
                        {"tcp": Figure.of(zidl["rates"])},
                        {"tcp": Figure.of(raw["rates"])},
                    )
                )
                self.add(
                    Row(
                        f"signals lost, {label}",
                        "events",
                        "raw PUB/SUB",
                        {"tcp": Figure.of(zidl["lost"])},
                        {"tcp": Figure.of(raw["lost"])},
                    )
                )
                if subscribers == 1:
                    self.summary["signals_per_s"] = round(rate.measured["tcp"].median)
                self.summary["signals_lost"] = self.summary.get("signals_lost", 0) + int(sum(zidl["lost"]))
        raw_control.close(linger=0)

    def streams(self) -> None:
        """Streams (tcp), each against a raw DEALER/ROUTER stream with the same credit window, served alike."""
        shape = [3040, 4056, 3]
        s = self.s
        with (
            server(servers.zidl_server, "tcp://127.0.0.1:0") as zidl,
            server(streams.raw_stream_server, "tcp://127.0.0.1:0") as raw,
        ):
            measured = measure(
                [
                    Clients(streams.zidl_small_stream, (zidl, s.stream_items)),
                    Clients(streams.raw_small_stream, (raw, s.stream_items)),
                    Clients(streams.zidl_array_stream, (zidl, shape, s.stream_arrays)),
                    Clients(streams.raw_array_stream, (raw, shape, s.stream_arrays)),
                    Clients(streams.zidl_cancel, (zidl, s.cancels)),
                    Clients(streams.raw_cancel, (raw, s.cancels)),
                ],
                s.reps,
            )
            small, raw_small, array, raw_array, cancel, raw_cancel = ({"tcp": reps} for reps in measured)
            slow_count = max(1, s.slow_bytes // IMAGE)
            slow, raw_slow = (
                {"tcp": reps}
                for reps in measure(
                    [
                        Clients(streams.zidl_slow_reader, (zidl, shape, slow_count, SLOW_READER_PAUSE)),
                        Clients(streams.raw_slow_reader, (raw, shape, slow_count, SLOW_READER_PAUSE)),
                    ],
                    s.slow_reps,
                )
            )
        base = "raw DEALER/ROUTER stream, same credit window"
        small_row = compared("stream of small items", "items/s", base, small, raw_small, key("per_s"))
        self.add(small_row, "stream_small_ratio")
        self.add(
            compared("stream of 36 MiB ndarray items", "MB/s", base, array, raw_array, key("per_s")),
            "stream_ndarray_36mib_ratio",
        )
        p50 = self.add(compared("cancel to generator closed p50", "ms", base, cancel, raw_cancel, key("p50_ms")))
        p99 = self.add(compared("cancel to generator closed p99", "ms", base, cancel, raw_cancel, key("p99_ms")))
        rss = self.add(
            compared(
                f"server RSS, {slow_count} x 36 MiB to a reader taking 50 ms an item",
                "MiB",
                base,
                slow,
                raw_slow,
                key("rss_mib"),
            )
        )
        self.summary["cancel_p50_ms"] = round(p50.measured["tcp"].median, 2)
        self.summary["cancel_p99_ms"] = round(p99.measured["tcp"].median, 2)
        self.summary["slow_reader_rss_mib"] = round(rss.measured["tcp"].high)

    def opt_in(self) -> None:
        """The 36 MiB transfers again, server and client processes started with ``MALLOC_MMAP_MAX_=0``."""
        self.transfers(env=GLIBC_NO_MMAP, sizes=[IMAGE])

    def peers(self) -> None:
        """The peers' small call and 36 MiB bytes (tcp), against the raw baselines of this run."""
        with peers.grpc_stubs() as stubs:
            self.compare_peers(stubs)

    def compare_peers(self, stubs: str) -> None:
        small_base = self.row("small call p50").base
        rate_base = self.row("small call, blocking").base
        bytes_base = self.row("bytes 36 MiB (4056x3040x3)").base
        for peer in peers.available():
            progress(f"{peer}...")
            with server(peers.SERVERS[peer], stubs) as address:
                small, fetched = measure(
                    [
                        Clients(peers.peer_small, (peer, address, stubs, self.s.calls // 3)),
                        Clients(peers.peer_bytes, (peer, address, stubs, [IMAGE], self.s.volume)),
                    ],
                    self.s.reps,
                )
            self.add(
                Row(
                    f"{peer}: small call p50",
                    "µs",
                    "raw REQ/REP send_json",
                    {"tcp": Figure.of(key("p50_us")(small))},
                    {"tcp": small_base["tcp"]},
                )
            )
            self.add(
                Row(
                    f"{peer}: small call",
                    "calls/s",
                    "raw REQ/REP send_json",
                    {"tcp": Figure.of(key("per_s")(small))},
                    {"tcp": rate_base["tcp"]},
                )
            )
            self.add(
                Row(
                    f"{peer}: bytes 36 MiB",
                    "MB/s",
                    "raw DEALER/ROUTER multipart, bytes",
                    {"tcp": Figure.of([rep[IMAGE] for rep in fetched])},
                    {"tcp": bytes_base["tcp"]},
                )
            )


def burst(
    subscriber: Callable[..., None], address: str, count: int, events: int, reps: int, trigger: Callable[[int], None]
) -> dict[str, list[float]]:
    """Per repetition, events/s until the last subscriber has the last event, and how many events were lost."""
    out: dict[str, list[float]] = {"rates": [], "lost": []}
    with children(subscriber, (address,), count=count, cpu=CLIENT_CPU) as subscribers:
        for child in subscribers:
            child.receive()
        for _ in range(reps):
            for child in subscribers:
                child.link.send(events)
            for child in subscribers:
                child.receive()
            start = time.monotonic()
            trigger(events)
            results = [child.receive(timeout=120.0) for child in subscribers]
            last = max(when for _received, when in results)
            out["rates"].append(events / (last - start) if last > start else 0.0)
            out["lost"].append(float(sum(events - received for received, _when in results)))
    return out


@contextlib.contextmanager
def servers_for(transports: list[str]) -> Iterator[dict[str, dict[str, Any]]]:
    """zidl, REP, ROUTER (and on tcp the PUB) servers per transport, for the whole run."""
    with contextlib.ExitStack() as stack:
        folder = stack.enter_context(tempfile.TemporaryDirectory(prefix="zidl-bench-"))
        addresses: dict[str, dict[str, Any]] = {}
        for transport in transports:

            def where(name: str, t: str = transport) -> str:
                return "tcp://127.0.0.1:0" if t == "tcp" else f"ipc://{folder}/{name}"

            addresses[transport] = {
                "zidl": stack.enter_context(server(servers.zidl_server, where("zidl"))),
                "rep": stack.enter_context(server(servers.rep_server, where("rep"))),
                "router": stack.enter_context(server(servers.router_server, where("router"))),
            }
        addresses["tcp"]["publisher"] = stack.enter_context(server(servers.publisher_server, "tcp://127.0.0.1:0"))
        yield addresses


def machine() -> dict[str, Any]:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "pyzmq": zmq.pyzmq_version(),
        "libzmq": zmq.zmq_version(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "pinning": pinning(),
    }


def cell(figure: Figure | None) -> str:
    if figure is None:
        return ""
    digits = 0 if figure.median >= 100 else 1
    return f"{figure.median:,.{digits}f} ±{figure.spread * 50:.0f}%"


def table(rows: list[Row], transports: list[str]) -> str:
    head = ["benchmark", "unit", "baseline"]
    for transport in transports:
        head += [f"{transport}: measured", f"{transport}: baseline", f"{transport}: ratio"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for row in rows:
        cells = [row.name, row.unit, row.baseline]
        for transport in transports:
            ratio = row.ratio(transport)
            pairs = row.pairs.get(transport)
            spread = f" ±{pairs.spread * 50:.0f}%" if pairs is not None else ""
            usable = ratio is not None and row.unit != "events"
            cells += [
                cell(row.measured.get(transport)),
                cell(row.base.get(transport)),
                f"{ratio:.2f}x{spread}" if usable else "",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="a reduced suite that runs in under a minute")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object instead of the table")
    options = parser.parse_args()
    settings = QUICK if options.quick else FULL
    os.sched_setaffinity(0, {CLIENT_CPU})  # the parent drives the signal bursts as a client
    started = time.monotonic()
    with servers_for(settings.transports) as addresses:
        suite = Suite(settings, addresses)
        benchmarks = [suite.small_call, suite.pipelined, suite.transfers, suite.signals, suite.streams]
        if settings.extended:
            benchmarks += [suite.four_clients, suite.properties, suite.opt_in, suite.peers]
        for benchmark in benchmarks:
            try:
                benchmark()
            except BenchmarkFailed as exc:
                progress(f"FAILED {benchmark.__name__}: {exc}")
                suite.failed.append(f"{benchmark.__name__}: {exc}")
    progress(f"done in {time.monotonic() - started:.0f} s")
    about = machine()
    if not options.quick:
        results = {
            "machine": about,
            "summary": suite.summary,
            "failed": suite.failed,
            "rows": [row.as_dict() for row in suite.rows],
        }
        RESULTS.write_text(json.dumps(results, indent=2) + "\n")
    if options.json:
        print(json.dumps({**suite.summary, "failed": suite.failed}))
        return
    print(
        f"\n{about['cpu']}, {about['cores']} cores, {about['system']}, Python {about['python']}, "
        f"pyzmq {about['pyzmq']}, libzmq {about['libzmq']}, {about['date']}"
    )
    print(
        f"Placement: {about['pinning']}. Medians of {settings.reps} repetitions, zidl's and the baseline's taken "
        "in turns; a ratio is the median of the ratios of those pairs; ± is half the range.\n"
    )
    print(table(suite.rows, settings.transports))
    print("\n" + json.dumps({**suite.summary, "failed": suite.failed}))


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        main()
