# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Faults a rig meets: processes killed mid-call, a registry that restarts, crowds, slow subscribers, hung code.

Related tests elsewhere: ``test_runtime_lifecycle`` (a server killed during a call
with no timeout gives ``ConnectionLost``, blocking and asyncio), ``test_runtime_calls``
(a long call does not block handshakes or property reads; a call after a timeout
works; a client follows a server restarted on the same address) and
``test_registry`` (a restarted registry has a stand-in device back within two
heartbeats).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import EchoClient, Mode
from fixtures.runtime_fixtures import address, client, echo  # noqa: F401

from runtime import CallTimeout, ConnectionLost
from runtime.registry import RegistryClient, watch

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}

DEVICE = textwrap.dedent(
    """
    import sys
    from fixtures.echo_device import FAST_HEARTBEAT, Echo

    class Announcing(Echo):
        def sleep(self, seconds):
            print("sleeping", flush=True)
            return super().sleep(seconds)

    with Announcing().running(sys.argv[1], heartbeat=FAST_HEARTBEAT) as bound:
        print(bound, flush=True)
        sys.stdin.read()
    """
)


class Processes:
    """Processes a test starts; every one is killed and reaped at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[str]] = []

    def start(self, *args: str) -> subprocess.Popen[str]:
        process = subprocess.Popen(
            [sys.executable, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=ENV, cwd=TESTS
        )
        self.started.append(process)
        return process

    def device(self, address: str) -> tuple[subprocess.Popen[str], str]:
        process = self.start("-c", DEVICE, address)
        assert process.stdout is not None
        return process, process.stdout.readline().strip()


@pytest.fixture
def processes() -> Iterator[Processes]:
    owned = Processes()
    try:
        yield owned
    finally:
        for process in owned.started:
            process.kill()
            process.wait(10)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def test_server_killed_mid_call_fails_the_call_in_time_and_the_next_call_reaches_its_restart(
    processes: Processes,
) -> None:
    first, address = processes.device("tcp://127.0.0.1:0")
    assert first.stdout is not None
    with EchoClient.connect(address, heartbeat=FAST_HEARTBEAT) as caller:
        assert caller.add(1) == 2
        failed: list[BaseException] = []
        elapsed: list[float] = []

        def call() -> None:
            start = time.monotonic()
            try:
                caller.sleep(30.0, timeout=3.0)
            except (ConnectionLost, CallTimeout) as exc:
                failed.append(exc)
            elapsed.append(time.monotonic() - start)

        thread = threading.Thread(target=call)
        thread.start()
        assert first.stdout.readline().strip() == "sleeping"
        first.send_signal(signal.SIGKILL)
        thread.join(10)
        assert failed and elapsed[0] <= 3.0 + 0.5, (failed, elapsed)
        _, again = processes.device(address)
        assert again == address
        assert caller.add(2, timeout=5.0) == 3


def test_client_killed_mid_call_leaves_the_server_serving(address: str, echo: Echo, processes: Processes) -> None:
    script = textwrap.dedent(
        """
        import sys
        from fixtures.generated.echo import EchoClient
        EchoClient.connect(sys.argv[1]).sleep(0.3)
        """
    )
    doomed = processes.start("-c", script, address)
    assert echo.sleeping.wait(10)
    doomed.send_signal(signal.SIGKILL)
    doomed.wait(10)
    with EchoClient.connect(address, heartbeat=FAST_HEARTBEAT) as other:
        assert other.mode is Mode.idle
        assert other.fast() == "fast"
        assert other.add(1) == 2  # after the dead client's call, whose reply went nowhere


def test_registry_killed_and_restarted_has_every_device_back_within_two_heartbeats(processes: Processes) -> None:
    heartbeat = 1.0  # a served device's registration heartbeat
    address = f"tcp://127.0.0.1:{_free_port()}"
    registry_script = "import sys; from runtime import Registry; Registry().serve(sys.argv[1])"
    first = processes.start("-c", registry_script, address)
    names = [f"echo-{n}" for n in range(3)]
    with contextlib.ExitStack() as servers:
        for name in names:
            servers.enter_context(Echo().running("tcp://127.0.0.1:0", registry=address, name=name))
        with RegistryClient(address, timeout=10.0) as directory:
            assert sorted(d.name for d in directory.list_devices()) == names
        first.send_signal(signal.SIGKILL)
        first.wait(10)
        processes.start("-c", registry_script, address)
        with RegistryClient(address, timeout=10.0) as directory:
            directory.request("ping")  # the restarted registry answers: from here on the clock runs
        start = time.monotonic()
        back: set[str] = set()
        all_back = threading.Event()

        def seen(change: str, record: object) -> None:
            back.add(getattr(record, "name", ""))
            if back >= set(names):
                all_back.set()

        with watch(seen, registry=address):
            assert all_back.wait(2 * heartbeat + 1.0), f"back: {sorted(back)}"
        elapsed = time.monotonic() - start
        assert elapsed < 2 * heartbeat, f"every device back after {elapsed:.2f} s"


def test_fifty_clients_making_two_hundred_calls_each_get_their_own_replies(address: str) -> None:
    clients, calls = 50, 200
    wrong: list[str] = []
    done = [0] * clients
    ready = threading.Barrier(clients)

    def work(n: int) -> None:
        with EchoClient.connect(address) as mine:
            ready.wait(10)
            for i in range(calls):
                sent = f"{n}:{i}"
                got = mine.echo(sent)
                if got != sent:
                    wrong.append(f"client {n} sent {sent} and got {got!r}")
                done[n] += 1

    threads = [threading.Thread(target=work, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert wrong == []
    assert sum(done) == clients * calls


class Counter:
    """Counts emissions of ``tick``; ``finished`` is set once one numbered ``last`` or later arrives."""

    def __init__(self, last: int) -> None:
        self.last = last
        self.count = 0
        self.first: int | None = None
        self.latest = -1
        self.finished = threading.Event()

    def __call__(self, n: int, label: str) -> None:
        self.count += 1
        self.first = n if self.first is None else self.first
        self.latest = n
        if n >= self.last:
            self.finished.set()


def _emission_rate(server: Echo, watcher: Counter, emissions: int, label: str) -> tuple[float, int]:
    """Emissions/s until ``watcher`` has the last one, and the number the next emission takes."""
    start = time.monotonic()
    for n in range(emissions):
        server.tick.emit(n, label)
    tail = emissions
    while not watcher.finished.wait(0.2):  # a subscriber slowed by a busy machine may have lost the last ones
        assert tail < emissions + 150, "the subscriber stopped receiving"
        server.tick.emit(tail, label)
        tail += 1
    return emissions / (time.monotonic() - start), tail


def test_stalled_subscriber_does_not_slow_the_server_and_its_drops_are_counted(address: str, echo: Echo) -> None:
    emissions, label = 20_000, "x" * 4_000  # 80 MB: more than every queue and TCP buffer on the way can hold
    with EchoClient.connect(address) as fast, EchoClient.connect(address) as stalled:
        baseline = Counter(emissions - 1)
        fast.tick.connect(baseline)
        normal, _ = _emission_rate(echo, baseline, emissions, label)
        fast.tick.disconnect(baseline)

        release = threading.Event()
        stalled_got = Counter(-1)  # its last is set once the measured emissions are out

        def stall(n: int, label: str) -> None:
            release.wait(30)
            stalled_got(n, label)

        stalled.tick.connect(stall)
        measured = Counter(emissions - 1)
        fast.tick.connect(measured)
        with_stalled, extra = _emission_rate(echo, measured, emissions, label)
        stalled_got.last = extra  # emitted from here on: the stalled client has drained what was queued before
        release.set()
        while not stalled_got.finished.is_set():  # one gets through once the stalled client has drained its buffers
            assert extra < stalled_got.last + 300, "the released subscriber never caught up"
            echo.tick.emit(extra, "after")
            extra += 1
            stalled_got.finished.wait(0.1)
        # a publisher held up by the stalled subscriber would fall to nothing; a third leaves room for this VM's noise
        assert with_stalled > normal / 3, f"{with_stalled:.0f}/s with a stalled subscriber, {normal:.0f}/s without"
        assert stalled.tick.missed > 0
        assert stalled_got.first is not None
        assert stalled_got.count + stalled.tick.missed == stalled_got.latest - stalled_got.first + 1


class Hang(Echo):
    """``sleep`` hangs until the test lets it go."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()

    def sleep(self, seconds: float) -> float:
        self.sleeping.set()
        self.release.wait(30)
        return seconds


def test_hung_implementation_times_out_while_other_clients_read_properties() -> None:
    server = Hang()
    with server.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT) as bound:
        try:
            with EchoClient.connect(bound) as stuck, EchoClient.connect(bound) as other:
                start = time.monotonic()
                with pytest.raises(CallTimeout):
                    stuck.sleep(1.0, timeout=0.5)
                assert time.monotonic() - start < 1.0
                assert server.sleeping.is_set()
                for _ in range(20):
                    assert other.mode is Mode.idle
                    assert other.count == 0
                assert other.fast() == "fast"  # concurrent methods run beside the hung one
                with pytest.raises(CallTimeout):
                    other.add(1, timeout=0.3)  # serial: queued behind the hung call
                server.release.set()
                assert other.add(1, timeout=5.0) == 2
                assert stuck.add(2, timeout=5.0) == 3
        finally:
            server.release.set()
