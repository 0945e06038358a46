# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Cancellation from every path the SPEC names, a caller that goes away, and the races, over real sockets."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from fixtures.echo_device import FAST_HEARTBEAT
from fixtures.generated.streams import AsyncStreamerClient, Step, StreamerClient, Summary
from fixtures.stream_device import Streamer
from fixtures.stream_fixtures import device, stream_address, streamer  # noqa: F401

from runtime import CallTimeout, Cancelled
from runtime.protocol.messages import cancel, credit, read_reply, request, stream_request
from runtime.protocol.wire import DEFAULT_LIMITS

TESTS = Path(__file__).parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
HEARTBEAT_TIME = FAST_HEARTBEAT.timeout + 1.0
"""What 'within the heartbeat time' allows: the device's heartbeat timeout, and a second for a loaded machine."""


def _interrupt_soon() -> None:
    """Send this process SIGINT (a KeyboardInterrupt in the main thread) in 0.2 s: while the call made next waits,
    for it only returns once cancelled."""
    timer = threading.Timer(0.2, os.kill, (os.getpid(), signal.SIGINT))
    timer.daemon = True
    timer.start()


# --- plain calls ------------------------------------------------------------------------------


def test_a_running_method_sees_its_call_cancelled_when_the_task_is_cancelled(
    stream_address: str, streamer: Streamer
) -> None:
    async def main() -> None:
        async with AsyncStreamerClient.connect(stream_address) as device:
            task = asyncio.create_task(device.hold())
            await asyncio.to_thread(streamer.holding.wait, 5.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await asyncio.to_thread(streamer.hold_saw_cancelled.wait, 5.0)
            assert await device.echo(3) == 3

    asyncio.run(main())


@pytest.mark.parametrize("how", ["asyncio.timeout", "wait_for"])
def test_a_task_that_gives_up_on_a_call_cancels_it(stream_address: str, streamer: Streamer, how: str) -> None:
    async def main() -> None:
        async with AsyncStreamerClient.connect(stream_address) as device:
            with pytest.raises(TimeoutError):
                if how == "wait_for":
                    await asyncio.wait_for(device.hold(), 0.2)
                else:
                    async with asyncio.timeout(0.2):
                        await device.hold()
            assert await asyncio.to_thread(streamer.hold_saw_cancelled.wait, 5.0)

    asyncio.run(main())


def test_a_blocking_call_that_times_out_is_cancelled_on_the_device(device: StreamerClient, streamer: Streamer) -> None:
    with pytest.raises(CallTimeout):
        device.hold(timeout=0.2)
    assert streamer.hold_saw_cancelled.wait(5.0)


def test_a_keyboard_interrupt_cancels_a_blocking_call_before_it_is_raised(
    device: StreamerClient, streamer: Streamer
) -> None:
    with pytest.raises(KeyboardInterrupt):
        _interrupt_soon()
        device.hold()
    assert streamer.holding.is_set()
    assert streamer.hold_saw_cancelled.wait(5.0)
    assert device.echo(1) == 1


def test_a_cancelled_call_that_is_queued_never_starts(stream_address: str, streamer: Streamer) -> None:
    async def main() -> None:
        async with AsyncStreamerClient.connect(stream_address) as device:
            holding = asyncio.create_task(device.hold())
            await asyncio.to_thread(streamer.holding.wait, 5.0)
            queued = asyncio.create_task(device.mark("queued"))
            assert await device.echo(1) == 1  # sent after the mark on the same socket: the mark is queued now
            queued.cancel()
            with pytest.raises(asyncio.CancelledError):
                await queued
            assert await device.echo(2) == 2  # the cancel is in too
            streamer.release.set()
            assert await holding is False
            await device.mark("after")  # serial calls run in order: a queued mark would have run before this one

    asyncio.run(main())
    assert streamer.marks == ["after"]


# --- streams ------------------------------------------------------------------------------------


def test_leaving_the_with_block_closes_the_generator(device: StreamerClient, streamer: Streamer) -> None:
    with device.ticks() as ticks:
        assert next(ticks) == 0
    assert streamer.last("ticks").closed.wait(5.0)
    assert list(ticks) == []
    with pytest.raises(Cancelled):
        ticks.result()


def test_cancel_closes_the_generator_and_ends_the_iteration(device: StreamerClient, streamer: Streamer) -> None:
    ticks = device.ticks()
    seen = []
    for tick in ticks:
        seen.append(tick)
        if tick == 10:
            ticks.cancel()
    assert seen == list(range(11))
    assert streamer.last("ticks").closed.wait(5.0)
    assert device.echo(5) == 5


def test_a_keyboard_interrupt_while_a_stream_waits_cancels_it_before_it_is_raised(
    device: StreamerClient, streamer: Streamer
) -> None:
    stalled = device.stalled(timeout=30.0)
    with pytest.raises(KeyboardInterrupt):
        _interrupt_soon()
        next(stalled)
    assert streamer.last("stalled").call.cancelled  # the device had been told when the interrupt was raised
    streamer.release.set()
    assert streamer.last("stalled").closed.wait(5.0)


@pytest.mark.parametrize("how", ["with", "cancel", "task.cancel", "asyncio.timeout", "wait_for"])
def test_an_async_stream_is_cancelled_on_every_path(stream_address: str, streamer: Streamer, how: str) -> None:
    async def read(device: AsyncStreamerClient) -> None:
        async for _ in device.ticks():  # the task awaits nothing but the stream (elsewhere, use ``async with``)
            pass

    async def main() -> None:
        async with AsyncStreamerClient.connect(stream_address) as device:
            if how == "with":
                async with device.ticks() as ticks:
                    assert await anext(ticks) == 0
            elif how == "cancel":
                ticks = device.ticks()
                assert await anext(ticks) == 0
                ticks.cancel()
                assert [tick async for tick in ticks] == []
                with pytest.raises(Cancelled):
                    await ticks.result()
            elif how == "task.cancel":
                task = asyncio.create_task(read(device))
                await asyncio.to_thread(streamer.last, "ticks")
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            elif how == "wait_for":
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(read(device), 0.1)
            else:
                with pytest.raises(TimeoutError):
                    async with asyncio.timeout(0.1):
                        await read(device)
            assert await asyncio.to_thread(lambda: streamer.last("ticks").closed.wait(5.0))
            assert await device.echo(9) == 9

    asyncio.run(main())


# --- a caller that goes away ------------------------------------------------------------------------


@pytest.fixture
def reader(stream_address: str) -> Iterator[Callable[[str], subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []

    def start(what: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, "-m", "fixtures.stream_reader", stream_address, what],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        started.append(process)
        return process

    yield start
    for process in started:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()


def test_a_client_killed_mid_stream_has_its_generator_closed_within_the_heartbeat_time(
    reader: Callable[[str], subprocess.Popen[str]], streamer: Streamer
) -> None:
    process = reader("stream")
    assert process.stdout is not None and process.stdout.readline().strip() == "reading"
    ticks = streamer.last("ticks")
    assert not ticks.closed.is_set()
    process.send_signal(signal.SIGKILL)
    assert ticks.closed.wait(HEARTBEAT_TIME)


def test_a_client_killed_during_a_long_call_has_it_cancelled(
    reader: Callable[[str], subprocess.Popen[str]], streamer: Streamer
) -> None:
    process = reader("call")
    assert process.stdout is not None and process.stdout.readline().strip() == "calling"
    assert streamer.holding.wait(5.0)
    process.send_signal(signal.SIGKILL)
    assert streamer.hold_saw_cancelled.wait(HEARTBEAT_TIME)


def test_an_interrupted_client_process_cancels_its_call_and_exits(
    reader: Callable[[str], subprocess.Popen[str]], streamer: Streamer
) -> None:
    process = reader("call")
    assert process.stdout is not None and process.stdout.readline().strip() == "calling"
    assert streamer.holding.wait(5.0)
    process.send_signal(signal.SIGINT)
    assert process.wait(10.0) == 130
    assert process.stdout.readline().strip() == "interrupted"
    assert streamer.hold_saw_cancelled.wait(5.0)


# --- the races, and cancels that reach nothing --------------------------------------------------------


class Raw:
    """A DEALER that speaks the protocol by hand, to send what a zidl client would not."""

    def __init__(self, address: str) -> None:
        self.socket = zmq.Context.instance().socket(zmq.DEALER)
        self.socket.setsockopt(zmq.LINGER, 0)
        self.socket.connect(address)

    def send(self, frames: list[Any]) -> None:
        self.socket.send_multipart(frames)

    def receive(self) -> tuple[Any, Any, Any]:
        assert self.socket.poll(5000), "no message within 5 s"
        return read_reply(self.socket.recv_multipart(), DEFAULT_LIMITS)

    def until_barrier(self, barrier: int) -> list[tuple[Any, Any, Any]]:
        """Every message before the reply to an ``echo`` call sent now (which the device answers after them)."""
        self.send(request(barrier, "call", "echo", None, {"value": barrier}))
        messages = []
        while (message := self.receive())[0] != barrier:
            messages.append(message)
        return messages

    def close(self) -> None:
        self.socket.close()


@pytest.fixture
def raw(stream_address: str) -> Iterator[Callable[[], Raw]]:
    made: list[Raw] = []

    def make() -> Raw:
        made.append(Raw(stream_address))
        return made[-1]

    yield make
    for each in made:
        each.close()


def _finals(messages: list[tuple[Any, Any, Any]], request_id: int) -> list[Any]:
    return [kind for rid, kind, _ in messages if rid == request_id and kind != "item"]


def test_a_cancel_crossing_the_last_items_and_the_final_value_gets_one_final_reply(
    raw: Callable[[], Raw], streamer: Streamer
) -> None:
    for attempt in range(20):
        peer = raw()
        peer.send(stream_request(1, "count", None, 8, {"n": 3}))
        peer.send(cancel(1))
        messages = peer.until_barrier(100 + attempt)
        items = [body[1] for rid, kind, body in messages if kind == "item"]
        assert items == list(range(len(items)))
        assert _finals(messages, 1) in (["ok"], ["err"])  # the value, or the word that it was cancelled


def test_cancelling_an_ended_or_unknown_call_is_ignored_and_two_cancels_answer_once(
    raw: Callable[[], Raw], streamer: Streamer
) -> None:
    peer = raw()
    peer.send(stream_request(1, "steps", None, 8, {"n": 2}))
    assert [kind for _, kind, _ in peer.until_barrier(50)] == ["item", "item", "ok"]
    peer.send(cancel(1))  # ended
    peer.send(cancel(12345))  # never known
    assert peer.until_barrier(51) == []
    peer.send(stream_request(2, "ticks", None, 2, {}))
    peer.send(cancel(2))
    peer.send(cancel(2))
    messages = peer.until_barrier(52)
    assert _finals(messages, 2) == ["err"]
    assert streamer.last("ticks").closed.wait(5.0)


def test_a_cancel_from_another_client_naming_your_id_never_reaches_your_stream(
    raw: Callable[[], Raw], streamer: Streamer
) -> None:
    mine, other = raw(), raw()
    mine.send(stream_request(7, "ticks", None, 2, {}))
    assert [kind for _, kind, _ in (mine.receive(), mine.receive())] == ["item", "item"]
    other.send(cancel(7))
    other.send(credit(7, 50))  # nor does its credit
    assert other.until_barrier(8) == []
    mine.send(credit(7, 3))
    assert [kind for _, kind, _ in (mine.receive(), mine.receive(), mine.receive())] == ["item"] * 3
    assert not streamer.last("ticks").closed.is_set()
    assert streamer.last("ticks").position <= 5


def test_a_finished_stream_cancelled_late_keeps_its_final_value(device: StreamerClient) -> None:
    steps = device.steps(2)
    assert list(steps) == [Step(done=1, total=2), Step(done=2, total=2)]
    steps.cancel()
    assert steps.result() == Summary(steps=2, label="done")


def test_a_serial_stream_whose_caller_leaves_as_it_opens_leaves_the_device_serving(
    stream_address: str, streamer: Streamer, device: StreamerClient
) -> None:
    """The device sends the stream's items at once, inline, while its caller's connection closes: a send that finds
    the caller gone lets go of it between two messages, never under the stream's own lock."""
    context = zmq.Context.instance()
    for request_id in range(20):
        leaving: zmq.Socket[bytes] = context.socket(zmq.DEALER)
        leaving.connect(stream_address)
        leaving.send_multipart(stream_request(request_id, "serial_ticks", None, 64, {}))
        leaving.close(linger=1000)  # the request goes out, then the connection closes
        assert device.echo(request_id) == request_id  # the device still answers, between the streams too
    runs = streamer.runs.get("serial_ticks", [])
    assert runs and all(run.closed.wait(5.0) for run in runs)  # each stream was cancelled as its caller left
