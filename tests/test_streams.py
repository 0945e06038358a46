# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Streams between a real client and device: items in order, the final value, errors, timeouts, flow control."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from fixtures.echo_device import FAST_HEARTBEAT
from fixtures.generated.streams import AsyncStreamerClient, Jammed, Step, StreamerClient, Summary
from fixtures.stream_device import Streamer
from fixtures.stream_fixtures import device, stream_address, streamer  # noqa: F401
from pydantic import ValidationError

from runtime import AsyncClient, AsyncStream, CallTimeout, Client, MethodKind, Stream, ZidlError
from runtime.client.streaming import WINDOW


def test_a_thousand_items_arrive_complete_and_in_order(device: StreamerClient) -> None:
    items = device.count(1000)
    assert isinstance(items, Stream)
    assert list(items) == list(range(1000))
    assert items.skipped == 0


def test_a_stream_that_returns_gives_its_final_value_after_its_items(device: StreamerClient) -> None:
    steps = device.steps(3, label="scan")
    assert list(steps) == [Step(done=1, total=3), Step(done=2, total=3), Step(done=3, total=3)]
    assert steps.result() == Summary(steps=3, label="scan")


def test_result_without_iterating_skips_the_items(device: StreamerClient) -> None:
    steps = device.steps(50)
    assert steps.result() == Summary(steps=50, label="done")
    assert steps.skipped == 50


def test_a_stream_without_returns_has_none_for_result(device: StreamerClient) -> None:
    assert device.count(5).result() is None


def test_a_remote_error_comes_after_the_items_yielded_before_it(device: StreamerClient) -> None:
    seen: list[int] = []
    with pytest.raises(Jammed) as raised:
        for value in device.count(10, fail_at=4):
            seen.append(value)
    assert seen == [0, 1, 2, 3]
    assert raised.value.at == 4
    assert "count" in raised.value.traceback


def test_no_item_within_the_timeout_raises_call_timeout_and_the_client_goes_on(
    device: StreamerClient, streamer: Streamer
) -> None:
    stalled = device.stalled()
    with pytest.raises(CallTimeout, match=r"no item within 0\.3 s"):
        next(stalled)
    streamer.release.set()  # the generator yields at last, and the device, told of the timeout, closes it
    assert streamer.last("stalled").closed.wait(5.0)
    assert device.echo(7) == 7


def test_arguments_are_validated_before_a_stream_opens(device: StreamerClient) -> None:
    with pytest.raises(ValidationError):
        device.count(-1)


def test_ndarray_items_of_36_mib_arrive_whole(device: StreamerClient) -> None:
    shape = [3040, 4056, 3]
    received = 0
    for index, array in enumerate(device.arrays(3, shape)):
        assert array.shape == tuple(shape) and array.dtype == np.uint8
        assert int(array.reshape(-1)[0]) == index
        received += 1
    assert received == 3


def test_eight_clients_stream_at_once(stream_address: str) -> None:
    def read(n: int) -> list[int]:
        with StreamerClient.connect(stream_address, heartbeat=FAST_HEARTBEAT) as client:
            return list(client.count(200 + n))

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(read, range(8)))
    assert results == [list(range(200 + n)) for n in range(8)]


def test_calls_and_property_reads_go_on_while_a_stream_is_read(device: StreamerClient) -> None:
    with device.ticks() as ticks:
        for tick in ticks:
            assert device.echo(tick) == tick
            device.level = tick
            assert device.level == tick
            if tick == 30:
                break


def test_a_serial_stream_holds_the_other_serial_calls_until_it_ends(
    device: StreamerClient, streamer: Streamer, stream_address: str
) -> None:
    ticks = device.serial_ticks()
    assert next(ticks) == 0
    with StreamerClient.connect(stream_address) as other:
        marker = threading.Thread(target=lambda: other.mark("after"))
        marker.start()
        assert other.echo(1) == 1 and other.level == 0  # concurrent calls and reads are answered meanwhile
        assert next(ticks) == 1 and streamer.marks == []
        ticks.cancel()
        marker.join(5.0)
    assert streamer.marks == ["after"]


def test_latest_gives_a_slow_reader_the_newest_item_and_counts_the_skipped(
    device: StreamerClient, streamer: Streamer
) -> None:
    newest = device.newest(500)
    assert streamer.last("newest").closed.wait(5.0)  # the device ran to the end before its reader read anything
    seen = list(newest)  # of the first window, the newest that had arrived at each read; then the newest of all
    assert seen[-1] == 499
    assert seen == sorted(set(seen)) and all(item < WINDOW for item in seen[:-1])
    assert newest.skipped == 500 - len(seen)


def test_without_latest_the_device_runs_at_most_the_window_ahead_of_a_slow_reader(
    device: StreamerClient, streamer: Streamer
) -> None:
    ticks = device.ticks()
    progress = streamer.last("ticks")
    taken = 0
    for _ in range(40):
        next(ticks)
        taken += 1
        assert progress.position <= taken + WINDOW
    assert progress.wait_for(taken + WINDOW - WINDOW // 2)  # it did run ahead, as far as the credit let it
    assert progress.position <= taken + WINDOW
    ticks.cancel()


def test_the_dynamic_client_streams_a_stream_method(stream_address: str) -> None:
    with Client.connect(stream_address) as client:
        assert client.interface.find_method("steps").kind is MethodKind.STREAM  # type: ignore[union-attr]
        steps = client.call("steps", n=2)
        assert [step.done for step in steps] == [1, 2]
        assert steps.result().steps == 2
        with pytest.raises(ZidlError, match="not a stream"):
            client._stream("echo", {"value": 1})


def test_the_async_client_streams_items_and_the_final_value(stream_address: str) -> None:
    async def main() -> None:
        async with AsyncStreamerClient.connect(stream_address) as device:
            items = device.count(300)
            assert isinstance(items, AsyncStream)
            assert [value async for value in items] == list(range(300))
            steps = device.steps(2, label="a")
            assert [step async for step in steps] == [Step(done=1, total=2), Step(done=2, total=2)]
            assert await steps.result() == Summary(steps=2, label="a")
            assert await device.steps(9).result() == Summary(steps=9, label="done")
            with pytest.raises(Jammed):
                async for _ in device.count(5, fail_at=2):
                    pass
            with pytest.raises(CallTimeout):
                async for _ in device.stalled():
                    pass
            results = await asyncio.gather(*(device.steps(n).result() for n in range(1, 9)), device.echo(4))
            assert [summary.steps for summary in results[:8]] == list(range(1, 9)) and results[8] == 4

    asyncio.run(main())


def test_the_async_dynamic_client_gives_a_stream_from_call(stream_address: str) -> None:
    async def main() -> list[int]:
        async with AsyncClient.connect(stream_address) as client, await client.call("count", n=4) as items:
            return [value async for value in items]

    assert asyncio.run(main()) == [0, 1, 2, 3]
