"""What a served device offers beyond calls: its accepted name, an advertised host, systemd readiness, a fixed
signal address; and a client told at once that nothing listens where it connects."""

from __future__ import annotations

import asyncio
import queue
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.still_stage import StillStage
from zidl_devices.cnc import AsyncCncClient, CncClient

from runtime import CallTimeout, Registry, list_devices


@pytest.fixture
def registry() -> Iterator[str]:
    with Registry().running("tcp://127.0.0.1:0") as address:
        yield address


def test_the_accepted_name_is_readable_on_the_server(registry: str) -> None:
    first, second = StillStage(), StillStage()
    assert first.registered_name is None
    with (
        first.running("tcp://127.0.0.1:0", registry=registry, name="stage"),
        second.running("tcp://127.0.0.1:0", registry=registry, name="stage"),
    ):
        assert first.registered_name == "stage"
        assert second.registered_name == "stage-1"
    assert first.registered_name is None


def test_an_advertised_host_replaces_the_seen_address(registry: str) -> None:
    with StillStage().running("tcp://*:0", registry=registry, name="stage", advertise="stage-host.example") as address:
        (device,) = list_devices(registry=registry)
        port = address.rsplit(":", 1)[1]
        assert device.address == f"tcp://stage-host.example:{port}"


def test_serve_reports_ready_and_feeds_the_watchdog_under_systemd(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = str(tmp_path / "notify")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(path)
    listener.settimeout(10.0)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    monkeypatch.setenv("WATCHDOG_USEC", "200000")
    stage = StillStage()
    serving = threading.Thread(target=stage.serve, args=("tcp://127.0.0.1:0",))
    serving.start()
    try:
        messages = [listener.recv(256) for _ in range(3)]
        assert messages == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1"]
    finally:
        stage.stop()
        serving.join(timeout=10.0)
    assert not serving.is_alive()
    while (message := listener.recv(256)) == b"WATCHDOG=1":
        pass
    assert message == b"STOPPING=1"
    listener.close()


def test_signals_are_published_where_signals_bind_says(tmp_path: Path) -> None:
    """A fixed signal port for a firewall; an ipc path here, so the test needs no port of its own."""
    stage = StillStage()
    with (
        stage.running("tcp://127.0.0.1:0", signals_bind=f"ipc://{tmp_path}/signals") as address,
        CncClient.connect(address) as client,
    ):
        assert (tmp_path / "signals").is_socket()
        moves: queue.Queue[tuple[float, float, float]] = queue.Queue()
        client.positionChanged.connect(lambda x, y, z: moves.put((x, y, z)))
        stage.positionChanged.emit(1.0, 2.0, 3.0)
        assert moves.get(timeout=10.0) == (1.0, 2.0, 3.0)


@pytest.fixture
def refusing_address() -> Iterator[str]:
    """A TCP port bound and not listening: a connection to it is refused."""
    with socket.socket() as reserved:
        reserved.bind(("127.0.0.1", 0))
        yield f"tcp://127.0.0.1:{reserved.getsockname()[1]}"


def test_connecting_where_nothing_listens_fails_at_once(refusing_address: str) -> None:
    began = time.monotonic()
    with pytest.raises(CallTimeout, match=f"nothing listens at {refusing_address} \\(connection refused\\)"):
        CncClient.connect(refusing_address, timeout=30.0)
    assert time.monotonic() - began < 5.0, "the refusal ends the handshake, not its 30 s timeout"


def test_an_async_client_connecting_where_nothing_listens_fails_at_once(refusing_address: str) -> None:
    async def connect() -> None:
        await AsyncCncClient.connect(refusing_address, timeout=30.0)

    began = time.monotonic()
    with pytest.raises(CallTimeout, match=f"nothing listens at {refusing_address} \\(connection refused\\)"):
        asyncio.run(connect())
    assert time.monotonic() - began < 5.0, "the refusal ends the handshake, not its 30 s timeout"
