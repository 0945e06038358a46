# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Signals: live on connect, exactly once per subscriber, from any server thread."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import AsyncEchoClient, EchoClient
from fixtures.runtime_fixtures import address, client, echo  # noqa: F401

from runtime import Limits
from runtime.server.publisher import Publisher

HOLD = 0.5
"""Seconds the server of the subscription-race tests leaves each signal subscription unapplied."""


class Collector:
    def __init__(self, expected: int) -> None:
        self.items: list[tuple[int, str]] = []
        self.expected = expected
        self.done = threading.Event()
        self.lock = threading.Lock()

    def __call__(self, n: int, label: str) -> None:
        with self.lock:
            self.items.append((n, label))
            if len(self.items) >= self.expected:
                self.done.set()


def test_signal_reaches_three_clients_exactly_once_each(address: str, echo: Echo) -> None:
    clients = [EchoClient.connect(address, heartbeat=FAST_HEARTBEAT) for _ in range(3)]
    try:
        collectors = [Collector(5) for _ in clients]
        for each, collector in zip(clients, collectors, strict=True):
            each.tick.connect(collector)
        for i in range(5):
            echo.tick.emit(i, f"tick {i}")
        for collector in collectors:
            assert collector.done.wait(5)
        clients[0].add(1)  # a round trip, after which no further emission is in flight
        expected = [(i, f"tick {i}") for i in range(5)]
        assert [collector.items for collector in collectors] == [expected] * 3
    finally:
        for each in clients:
            each.close()


def test_an_emission_over_the_clients_size_limit_is_dropped_and_counted_as_missed(address: str, echo: Echo) -> None:
    with EchoClient.connect(address, limits=Limits(max_bytes=100_000)) as small:
        got = Collector(2)
        small.tick.connect(got)
        echo.tick.emit(0, "fits")
        echo.tick.emit(1, "x" * 200_000)
        echo.tick.emit(2, "fits")
        assert got.done.wait(5)
        assert got.items == [(0, "fits"), (2, "fits")]
        assert small.tick.missed == 1


def test_emission_right_after_connect_returns_is_received(address: str, echo: Echo) -> None:
    for _ in range(5):
        with EchoClient.connect(address) as fresh:
            collector = Collector(1)
            fresh.tick.connect(collector)
            echo.tick.emit(1, "first")
            assert collector.done.wait(5)


@pytest.fixture
def slow_to_subscribe(monkeypatch: pytest.MonkeyPatch) -> None:
    """The server applies each signal subscription ``HOLD`` seconds after it reads it (as a loaded server might),
    and the subscriptions after it wait too; meanwhile it serves and publishes. A client that took its subscription
    for live before the server's welcome would miss every emission made as ``connect()`` returns."""
    monkeypatch.setattr(Publisher, "hold", HOLD)


def test_connect_returns_only_once_a_slow_server_applied_the_subscription(
    slow_to_subscribe: None, address: str, echo: Echo
) -> None:
    with EchoClient.connect(address) as fresh:
        collector = Collector(1)
        fresh.tick.connect(collector)
        echo.tick.emit(1, "first")
        assert collector.done.wait(2), "the emission right after connect() was lost"
        assert collector.items == [(1, "first")]


def test_an_async_connect_returns_only_once_a_slow_server_applied_the_subscription(
    slow_to_subscribe: None, address: str, echo: Echo
) -> None:
    async def main() -> list[tuple[int, str]]:
        got: list[tuple[int, str]] = []
        arrived = asyncio.Event()

        def on_tick(n: int, label: str) -> None:
            got.append((n, label))
            arrived.set()

        async with AsyncEchoClient.connect(address) as fresh:
            await fresh.tick.connect(on_tick)
            echo.tick.emit(1, "first")
            await asyncio.wait_for(arrived.wait(), 2)
        return got

    assert asyncio.run(main()) == [(1, "first")]


def test_emission_from_a_method_and_keyword_arguments(client: EchoClient) -> None:
    collector = Collector(3)
    client.tick.connect(collector)
    client.burst(3)  # oneway: the server emits from its worker thread
    assert collector.done.wait(5)
    assert collector.items == [(0, "tick 0"), (1, "tick 1"), (2, "tick 2")]


def test_emission_from_many_threads(client: EchoClient, echo: Echo) -> None:
    collector = Collector(8 * 25)
    client.tick.connect(collector)

    def emit(thread: int) -> None:
        for i in range(25):
            echo.tick.emit(i, str(thread))

    threads = [threading.Thread(target=emit, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert collector.done.wait(5)
    assert sorted(collector.items) == sorted((i, str(t)) for t in range(8) for i in range(25))
    assert client.tick.missed == 0


def test_raising_callback_is_logged_and_delivery_goes_on(client: EchoClient, echo: Echo, caplog) -> None:  # type: ignore[no-untyped-def]
    def bad(n: int, label: str) -> None:
        raise RuntimeError("callback broke")

    collector = Collector(2)
    client.tick.connect(bad)
    client.tick.connect(collector)
    echo.tick.emit(1, "a")
    echo.tick.emit(2, "b")
    assert collector.done.wait(5)
    assert "a callback of tick raised" in caplog.text


def test_disconnect_stops_delivery(client: EchoClient, echo: Echo) -> None:
    first = Collector(1)
    second = Collector(2)
    client.tick.connect(first)
    client.tick.connect(second)
    echo.tick.emit(1, "both")
    assert first.done.wait(5)
    client.tick.disconnect(first)
    echo.tick.emit(2, "second only")
    assert second.done.wait(5)
    assert first.items == [(1, "both")]


def test_notify_fires_once_per_real_change(client: EchoClient, echo: Echo) -> None:
    seen: list[int] = []
    got = threading.Event()

    def on_level(level: int) -> None:
        seen.append(level)
        got.set()

    client.levelChanged.connect(on_level)
    for value in (1, 1, 2, 2, 2, 3):
        echo.level = value
    deadline = time.monotonic() + 5
    while len(seen) < 3 and time.monotonic() < deadline:
        got.wait(0.05)
        got.clear()
    assert seen == [1, 2, 3]
