"""A client follows its device for calls and signals: a server restarted on its address, a device moved elsewhere.

Each test waits for a re-subscription the client makes in the background by emitting
on the device until the callback has the emission (an event with a timeout between
tries), so no test sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import AsyncEchoClient, EchoClient

from runtime import Registry

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}

DEVICE = textwrap.dedent(
    """
    import sys
    from fixtures.echo_device import FAST_HEARTBEAT, Echo

    device = Echo()
    with device.running("tcp://127.0.0.1:0", registry=sys.argv[1], name=sys.argv[2], heartbeat=FAST_HEARTBEAT) as bound:
        print(bound, flush=True)
        for line in sys.stdin:  # each line is emitted as a tick with that label
            device.tick.emit(0, line.strip())
    """
)


class Seen:
    """The labels of the ticks a callback received; ``has(label, timeout)`` waits for one."""

    def __init__(self) -> None:
        self.labels: list[str] = []
        self.changed = threading.Condition()

    def __call__(self, n: int, label: str) -> None:
        with self.changed:
            self.labels.append(label)
            self.changed.notify_all()

    def has(self, label: str, timeout: float) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: label in self.labels, timeout)


def reaches(emit: Callable[[str], None], seen: Seen, label: str, within: float = 5.0) -> bool:
    """Emit ``label`` until the callback has it: the client re-subscribes in the background."""
    give_up = time.monotonic() + within
    while time.monotonic() < give_up:
        emit(label)
        if seen.has(label, 0.05):
            return True
    return False


def ticks(server: Echo) -> Callable[[str], None]:
    return lambda label: server.tick.emit(0, label)


@pytest.fixture
def registry() -> Iterator[str]:
    with Registry(ttl=0.6, heartbeat=0.2).running("tcp://127.0.0.1:0") as address:
        yield address


class Device:
    """An Echo device in a process of its own, registered as ``name``; each ``emit(label)`` is a tick."""

    def __init__(self, registry: str, name: str) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", DEVICE, registry, name],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=TESTS,
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()

    def emit(self, label: str) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(label + "\n")
        self.process.stdin.flush()

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)


@pytest.fixture
def devices() -> Iterator[Callable[[str, str], Device]]:
    started: list[Device] = []

    def start(registry: str, name: str) -> Device:
        started.append(Device(registry, name))
        return started[-1]

    try:
        yield start
    finally:
        for device in started:
            device.process.kill()
            device.process.wait(10)


def test_signal_callback_keeps_receiving_after_the_server_restarts_on_the_same_address() -> None:
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(contextlib.ExitStack())
        address = first.enter_context(Echo().running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT))
        client = stack.enter_context(EchoClient.connect(address, timeout=1.0, heartbeat=FAST_HEARTBEAT))
        seen = Seen()
        client.tick.connect(seen)
        first.close()  # the server stops; the client stays
        again = Echo()
        assert stack.enter_context(again.running(address, heartbeat=FAST_HEARTBEAT)) == address
        assert reaches(ticks(again), seen, "after the restart")
        assert client.tick.missed == 0
        assert client.add(1) == 2


def test_client_found_by_name_follows_a_device_that_moved_for_calls_and_signals(registry: str) -> None:
    with contextlib.ExitStack() as stack:
        first = stack.enter_context(contextlib.ExitStack())
        device = Echo()
        old = first.enter_context(device.running("tcp://127.0.0.1:0", registry=registry, name="mover"))
        client = stack.enter_context(
            EchoClient.lookup("mover", registry=registry, timeout=1.0, heartbeat=FAST_HEARTBEAT)
        )
        seen = Seen()
        client.tick.connect(seen)
        assert reaches(ticks(device), seen, "before")
        first.close()
        moved = Echo()
        new = stack.enter_context(moved.running("tcp://127.0.0.1:0", registry=registry, name="mover"))
        assert new != old
        assert client.add(2, timeout=10.0) == 3
        assert client.address == new
        assert reaches(ticks(moved), seen, "after the move")


def test_listen_only_client_follows_a_killed_device_to_its_new_port(
    registry: str, devices: Callable[[str, str], Device]
) -> None:
    first = devices(registry, "stage")
    with EchoClient.lookup("stage", registry=registry, timeout=1.0, heartbeat=FAST_HEARTBEAT) as camera:
        seen = Seen()
        camera.tick.connect(seen)  # the camera only listens: it never calls the stage
        assert reaches(first.emit, seen, "position 1")
        first.kill()
        second = devices(registry, "stage")
        assert second.address != first.address
        assert reaches(second.emit, seen, "position 2", within=10.0)
        assert camera.address == second.address


def test_async_client_found_by_name_follows_its_device_for_calls_and_signals(registry: str) -> None:
    async def main() -> None:
        with contextlib.ExitStack() as servers:
            first = Echo()
            old = servers.enter_context(first.running("tcp://127.0.0.1:0", registry=registry, name="roamer"))
            async with AsyncEchoClient.lookup(
                "roamer", registry=registry, timeout=1.0, heartbeat=FAST_HEARTBEAT
            ) as client:
                got: asyncio.Queue[str] = asyncio.Queue()
                await client.tick.connect(lambda n, label: got.put_nowait(label))
                first.tick.emit(0, "before")
                assert await asyncio.wait_for(got.get(), 5) == "before"
                servers.close()
                second = Echo()
                new = servers.enter_context(second.running("tcp://127.0.0.1:0", registry=registry, name="roamer"))
                assert new != old
                assert await client.add(2, timeout=10.0) == 3
                assert client.address == new
                give_up = time.monotonic() + 5.0
                while time.monotonic() < give_up:
                    second.tick.emit(0, "after the move")
                    with contextlib.suppress(TimeoutError):
                        if await asyncio.wait_for(got.get(), 0.05) == "after the move":
                            return
                pytest.fail("no emission of the moved device reached the callback")

    asyncio.run(main())


def test_async_call_goes_to_where_the_registry_places_a_moved_device(registry: str) -> None:
    async def main() -> None:
        with contextlib.ExitStack() as servers:
            old = servers.enter_context(Echo().running("tcp://127.0.0.1:0", registry=registry, name="walker"))
            async with AsyncEchoClient.lookup("walker", registry=registry, timeout=1.0) as client:
                assert await client.add(1) == 2
                servers.close()
                new = servers.enter_context(Echo().running("tcp://127.0.0.1:0", registry=registry, name="walker"))
                assert new != old
                assert await asyncio.gather(*(client.add(n, timeout=10.0) for n in range(5))) == [1, 2, 3, 4, 5]
                assert client.address == new

    asyncio.run(main())
