# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""A device on network A used from network B through a bridge: everything passes, as if the device were there.

Two registries and a bridge over loopback, in this process: the device registers in A,
the bridge registers it in B, and the clients look it up in B.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from fixtures.bridging import BIND, BRIDGE_HEARTBEAT, Networks, networks, wait_for_name  # noqa: F401
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import INTERFACE, AsyncEchoClient, Busy, EchoClient, Mode
from fixtures.generated.streams import AsyncStreamerClient, Jammed, StreamerClient
from fixtures.stream_device import Streamer
from pydantic import ValidationError

from runtime import Bridge, Cancelled, Client, RemoteError, current_call


class TimedEcho(Echo):
    """An Echo that says how long its caller would still wait when a call started."""

    def __init__(self) -> None:
        super().__init__()
        self.time_left: list[float | None] = []

    def add(self, a: int, b: int = 1) -> int:
        self.time_left.append(current_call().time_left)
        return a + b


@pytest.fixture
def echo() -> TimedEcho:
    return TimedEcho()


@pytest.fixture
def bridged(networks: Networks, echo: TimedEcho) -> Iterator[Bridge]:
    """The Echo device registered as `echo` in A, and a bridge serving it in B."""
    with (
        echo.running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT) as address,
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge,
    ):
        assert bridge.names == {"echo": "echo"}
        assert wait_for_name(networks.b, "echo", not_at=address) is not None
        yield bridge


@pytest.fixture
def client(networks: Networks, bridged: Bridge) -> Iterator[EchoClient]:
    with EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT) as found:
        yield found


def test_the_device_is_registered_in_b_at_the_bridges_address(
    networks: Networks, echo: TimedEcho, bridged: Bridge
) -> None:
    on_a = wait_for_name(networks.a, "echo")
    on_b = wait_for_name(networks.b, "echo")
    assert on_a is not None and on_b is not None
    assert on_b.address != on_a.address
    assert (on_b.interface, on_b.version, on_b.hash) == (on_a.interface, on_a.version, on_a.hash)


def test_calls_with_bytes_and_arrays_pass_through(client: EchoClient) -> None:
    assert client.add(2, 3) == 5
    blob = client.blob(size=1 << 20)
    assert len(blob.data) == 1 << 20 and blob.data[:4] == bytes([0, 1, 2, 3]) and blob.meta.size == 1 << 20
    array = np.arange(4056 * 30 * 3, dtype=np.uint16).reshape(4056, 30, 3)
    back = client.array(array)
    assert isinstance(back, np.ndarray) and back.dtype == array.dtype and np.array_equal(back, array)
    assert client.echo({"$b": 1, "nested": [b"\x00\xff", 2.5]}) == {"$b": 1, "nested": [b"\x00\xff", 2.5]}


def test_properties_are_read_and_written_through(client: EchoClient, echo: TimedEcho) -> None:
    client.mode = Mode.busy
    client.level = 4
    assert (client.mode, client.level) == (Mode.busy, 4)
    assert (echo.mode, echo.level) == (Mode.busy, 4)
    with pytest.raises(RemoteError, match="level 7 is not allowed"):
        client.level = 7  # the device refuses it
    with pytest.raises(ValidationError):
        client.level = 11  # the client refuses it


def test_errors_raised_on_the_device_arrive_typed(client: EchoClient) -> None:
    with pytest.raises(Busy) as declared:
        client.refuse()
    assert declared.value.mode == Mode.busy and "refuse" in declared.value.traceback
    with pytest.raises(RemoteError) as remote:
        client.fail("boom")
    assert remote.value.type == "ValueError" and remote.value.message == "boom"


def test_signals_reach_every_subscriber_through_the_bridge(networks: Networks, client: EchoClient) -> None:
    with EchoClient.lookup("echo", registry=networks.b, timeout=5.0) as other:
        seen: dict[str, list[int]] = {"one": [], "other": []}
        done = threading.Event()

        def on_tick(who: str) -> Any:
            def record(n: int, label: str) -> None:
                seen[who].append(n)
                if all(len(got) == 5 for got in seen.values()):
                    done.set()

            return record

        client.tick.connect(on_tick("one"))
        other.tick.connect(on_tick("other"))
        client.burst(5)
        assert done.wait(5.0), seen
        assert seen == {"one": [0, 1, 2, 3, 4], "other": [0, 1, 2, 3, 4]}
        assert client.tick.missed == 0


