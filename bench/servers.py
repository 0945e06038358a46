"""The servers under test: zidl's ``BenchServer`` and the raw pyzmq baselines, each run in a process of its own.

Each takes the parent's link and an address to bind (port 0 or an ipc path), sends
back the address it is listening on, and serves until the parent stops it. The
payloads are made once per size by ``payload`` and are the same for every server,
so that a benchmark measures the transfer and nothing else.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from typing import Any

import numpy as np
import zmq

from bench.generated.bench import BenchServer


@functools.cache
def payload(size: int) -> bytes:
    """``size`` bytes of noise, made once."""
    return np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()


@functools.cache
def image(shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    """A uint8 array of ``shape`` over ``payload``, made once."""
    return np.frombuffer(payload(int(np.prod(shape))), dtype=np.uint8).reshape(shape)


def rss() -> int:
    """This process's resident memory, in bytes (Linux)."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def arrays(count: int, shape: list[int], fresh: bool, seen: list[int]) -> Iterator[np.ndarray[Any, Any]]:
    """The items of an array stream, zidl's and raw alike; ``seen[0]`` keeps the highest RSS met while it runs."""
    made = image(tuple(shape))
    seen[0] = rss()
    for _ in range(count):
        yield made.copy() if fresh else made
        seen[0] = max(seen[0], rss())


def small_result(a: int, b: float) -> dict[str, float]:
    """What the small call computes, zidl and raw alike."""
    return {"sum": a + b, "product": a * b}


class Bench(BenchServer):
    def __init__(self) -> None:
        super().__init__()
        self.closed = 0.0
        self.seen = [0]

    def small(self, a: int, b: float) -> dict[str, float]:
        return small_result(a, b)

    def stream_small(self, count: int) -> Iterator[dict[str, float]]:
        result = small_result(3, 0.5)
        for _ in range(count):
            yield result

    def stream_arrays(self, count: int, shape: list[int], fresh: bool = False) -> Iterator[np.ndarray[Any, Any]]:
        return arrays(count, shape, fresh, self.seen)

    def forever(self) -> Iterator[int]:
        count = 0
        try:
            while True:
                yield count
                count += 1
        finally:
            self.closed = time.monotonic()

    def closed_at(self) -> float:
        return self.closed

    def peak_rss(self) -> int:
        return self.seen[0]

    def make_bytes(self, size: int) -> bytes:
        return payload(size)

    def make_array(self, shape: list[int]) -> np.ndarray[Any, Any]:
        return image(tuple(shape))

    def burst(self, count: int) -> None:
        for seq in range(count):
            self.tick.emit(seq)


def zidl_server(link: Connection, address: str) -> None:
    with Bench().running(address) as bound:
        link.send(bound)
        link.recv()


def _bind(sock: zmq.Socket[bytes], address: str) -> str:
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(address)
    return sock.getsockopt_string(zmq.LAST_ENDPOINT)


def rep_server(link: Connection, address: str) -> None:
    """The small-call baseline: REP with ``recv_json`` and ``send_json``."""
    rep = zmq.Context.instance().socket(zmq.REP)
    link.send(_bind(rep, address))
    while True:
        request = rep.recv_json()
        rep.send_json(small_result(request["a"], request["b"]))


def router_server(link: Connection, address: str) -> None:
    """The DEALER/ROUTER baseline: a JSON request; a JSON reply, then a payload frame sent without a copy."""
    router = zmq.Context.instance().socket(zmq.ROUTER)
    link.send(_bind(router, address))
    while True:
        identity, request = router.recv_multipart()
        message = json.loads(request)
        op = message["op"]
        if op == "small":
            router.send_multipart([identity, json.dumps(small_result(message["a"], message["b"])).encode()])
        elif op == "bytes":
            router.send_multipart([identity, b"{}", payload(message["size"])], copy=False)
        elif op == "array":
            array = image(tuple(message["shape"]))
            header = json.dumps({"dtype": array.dtype.str, "shape": array.shape}).encode()
            router.send_multipart([identity, header, array], copy=False)


def publisher_server(link: Connection, address: str) -> None:
    """The signals baseline: a REP that takes a count and publishes that many small JSON messages on a PUB.

    Sends the parent the PUB's address and the REP's, in that order.
    """
    context = zmq.Context.instance()
    publisher = context.socket(zmq.PUB)
    control = context.socket(zmq.REP)
    publisher.setsockopt(zmq.SNDHWM, 0)
    link.send((_bind(publisher, address), _bind(control, _beside(address))))
    while True:
        count = control.recv_json()
        for seq in range(count):
            publisher.send_multipart([b"tick", json.dumps({"seq": seq}).encode()])
        control.send_json(count)


def _beside(address: str) -> str:
    """Another address to bind on the same transport and host."""
    return address.rpartition(":")[0] + ":0" if address.startswith("tcp://") else address + ".control"
