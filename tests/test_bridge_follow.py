# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""A bridge follows both sides: devices that restart, come and go, or are away for a while; a bridge that restarts.

Clients on B's side see nothing of it but the calls in flight when a device went.
Waits are on events (the bridge's ``wait``, the registries' listings, callbacks),
never on sleeps.
"""

from __future__ import annotations

import contextlib
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.bridging import BIND, BRIDGE_HEARTBEAT, Networks, networks, wait_for_name  # noqa: F401
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import EchoClient

from runtime import Bridge, ConnectionLost, current_call, list_devices

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}

DEVICE = textwrap.dedent(
    """
    import sys, threading
    from fixtures.echo_device import FAST_HEARTBEAT, Echo

    device = Echo()
    with device.running("tcp://127.0.0.1:0", registry=sys.argv[1], name="echo", heartbeat=FAST_HEARTBEAT) as bound:
        threading.Thread(target=lambda: device.sleeping.wait() and print("sleeping", flush=True), daemon=True).start()
        print(bound, flush=True)
        for line in sys.stdin:  # each line is emitted as a tick with that label
            device.tick.emit(0, line.strip())
    """
)


class Recorder(Echo):
    """An Echo that records its oneway bursts, in order, and how long its callers would still wait."""

    def __init__(self) -> None:
        super().__init__()
        self.bursts: list[int] = []
        self.burst_came = threading.Condition()
        self.time_left: list[float | None] = []

    def burst(self, n: int) -> None:
        with self.burst_came:
            self.bursts.append(n)
            self.burst_came.notify_all()

    def add(self, a: int, b: int = 1) -> int:
        self.time_left.append(current_call().time_left)
        return a + b

    def wait_for_bursts(self, count: int) -> bool:
        with self.burst_came:
            return self.burst_came.wait_for(lambda: len(self.bursts) >= count, 5.0)


@contextlib.contextmanager
def device_process(registry: str) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        [sys.executable, "-c", DEVICE, registry],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("tcp://")
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


def emit_until_received(process: subprocess.Popen[str], received: threading.Event) -> bool:
    """Emit a tick from the device process until the callback has one (a re-subscription may be under way)."""
    assert process.stdin is not None
    for _ in range(50):
        process.stdin.write("again\n")
        process.stdin.flush()
        if received.wait(0.1):
            return True
    return False


def test_a_device_restarted_behind_the_bridge_is_found_again(networks: Networks) -> None:
    with (
        device_process(networks.a) as first,
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge,
        EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT) as client,
    ):
        received = threading.Event()
        client.tick.connect(lambda n, label: received.set())
        assert client.add(1, 2) == 3
        lost: list[BaseException] = []
        in_flight = threading.Thread(target=lambda: _call_sleep(client, lost))
        in_flight.start()
        assert first.stdout is not None and first.stdout.readline().strip() == "sleeping"
        killed_at = time.monotonic()
        first.kill()
        in_flight.join(10.0)
        assert lost and isinstance(lost[0], ConnectionLost), lost  # the call in flight, and only it
        assert time.monotonic() - killed_at < 2.0
        assert bridge.wait("echo", present=False)

        with device_process(networks.a) as second:
            assert client.add(2, 3) == 5  # held until the device is back, then answered
            received.clear()
            assert emit_until_received(second, received)  # the same callback, from the new device
        assert bridge.names == {"echo": "echo"}


def _call_sleep(client: EchoClient, outcome: list[BaseException]) -> None:
    try:
        client.sleep(10.0, timeout=15.0)
    except BaseException as exc:
        outcome.append(exc)


def test_a_bridge_restarted_in_front_of_its_clients_is_followed(networks: Networks) -> None:
    echo = Echo()
    with echo.running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
        with Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running():
            before = wait_for_name(networks.b, "echo")
            assert before is not None
            client = EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT)
            received = threading.Event()
            client.tick.connect(lambda n, label: received.set())
            assert client.add(1, 2) == 3
        with client, Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge:
            assert bridge.names == {"echo": "echo"}  # its name back
            assert client.add(3, 4) == 7
            received.clear()
            for _ in range(50):
                echo.tick.emit(0, "again")
                if received.wait(0.1):
                    break
            assert received.is_set()


def test_oneway_calls_made_while_the_device_is_away_are_delivered_in_order(networks: Networks) -> None:
    with Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge:
        with Recorder().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            assert wait_for_name(networks.b, "echo") is not None
            client = EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT)
            assert client.add(0, 0) == 0
        assert bridge.wait("echo", present=False)
        with client:
            for n in range(1, 6):
                client.burst(n)  # oneway: returns at once, held by the bridge
            answer: list[int] = []
            waiting = threading.Thread(target=lambda: answer.append(client.add(1, 2, timeout=5.0)))
            waiting.start()
            back = Recorder()
            with back.running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
                assert back.wait_for_bursts(5)
                waiting.join(5.0)
            assert back.bursts == [1, 2, 3, 4, 5]
            assert answer == [3]
            left = back.time_left[-1]
            assert left is not None and left < 5.0  # what was left of the caller's wait, not a fresh one


def test_oneway_calls_over_the_bound_are_counted_and_logged(
    networks: Networks, caplog: pytest.LogCaptureFixture
) -> None:
    bridge = Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT, max_held=3)
    with bridge.running():
        with Recorder().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            assert wait_for_name(networks.b, "echo") is not None
            client = EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT)
            assert client.add(0, 0) == 0
        assert bridge.wait("echo", present=False)
        with client, caplog.at_level(logging.WARNING, logger="runtime.bridge"):
            for n in range(1, 6):
                client.burst(n)
            back = Recorder()
            with back.running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
                assert back.wait_for_bursts(3)
                assert client.add(1, 1) == 2  # after the held ones: the device has all it will get
            assert back.bursts == [1, 2, 3]
    assert any("turned away" in record.getMessage() for record in caplog.records)


def test_devices_that_come_and_go_on_a_appear_and_disappear_on_b(networks: Networks) -> None:
    only = {"echo", "other"}
    with Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT, only=only, away=0.2).running():
        with (
            Echo().running(BIND, registry=networks.a, name="other", heartbeat=FAST_HEARTBEAT),
            Echo().running(BIND, registry=networks.a, name="unbridged", heartbeat=FAST_HEARTBEAT),
        ):
            record = wait_for_name(networks.b, "other")
            assert record is not None and record.interface == "Echo"
            with EchoClient.lookup("other", registry=networks.b, timeout=5.0) as other:
                assert other.add(1, 1) == 2
            assert "unbridged" not in {device.name for device in list_devices(registry=networks.b)}
        assert wait_for_name(networks.b, "other", gone=True) is None


def test_a_device_restarted_on_its_own_port_behind_the_bridge_is_found_again(networks: Networks) -> None:
    with Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge:
        first = Echo()
        with first.running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT) as address:
            assert wait_for_name(networks.b, "echo") is not None
            client = EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT)
            received = threading.Event()
            client.tick.connect(lambda n, label: received.set())
            assert client.add(1, 2) == 3
        assert bridge.wait("echo", present=False)
        second = Echo()
        with client, second.running(address, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            assert client.add(2, 2) == 4
            for _ in range(50):  # the bridge subscribes again at the new publisher's port
                second.tick.emit(0, "again")
                if received.wait(0.1):
                    break
            assert received.is_set()
