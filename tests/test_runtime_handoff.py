"""The server runs short calls inline and hands its sockets over during long ones: order and answers are kept."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Iterator

import pytest
import zmq
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import AsyncEchoClient, EchoClient


class Overlapping(Echo):
    """Echo that records how many method calls ever ran at once."""

    def __init__(self) -> None:
        super().__init__()
        self.active = 0
        self.most = 0
        self.guard = threading.Lock()

    def sleep(self, seconds: float) -> float:
        with self.guard:
            self.active += 1
            self.most = max(self.most, self.active)
        try:
            return super().sleep(seconds)
        finally:
            with self.guard:
                self.active -= 1


@pytest.fixture
def device() -> Overlapping:
    return Overlapping()


@pytest.fixture
def address(device: Overlapping) -> Iterator[str]:
    with device.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT) as bound:
        yield bound


def test_serial_calls_queued_behind_a_long_call_run_one_at_a_time_in_arrival_order(
    address: str, device: Overlapping
) -> None:
    durations = [0.3, 0.01, 0.02, 0.03, 0.0, 0.01]

    async def main() -> list[float]:
        async with AsyncEchoClient.connect(address) as client:
            return await asyncio.gather(*(client.sleep(seconds) for seconds in durations))

    assert asyncio.run(main()) == durations
    assert device.started == durations
    assert device.most == 1


def test_registry_ping_is_answered_while_a_long_call_runs(address: str, device: Overlapping) -> None:
    with EchoClient.connect(address) as client:
        blocker = threading.Thread(target=client.sleep, args=(1.0,))
        blocker.start()
        assert device.sleeping.wait(5)
        probe: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        probe.connect(address)
        try:
            start = time.monotonic()
            probe.send(json.dumps({"v": 1, "id": 7, "k": "ping"}).encode())
            assert probe.poll(800), "no answer to a ping during a long call"
            assert json.loads(probe.recv())["id"] == 7
            assert time.monotonic() - start < 0.8
        finally:
            probe.close()
        blocker.join()


def test_calls_alternating_short_and_long_all_get_their_own_replies(address: str) -> None:
    with EchoClient.connect(address) as client:
        for round_ in range(3):
            assert [client.add(i, round_) for i in range(50)] == [i + round_ for i in range(50)]
            assert client.sleep(0.05) == 0.05  # long enough for the sockets to change threads
        assert client.add(1, 1) == 2


def test_calls_ending_around_the_handoff_time_keep_order_and_replies(address: str, device: Overlapping) -> None:
    durations = [(i % 7) * 0.0005 for i in range(300)]  # 0 to 3 ms: some end before a takeover, some after

    async def main() -> list[float]:
        async with AsyncEchoClient.connect(address) as client:
            return await asyncio.gather(*(client.sleep(seconds) for seconds in durations))

    assert asyncio.run(main()) == durations
    assert device.started == durations
    assert device.most == 1
