# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""The `zidl` command line against a live registry and devices, run as a user would run it."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fixtures.echo_device import Echo
from fixtures.lines import first_line
from fixtures.still_stage import StillStage
from fixtures.stream_device import Streamer
from fixtures.stream_fixtures import stream_address, streamer  # noqa: F401
from zidl_devices.camera import INTERFACE, CameraClient, CameraMode, CameraServer, Encoding, GetImageResult, ImageInfo

from codegen.load import load_interfaces
from runtime import CurveClient, CurveServer, NDArray, Registry
from runtime.registry import RegistryClient
from runtime.tools.terminal import printable

ZIDL = str(Path(sys.executable).parent / "zidl")


class TinyCamera(CameraServer):
    def get_image(self, lores: bool = False) -> GetImageResult:
        return GetImageResult(
            image=b"\xff\xd8fake-jpeg", info=ImageInfo(encoding=Encoding.jpeg, rotation=0, shape=(2, 3, 3))
        )

    def capture_array(self) -> NDArray:
        return np.zeros((2, 3, 3), dtype=np.uint8)

    def preview(self, fps: float = 5.0) -> Iterator[bytes]:
        for number in range(3):
            yield b"\xff\xd8\xff" + bytes([number])


@pytest.fixture(scope="module")
def rig() -> Iterator[str]:
    """A registry with a camera `cam` and a stage `stage` registered; yields the registry address."""
    with (
        Registry().running("tcp://127.0.0.1:0") as registry,
        TinyCamera().running("tcp://127.0.0.1:0", registry=registry, name="cam"),
        StillStage().running("tcp://127.0.0.1:0", registry=registry, name="stage"),
    ):
        yield registry


