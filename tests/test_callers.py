"""Which caller a dropped connection carried, over real sockets: a descriptor reused by a new connection.

The kernel gives a new connection the lowest free file descriptor, often the one the
last connection to close had; an owner can read the new connection's first message
before the old one's disconnect (the bridge reads requests in batches). The new caller
must never be taken for the one that left: that cancelled a stream just opened.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import zmq

from runtime.transport.callers import Callers

ATTEMPTS = 20


@pytest.fixture
def router() -> Iterator[tuple[zmq.Socket[bytes], str]]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.ROUTER)
    port = sock.bind_to_random_port("tcp://127.0.0.1")
    yield sock, f"tcp://127.0.0.1:{port}"
    sock.close(linger=0)


def _caller(router: zmq.Socket[bytes], callers: Callers, address: str) -> tuple[zmq.Socket[bytes], bytes]:
    """A new DEALER that sends one message, read off the ROUTER and noted, as an owner notes a new caller."""
    dealer: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    dealer.connect(address)
    dealer.send(b"hello")
    assert router.poll(5000)
    frame = router.recv(copy=False)
    caller = frame.bytes
    assert caller not in callers.sources
    callers.note(caller, frame)
    router.recv()
    return dealer, caller


def _next_drops(callers: Callers) -> list[bytes]:
    assert callers.socket.poll(5000), "no disconnect reported"
    return callers.dropped()


def test_a_new_caller_on_a_reused_descriptor_is_not_taken_for_the_one_that_left(
    router: tuple[zmq.Socket[bytes], str],
) -> None:
    sock, address = router
    callers = Callers(sock)
    reused = 0
    try:
        first, left = _caller(sock, callers, address)
        for _ in range(ATTEMPTS):
            descriptor = callers.sources[left]
            first.close(linger=0)
            first, came = _caller(sock, callers, address)  # before the monitor is read
            reused += callers.sources[came] == descriptor
            assert _next_drops(callers) == [left]
            assert came in callers.sources
            left = came
        first.close(linger=0)
        assert _next_drops(callers) == [left]
        assert callers.sources == {}
    finally:
        callers.close()
    assert reused, f"no connection of {ATTEMPTS} reused a descriptor: the case was never met"
