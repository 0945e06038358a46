# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""The bridge at its edges: the command line, callers that leave, CurveZMQ on each side, hostile peers on B's side."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import zmq
from fixtures.bridging import BIND, BRIDGE_HEARTBEAT, Networks, address_in, networks, wait_for_name  # noqa: F401
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import EchoClient
from fixtures.raw_peers import eventually
from fixtures.stream_device import Streamer

from runtime import (
    AuthenticationFailed,
    Bridge,
    ConnectionLost,
    CurveClient,
    CurveServer,
    Limits,
    ProtocolError,
    Registry,
    write_keypair,
)

TESTS = Path(__file__).resolve().parent
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), str(TESTS.parent)])}
ZIDL = str(Path(sys.executable).parent / "zidl")


def zidl(*args: str, registry: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [ZIDL, *args, "--registry", registry], capture_output=True, text=True, timeout=20.0, check=False
    )


@contextlib.contextmanager
def bridge_command(networks: Networks) -> Iterator[subprocess.Popen[bytes]]:
    """``zidl bridge`` as a process of its own."""
    command = [ZIDL, "bridge", "--registry", networks.a, "--to", networks.b, "--bind", BIND]
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(5)


def test_zidl_bridge_serves_the_cli_and_takes_its_names_back_after_a_kill(networks: Networks) -> None:
    with Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT) as address:
        with bridge_command(networks) as first:
            bridged = wait_for_name(networks.b, "echo", not_at=address)
            assert bridged is not None
            called = zidl("call", "echo", "add", "a=2", "b=3", registry=networks.b)
            assert (called.returncode, called.stdout.strip()) == (0, "5"), called.stderr
            first.kill()
        with bridge_command(networks) as second:
            again = wait_for_name(networks.b, "echo", not_at=bridged.address)  # the same name, at the new bridge
            assert again is not None and again.name == "echo"
            assert zidl("get", "echo", "level", registry=networks.b).stdout.strip() == "0"
            second.send_signal(signal.SIGTERM)
            assert second.wait(10) == 0
        assert wait_for_name(networks.b, "echo", gone=True) is None  # a clean stop unregisters


def test_zidl_bridge_mistakes_are_one_line() -> None:
    done = subprocess.run(
        [ZIDL, "bridge", "--registry", "tcp://127.0.0.1:1", "--to", "tcp://127.0.0.1:2", "--bind", "tcp://*:6000"],
        capture_output=True,
        text=True,
        timeout=20.0,
        check=False,
    )
    assert done.returncode == 1
    assert done.stderr.count("\n") == 1 and "tcp://HOST:0" in done.stderr


def test_a_caller_that_leaves_b_has_its_stream_cancelled_on_the_device(networks: Networks) -> None:
    streamer = Streamer()
    with (
        streamer.running(BIND, registry=networks.a, name="streamer", heartbeat=FAST_HEARTBEAT),
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running(),
    ):
        reader = subprocess.Popen(
            [sys.executable, "-m", "fixtures.stream_reader", address_in(networks.b, "streamer"), "stream"],
            stdout=subprocess.PIPE,
            text=True,
            env=ENV,
        )
        try:
            assert reader.stdout is not None and reader.stdout.readline().strip() == "reading"
            progress = streamer.last("ticks")
            reader.kill()
            assert progress.closed.wait(5.0)  # the bridge closed its connection; the device cancelled the stream
        finally:
            reader.kill()
            reader.wait(5)
            streamer.release.set()


def test_curve_on_each_side_with_the_bridges_own_key_pair(tmp_path: Path) -> None:
    keys = {name: write_keypair(tmp_path / name, name) for name in ("registry_a", "registry_b", "echo", "bridge")}
    keys |= {name: write_keypair(tmp_path / name, name) for name in ("laptop", "stranger")}
    public = {name: pair[0] for name, pair in keys.items()}
    secret = {name: pair[1] for name, pair in keys.items()}
    key_of = {name: CurveClient(None, secret_key=secret[name]).public_key for name in keys}
    registry_a = CurveServer(secret["registry_a"], allowed=[public["echo"], public["bridge"]])
    registry_b = CurveServer(
        secret["registry_b"], allowed={"echo": key_of["bridge"], "laptop": key_of["laptop"], "x": key_of["stranger"]}
    )
    with (
        Registry(curve=registry_a).running(BIND) as a,
        Registry(curve=registry_b).running(BIND) as b,
        Echo().running(
            BIND,
            registry=a,
            name="echo",
            heartbeat=FAST_HEARTBEAT,
            curve=CurveServer(secret["echo"], allowed=[public["bridge"]]),
            registry_curve=CurveClient(public["registry_a"], secret_key=secret["echo"]),
        ),
        Bridge(
            a,
            b,
            bind=BIND,
            heartbeat=BRIDGE_HEARTBEAT,
            curve=CurveServer(secret["bridge"], allowed=[public["laptop"]]),
            registry_curve=CurveClient(public["registry_a"], secret_key=secret["bridge"]),
            to_curve=CurveClient(public["registry_b"], secret_key=secret["bridge"]),
        ).running() as bridge,
    ):
        assert bridge.names == {"echo": "echo"}
        laptop = CurveClient(public["registry_b"], secret_key=secret["laptop"])
        with EchoClient.lookup("echo", registry=b, timeout=5.0, curve=laptop) as client:
            ticked = threading.Event()
            client.tick.connect(lambda n, label: ticked.set())
            client.burst(1)
            assert ticked.wait(5.0)
            assert len(client.blob(size=100_000).data) == 100_000
        stranger = CurveClient(public["registry_b"], secret_key=secret["stranger"])
        with pytest.raises(AuthenticationFailed):
            EchoClient.lookup("echo", registry=b, timeout=5.0, curve=stranger)