def zidl(*args: str, registry: str | None = None, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZIDL_REGISTRY": registry} if registry else dict(os.environ)
    return subprocess.run([ZIDL, *args], capture_output=True, text=True, timeout=timeout, env=env, check=False)


def test_ls_lists_the_registered_devices(rig: str) -> None:
    listed = zidl("ls", "--json", registry=rig)
    assert listed.returncode == 0, listed.stderr
    devices = {device["name"]: device for device in json.loads(listed.stdout)}
    assert set(devices) == {"cam", "stage"}
    assert devices["cam"]["interface"] == "Camera"
    assert devices["cam"]["version"] == 1
    assert devices["cam"]["address"].startswith("tcp://127.0.0.1:")
    table = zidl("ls", "--registry", rig)
    assert table.returncode == 0
    header, *rows = table.stdout.splitlines()
    assert header.split()[:4] == ["NAME", "INTERFACE", "VERSION", "ADDRESS"]
    assert sorted(row.split()[0] for row in rows) == ["cam", "stage"]


def test_describe_prints_an_idl_file_that_checks(rig: str, tmp_path: Path) -> None:
    described = zidl("describe", "cam", registry=rig)
    assert described.returncode == 0, described.stderr
    path = tmp_path / "camera.yaml"
    path.write_text(described.stdout)
    (loaded,) = load_interfaces([path])
    assert loaded.interface.hash == INTERFACE.hash


def test_call_get_and_set_by_name_and_by_address(rig: str, tmp_path: Path) -> None:
    output = tmp_path / "image.jpg"
    called = zidl("call", "cam", "get_image", "lores=true", "-o", str(output), "--json", registry=rig)
    assert called.returncode == 0, called.stderr
    result = json.loads(called.stdout)
    assert result["info"] == {"encoding": "jpeg", "rotation": 0, "shape": [2, 3, 3]}
    assert output.read_bytes() == b"\xff\xd8fake-jpeg"

    array = zidl("call", "cam", "capture_array", registry=rig)
    assert array.stdout.strip() == "<ndarray dtype=uint8 shape=(2, 3, 3)>"

    assert zidl("set", "cam", "mode", "video", registry=rig).returncode == 0
    assert zidl("get", "cam", "mode", registry=rig).stdout.strip() == "video"
    assert zidl("set", "cam", "config", '{"gain": 2}', registry=rig).returncode == 0
    assert json.loads(zidl("get", "cam", "config", "--json", registry=rig).stdout) == {"gain": 2.0}

    address = json.loads(zidl("ls", "--json", registry=rig).stdout)
    stage = next(device["address"] for device in address if device["name"] == "stage")
    moved = zidl("call", stage, "moveto", "x=1.5", "y=2")
    assert moved.returncode == 0, moved.stderr
    assert json.loads(zidl("call", stage, "get_position", "--json").stdout) == {"x": 0.0, "y": 0.0, "z": 0.0}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("get", "nosuchdevice", "mode"), "nosuchdevice"),
        (("call", "cam", "take_picture"), "take_picture"),
        (("get", "cam", "shutter"), "shutter"),
        (("set", "cam", "rotation", "90"), "rotation"),
        (("call", "stage", "moveto", "x=abc", "y=1"), "x"),
        (("call", "stage", "moveto", "x=500", "y=1"), "x"),
        (("call", "cam", "get_image", "lores"), "ARG=VALUE"),
        (("set", "cam", "mode", "fast"), "cam mode: invalid value: Input should be 'still' or 'video' (got 'fast')"),
        (("call", "stage", "moveto", "x=abc", "y=1"), "stage moveto: invalid argument: x: Input should be a valid"),
        (("get", "cam", "shutter"), "has no property 'shutter' (its properties: mode,"),
        (("get", "cam", "mod"), "; did you mean 'mode'?"),
        (("call", "cam", "get_imag"), "; did you mean 'get_image'?"),
        (("get", "cma", "mode"), "no device named 'cma' is registered at tcp://127.0.0.1:"),
        (("get", "cma", "mode"), "; did you mean 'cam'?"),
        (("get", "qqqqqq", "mode"), "(the registered devices: cam, stage)"),
        (("ls", "--registry", "nowhere"), "'nowhere' is not an address: give tcp://HOST:PORT (or HOST:PORT)"),
    ],
)
def test_mistakes_are_one_line_and_a_failure_status(rig: str, args: tuple[str, ...], expected: str) -> None:
    result = zidl(*args, registry=rig)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("zidl: ")
    assert expected in lines[0]
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("command", [("ls",), ("watch",), ("get", "cam", "mode"), ("describe", "cam")])
def test_every_command_that_needs_the_registry_fails_in_one_line_when_none_answers(command: tuple[str, ...]) -> None:
    result = zidl(*command, "--registry", "tcp://127.0.0.1:9", timeout=15.0)
    assert result.returncode == 1
    assert result.stderr == "zidl: no registry answered at tcp://127.0.0.1:9 within 2 s\n"


def test_a_registry_given_as_host_and_port_is_a_tcp_address(rig: str) -> None:
    listed = zidl("ls", "--json", "--registry", rig.removeprefix("tcp://"))
    assert listed.returncode == 0, listed.stderr
    assert {device["name"] for device in json.loads(listed.stdout)} == {"cam", "stage"}


def test_a_device_given_as_host_and_port_is_a_tcp_address(rig: str) -> None:
    with TinyCamera().running("tcp://127.0.0.1:0") as address:
        got = zidl("get", address.removeprefix("tcp://"), "mode")
    assert (got.returncode, got.stdout) == (0, "still\n"), got.stderr


def test_a_port_where_nothing_listens_is_said_at_once() -> None:
    with socket.socket() as reserved:  # bound and not listening: a connection to it is refused
        reserved.bind(("127.0.0.1", 0))
        address = f"tcp://127.0.0.1:{reserved.getsockname()[1]}"
        result = zidl("get", address, "mode")
    assert result.returncode == 1
    assert result.stderr == f"zidl: device at {address}: nothing listens at {address} (connection refused)\n"


