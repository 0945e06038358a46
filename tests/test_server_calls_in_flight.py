"""The server's table of calls in flight: a call is in it from when it is accepted until it is answered or ends."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import zmq
from fixtures.echo_device import Echo
from fixtures.generated.echo import EchoClient

from runtime import RemoteError


class Held(Echo):
    """Echo whose ``sleep`` lasts until the test releases it, so that calls stay in flight while the test looks."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def sleep(self, seconds: float) -> float:
        self.sleeping.set()
        self.release.wait(10)
        return seconds


@pytest.fixture
def device() -> Held:
    return Held()


@pytest.fixture
def address(device: Held) -> Iterator[str]:
    with device.running("tcp://127.0.0.1:0") as bound:
        try:
            yield bound
        finally:
            device.release.set()  # before the server stops: a held call would keep it waiting


def _in_flight(device: Held) -> set[tuple[bytes, Any]]:
    return set(device.__dict__["_zidl_dispatcher"].in_flight)


@pytest.fixture
def callers(address: str) -> Iterator[tuple[zmq.Socket[bytes], zmq.Socket[bytes]]]:
    sockets: list[zmq.Socket[bytes]] = []
    for identity in (b"first", b"second"):
        sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.IDENTITY, identity)
        sock.connect(address)
        sockets.append(sock)
    try:
        yield sockets[0], sockets[1]
    finally:
        for sock in sockets:
            sock.close()


def _send(sock: zmq.Socket[bytes], **header: Any) -> None:
    sock.send(json.dumps({"v": 1, **header}).encode())


def _reply(sock: zmq.Socket[bytes]) -> dict[str, Any]:
    assert sock.poll(5000), "no reply"
    reply: dict[str, Any] = json.loads(sock.recv_multipart()[0])
    return reply


def test_calls_leave_the_table_once_answered_failed_or_ended(address: str, device: Held) -> None:
    with EchoClient.connect(address, timeout=5.0) as client:
        assert client.add(1) == 2
        assert _in_flight(device) == set()
        with pytest.raises(RemoteError):
            client.fail("no")
        assert _in_flight(device) == set()
        assert client.fast() == "fast"  # a concurrent call, run in the pool
        assert _in_flight(device) == set()
        client.burst(3)  # oneway: nothing answers it, so the serial call after it shows it ended
        assert client.add(2) == 3
        assert _in_flight(device) == set()


def test_the_same_request_id_from_two_callers_is_two_calls_in_flight(
    device: Held, callers: tuple[zmq.Socket[bytes], zmq.Socket[bytes]]
) -> None:
    first, second = callers
    _send(first, id=7, k="call", n="sleep", b={"seconds": 0.5})
    assert device.sleeping.wait(5)
    _send(second, id=7, k="call", n="sleep", b={"seconds": 0.25})
    _send(second, id=8, k="get", n="mode")  # answered once the call before it is accepted
    assert _reply(second)["id"] == 8
    assert _in_flight(device) == {(b"first", 7), (b"second", 7)}
    device.release.set()
    assert [_reply(first)["b"], _reply(second)["b"]] == [0.5, 0.25]
    assert _in_flight(device) == set()