@pytest.fixture
def bridge(networks: Networks) -> Iterator[Bridge]:
    """An Echo bridged by a bridge that serves at most two connections to it."""
    with (
        Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT),
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT, max_callers=2).running() as running,
    ):
        yield running


@pytest.fixture
def bridged_echo(networks: Networks, bridge: Bridge) -> str:
    """The bridged Echo's address on B's side."""
    return address_in(networks.b, "echo")


def raw_exchange(address: str, frames: list[bytes]) -> list[bytes]:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVTIMEO, 5000)
    try:
        sock.connect(address)
        sock.send_multipart(frames)
        return sock.recv_multipart()
    finally:
        sock.close()


def test_a_malformed_request_gets_an_error_reply_from_the_bridge(bridged_echo: str) -> None:
    reply = raw_exchange(bridged_echo, [b'{"v":1,"id":7,"k":"call","n":"add","b":{"a":1,'])
    assert b'"err"' in reply[0] and b"protocol" in reply[0]
    reply = raw_exchange(bridged_echo, [b'{"v":1,"id":8,"k":"call","n":"add","b":{}}', *[b"x"] * 2000])
    assert b'"id":8' in reply[0] and b"frames" in reply[0]
    assert raw_exchange(bridged_echo, [b'{"v":1,"id":9,"k":"ping"}'])[0].startswith(b'{"v":1,"id":9,"k":"ok"')


def test_callers_past_the_bound_are_refused(bridge: Bridge, bridged_echo: str) -> None:
    with (
        EchoClient.connect(bridged_echo, timeout=5.0) as one,
        EchoClient.connect(bridged_echo, timeout=5.0) as two,
    ):
        assert (one.add(1, 1), two.add(2, 2)) == (2, 4)
        with pytest.raises(ProtocolError, match="connections"):
            EchoClient.connect(bridged_echo, timeout=5.0)
    eventually(lambda: _callers(bridge) == 0)  # the bridge saw them leave
    with EchoClient.connect(bridged_echo, timeout=5.0) as three:  # their places are free
        assert three.add(3, 3) == 6


def _callers(bridge: Bridge) -> int:
    usage = bridge.usage("echo")
    assert usage is not None
    return usage.callers


def test_a_call_whose_own_connection_to_the_device_drops_ends_as_lost(networks: Networks) -> None:
    # the device's libzmq drops a connection that sends a frame far over its limits (MAXMSGSIZE): the bridge's limits
    # let it by, so the caller's own connection through the bridge drops while the device and the others stay
    small = Limits(max_bytes=1 << 20, max_header_bytes=8192)
    with (
        Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT, limits=small),
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge,
        EchoClient.lookup("echo", registry=networks.b, timeout=5.0, heartbeat=FAST_HEARTBEAT) as client,
    ):
        assert client.add(1, 2) == 3
        with pytest.raises(ConnectionLost):  # as a direct caller's would: not a wait until its timeout
            client.echo(b"x" * (66 << 20), timeout=30.0)
        assert bridge.away == set()
        assert client.add(2, 3) == 5  # its connection to the device made again


def test_a_device_that_refuses_the_bridges_key_is_logged_with_why(
    networks: Networks, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    _, secret = write_keypair(tmp_path / "echo", "echo")
    someone, _ = write_keypair(tmp_path / "someone", "someone")
    device_curve = CurveServer(secret, allowed=[someone])  # not the bridge's key
    with (
        caplog.at_level(logging.WARNING, logger="runtime.bridge"),
        Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT, curve=device_curve),
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT).running() as bridge,
    ):
        eventually(lambda: any("refused this client's key" in record.getMessage() for record in caplog.records))
        assert bridge.away == {"echo"} and bridge.names == {}