def test_remote_errors_keep_their_type_declared_or_not() -> None:
    with Echo().running("tcp://127.0.0.1:0") as address:
        declared = zidl("call", address, "refuse")
        undeclared = zidl("call", address, "fail", "message=boom")
    assert declared.stderr == f"zidl: {address} refuse: Busy: the device is busy (mode='busy')\n"
    assert undeclared.stderr == f"zidl: {address} fail: ValueError: boom\n"


def test_registry_says_where_it_serves_as_it_starts(tmp_path: Path) -> None:
    events, heartbeats = f"ipc://{tmp_path}/events", f"ipc://{tmp_path}/heartbeats"
    command = [ZIDL, "registry", "--bind", "127.0.0.1:0", "--events-bind", events, "--heartbeats-bind", heartbeats]
    registry = subprocess.Popen(command, stderr=subprocess.PIPE, text=True)
    try:
        assert registry.stderr is not None
        line = first_line(registry.stderr)
        assert re.fullmatch(
            rf"zidl: registry serving at tcp://127\.0\.0\.1:\d+, events at {events}, heartbeats at {heartbeats}\n", line
        )
        address = line.split()[4].rstrip(",")
        with StillStage().running("tcp://127.0.0.1:0", registry=address, name="stage"):
            listed = zidl("ls", "--json", "--registry", address)
        assert [device["name"] for device in json.loads(listed.stdout)] == ["stage"]
    finally:
        registry.terminate()
        registry.wait(timeout=10.0)


def _lines(process: subprocess.Popen[str]) -> queue.Queue[str]:
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stream = process.stdout
    threading.Thread(target=lambda: [lines.put(line) for line in stream], daemon=True).start()
    return lines


