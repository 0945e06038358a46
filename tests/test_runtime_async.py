# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""The asyncio client: concurrent awaits on one connection, properties, signals, timeouts."""

from __future__ import annotations

import asyncio

import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import AsyncEchoClient, Mode
from fixtures.runtime_fixtures import address, echo  # noqa: F401
from pydantic import ValidationError

from runtime import CallTimeout, Client, ClientClosed, RemoteError
from runtime.client.deadlines import Deadlines


def test_two_hundred_concurrent_awaits_on_one_client(address: str) -> None:
    async def main() -> list[int]:
        async with AsyncEchoClient.connect(address) as client:
            return await asyncio.gather(*(client.add(i, i) for i in range(200)))

    assert asyncio.run(main()) == [2 * i for i in range(200)]


def test_await_connect_then_close(address: str) -> None:
    async def main() -> None:
        client = await AsyncEchoClient.connect(address)
        assert await client.echo([1, "two"]) == [1, "two"]
        await client.close()
        with pytest.raises(ClientClosed):
            await client.add(1)

    asyncio.run(main())


def test_async_properties_and_errors(address: str) -> None:
    async def main() -> None:
        async with AsyncEchoClient.connect(address) as client:
            assert await client.mode.get() is Mode.idle
            await client.mode.set(Mode.busy)
            assert await client.mode.get() is Mode.busy
            assert await client.count.get() == 0
            assert not hasattr(client.count, "set")
            with pytest.raises(ValidationError):
                await client.level.set(42)
            with pytest.raises(RemoteError):
                await client.level.set(7)

    asyncio.run(main())


def test_async_timeout_then_next_call_works(address: str) -> None:
    async def main() -> None:
        async with AsyncEchoClient.connect(address) as client:
            with pytest.raises(CallTimeout):
                await client.sleep(0.5, timeout=0.1)
            assert await client.add(1, 1) == 2

    asyncio.run(main())


def test_a_shorter_timeout_made_later_expires_first(address: str) -> None:
    """The deadlines of calls in flight share one timer: a call with a shorter timeout re-arms it."""

    async def main() -> None:
        async with AsyncEchoClient.connect(address) as client:
            slow = asyncio.ensure_future(client.sleep(0.6, timeout=5.0))
            await asyncio.sleep(0)  # sent first: the short call below waits behind it on the server
            with pytest.raises(CallTimeout):
                await client.sleep(0.5, timeout=0.1)
            assert not slow.done()
            await slow
            assert await client.add(1, 1) == 2

    asyncio.run(main())


def test_deadlines_of_ended_calls_do_not_pile_up_behind_a_long_one() -> None:
    async def main() -> None:
        live: dict[int, None] = {1: None}
        expired: list[int] = []
        deadlines = Deadlines(lambda request_id, *_: expired.append(request_id), live)
        loop = asyncio.get_running_loop()
        deadlines.add(loop, loop.time() + 1, 1, "call", "long", 1)  # the earliest deadline, still in flight
        for request_id in range(2, 10_002):
            live[request_id] = None
            deadlines.add(loop, loop.time() + 5, request_id, "call", "short", 5)
            del live[request_id]  # ended at once
        assert len(deadlines) < 200
        deadlines.close()
        assert expired == []

    asyncio.run(main())


def test_async_signals_with_plain_and_coroutine_callbacks(address: str, echo: Echo) -> None:
    async def main() -> None:
        async with AsyncEchoClient.connect(address, heartbeat=FAST_HEARTBEAT) as client:
            plain: list[tuple[int, str]] = []
            awaited: list[tuple[int, str]] = []
            done = asyncio.Event()

            def on_plain(n: int, label: str) -> None:
                plain.append((n, label))

            async def on_coroutine(n: int, label: str) -> None:
                await asyncio.sleep(0)
                awaited.append((n, label))
                if len(awaited) == 3:
                    done.set()

            await client.tick.connect(on_plain)
            await client.tick.connect(on_coroutine)
            await client.burst(3)
            await asyncio.wait_for(done.wait(), 5)
            assert plain == awaited == [(0, "tick 0"), (1, "tick 1"), (2, "tick 2")]
            await client.tick.disconnect(on_plain)

    asyncio.run(main())


def test_closing_an_async_client_whose_device_just_stopped_leaves_other_connections_working(address: str) -> None:
    """libzmq's I/O thread, which every socket of the process shares, blocks for ever on a monitor event for a reader
    that is gone: the client stops its monitors before it closes their sockets."""

    async def main() -> None:
        with Client.connect(address, timeout=5.0) as other:
            for _ in range(20):
                with Echo().running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT) as stopping:
                    client = await AsyncEchoClient.connect(stopping, heartbeat=FAST_HEARTBEAT)
                    await client.modeChanged.connect(lambda mode: None)
                await client.close()  # while its sockets reconnect to the stopped device
                assert await asyncio.to_thread(other.call, "add", a=1, timeout=2.0) == 2

    asyncio.run(main())
