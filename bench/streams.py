"""The stream benchmarks: zidl's streams against a raw DEALER/ROUTER stream with the same credit window.

The raw server (``raw_stream_server``) speaks a small protocol of its own: a JSON
request ``{"op": "small" | "arrays" | "forever", "credit": 8, ...}`` opens a stream
whose items it sends only against credit, ``{"op": "credit", "n": 4}`` grants more,
``{"op": "cancel"}`` ends it (recording when), ``{"op": "closed_at"}`` and
``{"op": "rss"}`` ask what it saw. Its reader grants credit as zidl's does: the
window is zidl's ``WINDOW``, granted again every ``GRANT`` items. Each client
function runs in a client process (``harness.measure``), as those of ``clients``.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from bench.clients import answer
from bench.generated.bench import BenchClient
from bench.harness import percentile
from bench.servers import arrays, small_result
from runtime.client.streaming import GRANT, WINDOW

# --- the raw server --------------------------------------------------------------------------------------


class _RawStream:
    def __init__(self, items: Iterator[list[Any]], credit: int) -> None:
        self.items = items
        self.credit = credit


def raw_stream_server(link: Connection, address: str) -> None:
    router = zmq.Context.instance().socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    router.bind(address)
    link.send(router.getsockopt_string(zmq.LAST_ENDPOINT))
    streams: dict[bytes, _RawStream] = {}
    closed_at = 0.0
    seen = [0]

    def forever() -> Iterator[list[Any]]:
        count = 0
        while True:
            yield [json.dumps(count).encode()]
            count += 1

    while True:
        if not any(stream.credit for stream in streams.values()) or router.poll(0):
            identity, request = router.recv_multipart()
            message = json.loads(request)
            op = message["op"]
            if op == "small":
                items = ([json.dumps(small_result(3, 0.5)).encode()] for _ in range(message["count"]))
                streams[identity] = _RawStream(items, message["credit"])
            elif op == "arrays":
                made = arrays(message["count"], message["shape"], message["fresh"], seen)
                items = ([json.dumps({"dtype": a.dtype.str, "shape": a.shape}).encode(), a] for a in made)
                streams[identity] = _RawStream(items, message["credit"])
            elif op == "forever":
                streams[identity] = _RawStream(forever(), message["credit"])
            elif op == "credit" and identity in streams:
                streams[identity].credit += message["n"]
            elif op == "cancel" and identity in streams:
                streams.pop(identity).items.close()  # type: ignore[attr-defined]
                closed_at = time.monotonic()
            elif op == "closed_at":
                router.send_multipart([identity, b"closed_at", json.dumps(closed_at).encode()])
            elif op == "rss":
                router.send_multipart([identity, json.dumps(seen[0]).encode()])
            continue
        for identity, stream in list(streams.items()):
            while stream.credit:
                item = next(stream.items, None)
                if item is None:
                    router.send_multipart([identity, b"end"])
                    del streams[identity]
                    break
                stream.credit -= 1
                router.send_multipart([identity, *item], copy=False)


class _RawReader:
    """A raw stream's reader: grants credit as it takes items, as zidl's does."""

    def __init__(self, dealer: zmq.Socket[bytes], request: dict[str, Any]) -> None:
        self.dealer = dealer
        dealer.send_json({**request, "credit": WINDOW})
        self.taken = 0

    def __iter__(self) -> Iterator[list[zmq.Frame]]:
        while True:
            frames = self.dealer.recv_multipart(copy=False)
            if frames[0].bytes == b"end":
                return
            self.taken += 1
            if self.taken >= GRANT:
                self.dealer.send_json({"op": "credit", "n": self.taken})
                self.taken = 0
            yield frames


def _dealer(address: str) -> zmq.Socket[bytes]:
    dealer = zmq.Context.instance().socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    dealer.connect(address)
    return dealer


def _rate(read: Callable[[], int], unit: float) -> Callable[[], dict[str, float]]:
    read()

    def repetition() -> dict[str, float]:
        start = time.perf_counter()
        amount = read()
        return {"per_s": amount * unit / (time.perf_counter() - start)}

    return repetition


# --- the clients ----------------------------------------------------------------------------------------


def zidl_small_stream(link: Connection, address: str, count: int) -> None:
    with BenchClient.connect(address) as bench:
        answer(link, _rate(lambda: sum(1 for _ in bench.stream_small(count)), 1.0))


def raw_small_stream(link: Connection, address: str, count: int) -> None:
    dealer = _dealer(address)

    def read() -> int:
        return sum(1 for frames in _RawReader(dealer, {"op": "small", "count": count}) if json.loads(frames[0].bytes))

    answer(link, _rate(read, 1.0))


def zidl_array_stream(link: Connection, address: str, shape: list[int], count: int) -> None:
    size = int(np.prod(shape))
    with BenchClient.connect(address) as bench:
        answer(link, _rate(lambda: sum(1 for _ in bench.stream_arrays(count, shape)), size / 1e6))


def raw_array_stream(link: Connection, address: str, shape: list[int], count: int) -> None:
    size = int(np.prod(shape))
    dealer = _dealer(address)

    def read() -> int:
        received = 0
        for header, frame in _RawReader(dealer, {"op": "arrays", "count": count, "shape": shape, "fresh": False}):
            meta = json.loads(header.bytes)
            np.frombuffer(frame.buffer, dtype=meta["dtype"]).reshape(meta["shape"])
            received += 1
        return received

    answer(link, _rate(read, size / 1e6))


def zidl_cancel(link: Connection, address: str, cancels: int) -> None:
    with BenchClient.connect(address) as bench:

        def repetition() -> dict[str, float]:
            latencies = []
            for _ in range(cancels):
                stream = bench.forever()
                next(stream)
                began = time.monotonic()
                stream.cancel()
                while (closed := bench.closed_at()) < began:
                    pass
                latencies.append(closed - began)
            return {"p50_ms": percentile(latencies, 0.5) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3}

        answer(link, repetition)


def raw_cancel(link: Connection, address: str, cancels: int) -> None:
    def ask(dealer: zmq.Socket[bytes]) -> float:
        dealer.send_json({"op": "closed_at"})
        while True:  # the items sent before the cancel came first
            frames = dealer.recv_multipart()
            if frames[0] == b"closed_at":
                return float(json.loads(frames[1]))

    def repetition() -> dict[str, float]:
        latencies = []
        for _ in range(cancels):
            dealer = _dealer(address)  # a connection per stream, as zidl's blocking client has
            dealer.send_json({"op": "forever", "credit": WINDOW})
            dealer.recv_multipart()
            began = time.monotonic()
            dealer.send_json({"op": "cancel"})
            while (closed := ask(dealer)) < began:
                pass
            latencies.append(closed - began)
            dealer.close()
        return {"p50_ms": percentile(latencies, 0.5) * 1e3, "p99_ms": percentile(latencies, 0.99) * 1e3}

    answer(link, repetition)


def zidl_slow_reader(link: Connection, address: str, shape: list[int], count: int, pause: float) -> None:
    with BenchClient.connect(address) as bench:

        def repetition() -> dict[str, float]:
            for _ in bench.stream_arrays(count, shape, fresh=True):
                time.sleep(pause)  # the slow reader: it takes this long over each item
            return {"rss_mib": bench.peak_rss() / 2**20}

        answer(link, repetition)


def raw_slow_reader(link: Connection, address: str, shape: list[int], count: int, pause: float) -> None:
    dealer = _dealer(address)

    def repetition() -> dict[str, float]:
        for _ in _RawReader(dealer, {"op": "arrays", "count": count, "shape": shape, "fresh": True}):
            time.sleep(pause)
        dealer.send_json({"op": "rss"})
        return {"rss_mib": float(json.loads(dealer.recv())) / 2**20}

    answer(link, repetition)