def test_watch_prints_signals_as_they_come(rig: str) -> None:
    watcher = subprocess.Popen(
        [ZIDL, "watch", "cam", "modeChanged", "--registry", rig],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert watcher.stderr is not None
        assert "watching modeChanged" in watcher.stderr.readline()
        lines = _lines(watcher)
        with CameraClient.lookup("cam", registry=rig) as camera:
            # the rig is shared by the module's tests: change the mode away from whatever it is, then back
            start = camera.mode
            away = CameraMode.video if start is CameraMode.still else CameraMode.still
            camera.mode = away
            camera.mode = start
        printed = [lines.get(timeout=10.0).split()[1:] for _ in range(2)]
        assert printed == [["modeChanged", f'"{away.value}"'], ["modeChanged", f'"{start.value}"']]
    finally:
        watcher.terminate()
        watcher.wait(timeout=10.0)


def test_watch_without_a_device_prints_devices_coming_and_going(rig: str) -> None:
    watcher = subprocess.Popen([ZIDL, "watch", "--registry", rig], stdout=subprocess.PIPE, text=True)
    try:
        lines = _lines(watcher)
        seen = {lines.get(timeout=10.0).split()[2] for _ in range(2)}
        assert seen == {"cam", "stage"}
        with StillStage().running("tcp://127.0.0.1:0", registry=rig, name="stage2"):
            added = lines.get(timeout=10.0).split()
            assert added[1:3] == ["added", "stage2"]
        removed = lines.get(timeout=10.0).split()
        assert removed[1:3] == ["removed", "stage2"]
    finally:
        watcher.terminate()
        watcher.wait(timeout=10.0)


def test_keygen_and_curve_options_reach_a_secured_registry_and_device(tmp_path: Path) -> None:
    for name in ("registry", "cam", "me"):
        assert zidl("keygen", "-o", str(tmp_path), "--name", name).returncode == 0
    keys = {name: tmp_path / f"{name}.key" for name in ("registry", "cam", "me")}
    secrets = {name: tmp_path / f"{name}.key_secret" for name in ("registry", "cam", "me")}
    registry_curve = CurveServer(secrets["registry"], allowed=[keys["me"], keys["cam"]])
    device_curve = CurveServer(secrets["cam"], allowed=[keys["me"]])
    with (
        Registry(curve=registry_curve).running("tcp://127.0.0.1:0") as registry,
        TinyCamera().running(
            "tcp://127.0.0.1:0",
            registry=registry,
            name="cam",
            curve=device_curve,
            registry_curve=CurveClient(keys["registry"], secret_key=secrets["cam"]),
        ) as address,
    ):
        mine = ("--server-key", str(keys["registry"]), "--key", str(secrets["me"]))
        listed = zidl("ls", "--json", *mine, registry=registry)
        assert listed.returncode == 0, listed.stderr
        assert [device["name"] for device in json.loads(listed.stdout)] == ["cam"]
        assert zidl("get", "cam", "mode", *mine, registry=registry).stdout.strip() == "still"
        direct = zidl("get", address, "mode", "--server-key", str(keys["cam"]), "--key", str(secrets["me"]))
        assert direct.stdout.strip() == "still", direct.stderr

        refused = zidl("ls", registry=registry)
        assert refused.returncode == 1
        assert len(refused.stderr.strip().splitlines()) == 1


WITHOUT_CODEGEN = (
    "import sys\n"
    "for name in ('yaml', 'jinja2', 'ruff'):\n"
    "    sys.modules[name] = None  # as on a device machine without the codegen extra\n"
    "from runtime.tools.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def zidl_without_codegen(*args: str, registry: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "ZIDL_REGISTRY": registry}
    command = [sys.executable, "-c", WITHOUT_CODEGEN, *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=20.0, env=env, check=False)


def test_device_commands_run_without_the_code_generator(rig: str, tmp_path: Path) -> None:
    described = zidl_without_codegen("describe", "cam", registry=rig)
    assert described.returncode == 0, described.stderr
    path = tmp_path / "camera.yaml"
    path.write_text(described.stdout)
    (loaded,) = load_interfaces([path])
    assert loaded.interface.hash == INTERFACE.hash
    assert zidl_without_codegen("set", "cam", "mode", "video", registry=rig).returncode == 0
    assert zidl_without_codegen("get", "cam", "mode", registry=rig).stdout.strip() == "video"


@pytest.mark.parametrize("command", ["generate", "check"])
def test_generate_and_check_without_the_code_generator_say_what_to_install(rig: str, command: str) -> None:
    result = zidl_without_codegen(command, "idl", registry=rig)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert f"zidl: {command} needs the code generator" in lines[0]
    assert "pip install 'zidl[codegen]'" in lines[0]


# --- streams and Ctrl-C -----------------------------------------------------------------------------


def test_call_on_a_stream_prints_each_item_then_the_final_value(stream_address: str) -> None:
    called = zidl("call", stream_address, "steps", "n=2", "label=cli")
    assert called.returncode == 0, called.stderr
    lines = called.stdout.splitlines()
    assert [json.loads(line) for line in lines[:2]] == [{"done": 1, "total": 2}, {"done": 2, "total": 2}]
    assert json.loads("\n".join(lines[2:])) == {"steps": 2, "label": "cli"}
    as_json = zidl("call", stream_address, "steps", "n=2", "--json")
    assert [json.loads(line) for line in as_json.stdout.splitlines()] == [
        {"done": 1, "total": 2},
        {"done": 2, "total": 2},
        {"steps": 2, "label": "done"},
    ]
    assert zidl("call", stream_address, "count", "n=3").stdout.splitlines() == ["0", "1", "2"]


def test_call_on_a_stream_saves_bytes_items_as_numbered_files(rig: str, tmp_path: Path) -> None:
    called = zidl("call", "cam", "preview", "-o", str(tmp_path / "frames"), registry=rig)
    assert called.returncode == 0, called.stderr
    saved = sorted((tmp_path / "frames").iterdir())
    assert [path.name for path in saved] == [f"{number:06d}.jpg" for number in range(1, len(saved) + 1)]
    assert saved[-1].read_bytes() == b"\xff\xd8\xff\x02"  # a preview is `latest`: the newest frame, at least
    assert len(called.stdout.splitlines()) == len(saved)


@pytest.mark.parametrize("method", ["ticks", "hold"])
def test_ctrl_c_cancels_the_call_on_the_device_and_exits_130(
    stream_address: str, streamer: Streamer, method: str
) -> None:
    process = subprocess.Popen([ZIDL, "call", stream_address, method], stdout=subprocess.PIPE, text=True)
    try:
        if method == "ticks":
            assert process.stdout is not None and process.stdout.readline().strip() == "0"
        else:
            assert streamer.holding.wait(10.0)
        process.send_signal(signal.SIGINT)
        assert process.wait(10.0) == 130
    finally:
        if process.poll() is None:
            process.kill()
        process.wait()
        assert process.stdout is not None
        process.stdout.close()
    if method == "ticks":
        assert streamer.last("ticks").closed.wait(5.0)
    else:
        assert streamer.hold_saw_cancelled.wait(5.0)


@pytest.fixture
def echo_address() -> Iterator[str]:
    with Echo().running("tcp://127.0.0.1:0") as address:
        yield address


def test_text_from_the_network_is_printed_with_its_control_characters_escaped(echo_address: str) -> None:
    with Registry().running("tcp://127.0.0.1:0") as registry, RegistryClient(registry, timeout=5.0) as directory:
        fake = "Cam\x1b[2J\x07"  # clears the screen and rings, printed raw
        directory.request(
            "register", name="evil", interface=fake, version=1, hash="h", address="tcp://127.0.0.1:9\r\nfake  row"
        )
        listed = zidl("ls", registry=registry)
        assert listed.returncode == 0, listed.stderr
        name, interface, version, address, *_ = listed.stdout.splitlines()[1].split()
        assert [name, interface, version, address] == ["evil", "Cam\\x1b[2J\\x07", "1", "tcp://127.0.0.1:9\\r\\nfake"]
        assert len(listed.stdout.splitlines()) == 2  # no row of its own making
    hostile = "\x1b]0;title\x07ok\u2028\u202egnp.exe\x85"
    called = zidl("call", echo_address, "echo", f"value={json.dumps(hostile)}")
    assert called.returncode == 0, called.stderr
    assert called.stdout == "\\x1b]0;title\\x07ok\\u2028\\u202egnp.exe\\x85\n"
    failed = zidl("call", echo_address, "fail", f"message={json.dumps('boom' + hostile)}")
    assert failed.returncode == 1
    expected = f"zidl: {echo_address} fail: ValueError: boom\\x1b]0;title\\x07ok\n"  # the first line of the message
    assert failed.stderr == expected


def test_nan_is_no_json_on_the_command_line_either(echo_address: str) -> None:
    echoed = zidl("call", echo_address, "echo", "value=NaN", "--json")
    assert (echoed.returncode, echoed.stdout) == (0, '"NaN"\n')  # not JSON, so the string NaN
    refused = zidl("call", echo_address, "sleep", "seconds=Infinity")
    assert refused.returncode == 1
    assert "finite number" in refused.stderr


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("plain text, é, ✓", "plain text, é, ✓"),
        ("\x1b[31mred\x1b[0m", "\\x1b[31mred\\x1b[0m"),
        ("bell\x07 del\x7f nul\x00", "bell\\x07 del\\x7f nul\\x00"),
        ("line\nfeed\rreturn\ttab", "line\\nfeed\\rreturn\\ttab"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("ls\u2028ps\u2029", "ls\\u2028ps\\u2029"),
        ("bidi\u202e\u2066", "bidi\\u202e\\u2066"),
    ],
)
def test_printable_escapes_what_a_terminal_would_act_on(text: str, shown: str) -> None:
    assert printable(text) == shown
