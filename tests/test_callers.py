"""Which caller a dropped connection carried, over real sockets: a descriptor reused by a new connection.

The kernel gives a new connection the lowest free file descriptor, often the one the
last connection to close had; an owner can read the new connection's first message
before the old one's disconnect (the bridge reads requests in batches). The new caller
must never be taken for the one that left: that cancelled a stream just opened.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator

import pytest
import zmq

from runtime.transport.callers import Callers

PEER = """
import sys, zmq
dealer = None
for line in sys.stdin:
    if line.startswith("open"):
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.connect(sys.argv[1])
        dealer.send(b"hello")
    elif dealer is not None:
        dealer.close(linger=0)
        dealer = None
    print("done", flush=True)
"""
"""Connections opened and closed one at a time on command: in a process of its own, so that only the ROUTER's
side of each takes a descriptor here."""


class Peer:
    def __init__(self, address: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", PEER, address], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def do(self, command: str) -> None:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        assert self.process.stdout.readline() == "done\n"

    def end(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        self.process.wait(10)


@pytest.fixture
def router() -> Iterator[tuple[zmq.Socket[bytes], Callers, Peer]]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    callers = Callers(sock)
    peer = Peer(f"tcp://127.0.0.1:{port}")
    try:
        yield sock, callers, peer
    finally:
        peer.process.kill()
        peer.process.wait(10)
        callers.close()
        sock.close(linger=0)


def _new_caller(router: zmq.Socket[bytes], callers: Callers) -> bytes:
    """Read a new connection's first message off the ROUTER and note its caller, as an owner does."""
    assert router.poll(5000)
    frame = router.recv(copy=False)
    caller = frame.bytes
    assert caller not in callers.sources
    callers.note(caller, frame)
    router.recv()
    return caller


def _lowest_free_is(descriptor: int) -> list[int]:
    """Take every free descriptor below ``descriptor`` (once it is free: its connection's close may still be under
    way), so that the next connection gets it; the descriptors taken, to close after."""
    taken: list[int] = []
    give_up = time.monotonic() + 5
    while time.monotonic() < give_up:
        fd = os.open(os.devnull, os.O_RDONLY)
        if fd == descriptor:
            os.close(fd)
            return taken
        if fd < descriptor:
            taken.append(fd)
        else:
            os.close(fd)
    raise AssertionError(f"descriptor {descriptor} was never closed")


def test_a_new_caller_on_a_reused_descriptor_is_not_taken_for_the_one_that_left(
    router: tuple[zmq.Socket[bytes], Callers, Peer],
) -> None:
    sock, callers, peer = router
    peer.do("open")
    left = _new_caller(sock, callers)
    for _ in range(3):
        descriptor = callers.sources[left]
        peer.do("close")
        assert callers.socket.poll(5000)  # the disconnect is reported, not yet read
        taken = _lowest_free_is(descriptor)
        try:
            peer.do("open")
            came = _new_caller(sock, callers)  # before the monitor is read, as the bridge reading a batch does
        finally:
            for fd in taken:
                os.close(fd)
        assert callers.sources[came] == descriptor  # the case: the new connection has the old one's descriptor
        assert callers.dropped() == [left]
        assert came in callers.sources
        left = came
    peer.do("close")
    assert callers.socket.poll(5000)
    assert callers.dropped() == [left]
    assert callers.sources == {}
    peer.end()
