# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Lifecycle and robustness: lost servers, clean stops, prompt exits, handshakes, hostile messages."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import INTERFACE, AsyncEchoClient, EchoClient
from fixtures.runtime_fixtures import address, client, echo  # noqa: F401

from runtime import Client, ConnectionLost, FieldSpec, InterfaceMismatch, Limits, MethodSpec, ProtocolError

TESTS = Path(__file__).resolve().parent
ROOT = TESTS.parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(ROOT)])}


@pytest.fixture
def device_process() -> Iterator[tuple[subprocess.Popen[str], str]]:
    process = subprocess.Popen(
        [sys.executable, "-m", "fixtures.echo_device", "tcp://127.0.0.1:0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=ENV,
        cwd=TESTS,
    )
    try:
        assert process.stdout is not None
        yield process, process.stdout.readline().strip()
    finally:
        process.kill()
        process.wait(10)


def test_server_killed_during_call_without_timeout_gives_connection_lost(
    device_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, address = device_process
    with EchoClient.connect(address, heartbeat=FAST_HEARTBEAT) as client:
        assert client.add(1) == 2
        threading.Timer(0.3, process.kill).start()
        start = time.monotonic()
        with pytest.raises(ConnectionLost):
            client.sleep(30.0, timeout=None)
        assert time.monotonic() - start < 5


def test_async_server_killed_during_call_gives_connection_lost(
    device_process: tuple[subprocess.Popen[str], str],
) -> None:
    process, address = device_process

    async def main() -> None:
        async with AsyncEchoClient.connect(address, heartbeat=FAST_HEARTBEAT) as client:
            asyncio.get_running_loop().call_later(0.3, process.kill)
            with pytest.raises(ConnectionLost):
                await client.sleep(30.0, timeout=None)

    asyncio.run(asyncio.wait_for(main(), 10))


def test_process_exits_promptly_with_no_stray_threads() -> None:
    script = textwrap.dedent(
        """
        import asyncio, threading, time
        from fixtures.echo_device import Echo
        from fixtures.generated.echo import AsyncEchoClient, EchoClient
        start = time.monotonic()
        with Echo().running("tcp://127.0.0.1:0") as address:
            with EchoClient.connect(address) as client:
                client.tick.connect(print)
                assert client.add(1) == 2
                worker = threading.Thread(target=client.add, args=(2,))
                worker.start(); worker.join()
            async def main():
                async with AsyncEchoClient.connect(address) as aclient:
                    await aclient.tick.connect(print)
                    assert await aclient.add(3) == 4
            asyncio.run(main())
        assert threading.enumerate() == [threading.main_thread()], threading.enumerate()
        print("clean", round(time.monotonic() - start, 2))
        """
    )
    start = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-c", script], env=ENV, cwd=TESTS, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    assert "clean" in done.stdout
    assert time.monotonic() - start < 10


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_cleanly_on_signal(signum: int) -> None:
    script = textwrap.dedent(
        """
        import threading
        from fixtures.echo_device import Echo
        server = Echo()
        def announce():
            import time
            while server.address is None:
                time.sleep(0.01)
            print(server.address, flush=True)
        threading.Thread(target=announce, daemon=True).start()
        server.serve("tcp://127.0.0.1:0")
        print("stopped", flush=True)
        """
    )
    process = subprocess.Popen([sys.executable, "-c", script], env=ENV, cwd=TESTS, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        address = process.stdout.readline().strip()
        with EchoClient.connect(address.replace("0.0.0.0", "127.0.0.1")) as client:
            assert client.add(1) == 2
        process.send_signal(signum)
        assert process.wait(10) == 0
        assert process.stdout.read().strip() == "stopped"
    finally:
        process.kill()
        process.wait(10)


def _variant(**changes: object) -> type[Client]:
    interface = dataclasses.replace(INTERFACE, **changes)  # type: ignore[arg-type]

    class Variant(Client, interface=interface):
        pass

    return Variant


def test_interface_mismatch_lists_differences_with_both_sides(address: str) -> None:
    methods = (
        *tuple(
            dataclasses.replace(m, args=(FieldSpec("a", "str"),)) if m.name == "add" else m for m in INTERFACE.methods
        ),
        MethodSpec("teleport"),
    )
    with pytest.raises(InterfaceMismatch) as caught:
        _variant(version=2, methods=methods).connect(address)
    message = str(caught.value)
    assert message.startswith("client Echo v2 / server Echo v1:")
    assert "major versions differ" in message
    assert "method teleport is missing on the server" in message
    assert "'a' is str on the client but int on the server" in message


def test_compatible_difference_connects_with_a_warning(address: str, caplog: pytest.LogCaptureFixture) -> None:
    older = _variant(
        methods=tuple(m for m in INTERFACE.methods if m.name != "fast"),
        signals=tuple(s for s in INTERFACE.signals if s.name != "tick"),
    )
    with older.connect(address) as connected:
        assert connected._call("add", {"a": 1}) == 2
    assert "differ (compatible)" in caplog.text
    assert "the server has method fast as well" in caplog.text


def test_limits_that_would_refuse_every_message_are_refused() -> None:
    with pytest.raises(ValueError, match="at least one frame"):
        Limits(max_frames=0)
    with pytest.raises(ValueError, match="at least one frame"):
        Limits(max_bytes=0)


def test_a_client_refuses_a_reply_larger_than_its_limit() -> None:
    with (
        Echo().running("tcp://127.0.0.1:0") as address,
        EchoClient.connect(address, limits=Limits(max_bytes=100_000)) as client,
    ):
        assert client.echo("x" * 10) == "x" * 10
        with pytest.raises(ProtocolError, match="more than the limit of 100000"):
            client.echo("x" * 200_000)
        assert client.echo("y") == "y"


def test_hostile_messages_get_error_replies_and_server_keeps_serving() -> None:
    server = Echo()
    with server.running("tcp://127.0.0.1:0", limits=Limits(max_frames=8, max_bytes=1 << 20)) as address:
        dealer = zmq.Context.instance().socket(zmq.DEALER)
        dealer.setsockopt(zmq.LINGER, 0)
        dealer.connect(address)
        header = {"v": 1, "id": 7, "k": "call", "n": "array", "x": 1}
        cases = [
            [b"not json"],
            [b'{"v": 99, "id": 1}'],
            [b"[1, 2]"],
            [json.dumps(header | {"b": {"value": {"$a": [1, "|O", [1]]}}}).encode(), b"x" * 8],
            [json.dumps(header | {"b": {"value": {"$a": [1, "<u2", [100]]}}}).encode(), b"short"],
            [json.dumps(header | {"b": {"value": {"$a": [5, "<u2", [1]]}}}).encode()],
            [json.dumps(header | {"b": {"value": {"$zz": 1}}}).encode()],
            [json.dumps({"v": 1, "id": 8, "k": "call", "n": "echo", "b": {}}).encode()] + [b""] * 20,
            [json.dumps({"v": 1, "id": 9, "k": "call", "n": "echo", "b": {}}).encode(), b"x" * (2 << 20)],
            [json.dumps({"v": 1, "id": 10, "k": "call", "n": "__init__", "b": {}}).encode()],
            [json.dumps({"v": 1, "id": 11, "k": "set", "n": "_zidl_engine", "b": None}).encode()],
            [json.dumps({"v": 1, "id": 12, "k": "call", "n": "echo", "b": {"value": "x" * (2 << 20)}}).encode()],
        ]
        try:
            for frames in cases:
                dealer.send_multipart(frames)
                assert dealer.poll(5000), frames[0]
                reply = json.loads(dealer.recv_multipart()[0])
                assert reply["k"] == "err", (frames[0], reply)
            with EchoClient.connect(address) as client:
                assert client.add(1) == 2
        finally:
            dealer.close(linger=0)