def test_the_handshake_carries_the_devices_own_description(networks: Networks, bridged: Bridge) -> None:
    with Client.lookup("echo", registry=networks.b, timeout=5.0) as device:
        assert device.interface.to_dict() == INTERFACE.to_dict()
        assert device.call("add", a=1, b=2) == 3
        changed = threading.Event()
        device.signal("levelChanged").connect(lambda *args: changed.set())
        device.set("level", 3)
        assert changed.wait(5.0)


def test_an_async_client_works_through_the_bridge(networks: Networks, bridged: Bridge) -> None:
    async def main() -> tuple[int, int]:
        async with AsyncEchoClient.lookup("echo", registry=networks.b, timeout=5.0) as device:
            return await device.add(20, 22), len((await device.blob(size=70_000)).data)

    assert asyncio.run(main()) == (42, 70_000)


def test_a_call_carries_what_is_left_of_its_deadline(client: EchoClient, echo: TimedEcho) -> None:
    client.add(1, timeout=3.0)
    left = echo.time_left[-1]
    assert left is not None and 2.0 < left <= 3.0
    client.add(1, timeout=None)
    assert echo.time_left[-1] is None


@pytest.fixture
def streamer() -> Iterator[Streamer]:
    device = Streamer()
    yield device
    device.release.set()


@pytest.fixture
def streams(networks: Networks, streamer: Streamer) -> Iterator[StreamerClient]:
    with (
        streamer.running(BIND, registry=networks.a, name="streamer", heartbeat=FAST_HEARTBEAT),
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running(),
        StreamerClient.lookup("streamer", registry=networks.b, timeout=5.0) as device,
    ):
        yield device


def test_streams_pass_items_errors_and_final_values(streams: StreamerClient) -> None:
    assert list(streams.count(5)) == [0, 1, 2, 3, 4]
    steps = streams.steps(3, label="all")
    assert [step.done for step in steps] == [1, 2, 3]
    assert steps.result().label == "all"
    arrays = list(streams.arrays(3, [1000, 1000]))
    assert [int(array[0, 0]) for array in arrays] == [0, 1, 2] and arrays[0].shape == (1000, 1000)
    with pytest.raises(Jammed) as jammed:
        list(streams.count(5, fail_at=2))
    assert jammed.value.at == 2


def test_a_stream_cancelled_on_bs_side_closes_the_devices_generator(
    streams: StreamerClient, streamer: Streamer
) -> None:
    with streams.ticks() as ticks:
        for tick in ticks:
            if tick == 20:  # well past the first window: credit went through the bridge
                break
    progress = streamer.last("ticks")
    assert progress.closed.wait(5.0)
    with pytest.raises(Cancelled):
        ticks.result()


def test_a_call_cancelled_on_bs_side_is_cancelled_on_the_device(
    networks: Networks, streams: StreamerClient, streamer: Streamer
) -> None:
    async def main() -> None:
        async with AsyncStreamerClient.lookup("streamer", registry=networks.b, timeout=5.0) as device:
            task = asyncio.create_task(device.hold())
            assert await asyncio.to_thread(streamer.holding.wait, 5.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(main())
    assert streamer.hold_saw_cancelled.wait(5.0)


def test_many_callers_at_once_each_get_their_own_replies(client: EchoClient) -> None:
    wrong: list[tuple[int, int, int]] = []

    def calls(thread: int) -> None:  # each thread of a blocking client has a connection of its own
        for n in range(100):
            if (got := client.add(n, thread * 1000)) != n + thread * 1000:
                wrong.append((thread, n, got))

    threads = [threading.Thread(target=calls, args=(thread,)) for thread in range(10)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30.0)
    assert wrong == [] and not any(thread.is_alive() for thread in threads)
