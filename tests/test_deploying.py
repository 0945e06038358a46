"""The systemd units of examples/systemd/ as shipped: each runs its command line (its hosts and fixed ports made
local and free) under a fake notify socket, reports ready, feeds the watchdog and stops cleanly on SIGTERM."""

from __future__ import annotations

import configparser
import os
import queue
import re
import shlex
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from fixtures.lines import first_line
from zidl_devices.cnc import CncClient

from runtime import DeviceRecord, Registry, list_devices, watch

ROOT = Path(__file__).parent.parent
UNITS = ROOT / "examples" / "systemd"
WATCHDOG_USEC = 200_000
"""The watchdog the tests give (the units ask for 10 s, whose feeds come every 5 s)."""


def _service(unit: str) -> configparser.SectionProxy:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    parser.read_string((UNITS / unit).read_text())
    return parser["Service"]


def _command(service: configparser.SectionProxy, registry: str | None = None) -> list[str]:
    """The unit's ExecStart run here: this environment's zidl, this checkout's examples, free ports on the loopback."""
    text = service["ExecStart"]
    text = text.replace("/opt/zidl/venv/bin/", f"{Path(sys.executable).parent}/").replace("/opt/zidl/", f"{ROOT}/")
    text = re.sub(r"tcp://\*:\d+", "tcp://127.0.0.1:0", text)
    if registry is not None:
        text = text.replace("tcp://10.0.0.2:5555", registry)
    return shlex.split(text)


@pytest.fixture
def notify_socket(tmp_path: Path) -> Iterator[socket.socket]:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(tmp_path / "notify"))
    listener.settimeout(10.0)
    yield listener
    listener.close()


def _start(service: configparser.SectionProxy, command: list[str], notify: socket.socket) -> subprocess.Popen[str]:
    environment = dict(line.split("=", 1) for line in service.get("Environment", "").split())
    env = {**os.environ, **environment, "NOTIFY_SOCKET": notify.getsockname(), "WATCHDOG_USEC": str(WATCHDOG_USEC)}
    env.pop("ZIDL_REGISTRY", None)
    return subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)


def _stops_cleanly(process: subprocess.Popen[str], notify: socket.socket) -> None:
    process.send_signal(signal.SIGTERM)
    while (message := notify.recv(256)) == b"WATCHDOG=1":
        pass
    assert message == b"STOPPING=1"
    assert process.wait(timeout=10.0) == 0


@pytest.mark.parametrize("unit", ["zidl-registry.service", "zidl-stage.service"])
def test_a_unit_asks_for_notify_and_a_watchdog(unit: str) -> None:
    service = _service(unit)
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    assert service["Restart"] == "on-failure"


def test_the_registry_unit_reports_ready_feeds_its_watchdog_and_stops(notify_socket: socket.socket) -> None:
    service = _service("zidl-registry.service")
    registry = _start(service, _command(service), notify_socket)
    try:
        assert registry.stderr is not None
        line = first_line(registry.stderr)
        address = re.search(r"serving at (tcp://127\.0\.0\.1:\d+),", line)
        assert address is not None, line
        assert [notify_socket.recv(256) for _ in range(3)] == [b"READY=1", b"WATCHDOG=1", b"WATCHDOG=1"]
        assert list_devices(registry=address[1]) == []
        _stops_cleanly(registry, notify_socket)
    finally:
        registry.kill()
        registry.wait()


def test_the_device_unit_registers_serves_and_stops(notify_socket: socket.socket) -> None:
    service = _service("zidl-stage.service")
    changes: queue.Queue[tuple[str, DeviceRecord]] = queue.Queue()
    with (
        Registry().running("tcp://127.0.0.1:0") as registry,
        watch(lambda change, record: changes.put((change, record)), registry=registry),
    ):
        stage = _start(service, _command(service, registry), notify_socket)
        try:
            assert [notify_socket.recv(256) for _ in range(2)] == [b"READY=1", b"WATCHDOG=1"]
            change, record = changes.get(timeout=10.0)
            assert (change, record.name, record.interface) == ("added", "stage", "Cnc")
            with CncClient.connect(record.address) as client:
                assert client.get_position().x == 0.0
            _stops_cleanly(stage, notify_socket)
            assert changes.get(timeout=10.0)[0] == "removed"
        finally:
            stage.kill()
            stage.wait()
