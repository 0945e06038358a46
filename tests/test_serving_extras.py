"""What a served device offers beyond calls: its accepted name, an advertised host, systemd readiness."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.still_stage import StillStage

from runtime import Registry, list_devices


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
