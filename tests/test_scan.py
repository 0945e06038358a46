"""The camera rig end to end: registry, two cameras, a stage and the controller, each its own process."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import simplejpeg

ROOT = Path(__file__).parent.parent
sys.path.insert(0, str(ROOT / "examples"))

from demo import Rig, free_port, scan  # noqa: E402
from dummy_cnc import DummyCnc  # noqa: E402
from zidl_devices.cnc import AsyncCncClient, CncClient  # noqa: E402
from zidl_devices.controller import ControllerClient, ScanProgress, ScanSummary  # noqa: E402

from runtime import Registry, list_devices  # noqa: E402

WIDTH, HEIGHT = 320, 240
METADATA_KEYS = {"position", "camera", "resolution", "encoding", "rotation", "config", "time"}


@pytest.fixture
def registry() -> str:
    return f"tcp://127.0.0.1:{free_port()}"


@pytest.fixture
def small_rig(registry: str) -> Iterator[Rig]:
    with Rig(registry, camera_options=["--resolution", f"{WIDTH}x{HEIGHT}", "--lag", "100"]) as rig:
        yield rig


@pytest.mark.slow
def test_the_rig_joins_a_registry_that_answers_and_binds_only_the_loopback() -> None:
    with (
        Registry().running("tcp://127.0.0.1:0") as registry,
        Rig(registry, camera_options=["--resolution", f"{WIDTH}x{HEIGHT}"]) as rig,
    ):
        assert sorted(rig.processes) == ["cam1", "cam2", "controller", "stage"]
        devices = list_devices(registry=registry)
        assert sorted(device.name for device in devices) == ["cam1", "cam2", "controller", "stage"]
        assert all(device.address.startswith("tcp://127.0.0.1:") for device in devices)
        listening = {
            connection.laddr.ip
            for process in rig.processes.values()
            for connection in psutil.Process(process.pid).net_connections("tcp")
            if connection.status == psutil.CONN_LISTEN
        }
        assert listening == {"127.0.0.1"}


def test_a_rig_bound_to_every_interface_registers_an_address_other_hosts_reach() -> None:
    """Its devices are told to advertise an IP (``--advertise``, else this host's route's own), not a host name."""
    assert Rig("tcp://127.0.0.1:5555", host="*", advertise="192.0.2.7").device_options == [
        "--bind",
        "tcp://*:0",
        "--advertise",
        "192.0.2.7",
    ]
    assert Rig("tcp://127.0.0.1:5555").device_options == ["--bind", "tcp://127.0.0.1:0"]


@pytest.mark.slow
def test_scan_writes_every_image_with_its_metadata(small_rig: Rig, tmp_path: Path) -> None:
    summary = scan(small_rig.registry, tmp_path, positions=4, dataset="plant")

    assert summary.images == 8
    assert summary.per_camera == {"cam1": 4, "cam2": 4}
    assert summary.failed_cameras == []
    images = sorted((tmp_path / "plant" / "images").glob("*.jpg"))
    assert [path.name for path in images] == [
        f"{index:03d}_{camera}.jpg" for index in range(4) for camera in ("cam1", "cam2")
    ]
    assert summary.total_bytes == sum(path.stat().st_size for path in images)
    for path in images:
        assert simplejpeg.decode_jpeg(path.read_bytes()).shape == (HEIGHT, WIDTH, 3)
        metadata = json.loads(path.with_suffix(".json").read_text())
        assert set(metadata) >= METADATA_KEYS
        assert metadata["resolution"] == [WIDTH, HEIGHT]
        assert metadata["camera"] == path.stem.split("_")[1]
        assert metadata["position"]["index"] == int(path.stem.split("_")[0])
        assert metadata["config"]["positions"] == 4
    first, second = (
        simplejpeg.decode_jpeg((tmp_path / "plant" / "images" / f"00{i}_cam1.jpg").read_bytes()) for i in (0, 1)
    )
    assert (first != second).any(), "the view should turn with the stage"


@pytest.mark.slow
def test_scan_goes_on_without_a_camera_killed_mid_scan(small_rig: Rig, tmp_path: Path) -> None:
    positions = 6
    halfway = threading.Event()
    outcome: list[ScanSummary] = []

    with ControllerClient.lookup("controller", registry=small_rig.registry) as controller:
        controller.progressChanged.connect(lambda done: halfway.set() if done >= 2 else None)
        worker = threading.Thread(
            target=lambda: outcome.append(scan(small_rig.registry, tmp_path, positions=positions, dataset="killed"))
        )
        worker.start()
        assert halfway.wait(timeout=30.0)
        small_rig.processes["cam2"].send_signal(signal.SIGKILL)
        worker.join(timeout=60.0)

    assert not worker.is_alive()
    (summary,) = outcome
    assert summary.failed_cameras == ["cam2"]
    assert summary.per_camera["cam1"] == positions
    assert 2 <= summary.per_camera["cam2"] < positions
    assert summary.images == positions + summary.per_camera["cam2"]
    written = list((tmp_path / "killed" / "images").glob("*.jpg"))
    assert len(written) == summary.images


def test_a_cancelled_move_stops_the_stage_where_it_is() -> None:
    stage = DummyCnc(speed=20.0)  # 100 mm: five seconds
    moving = threading.Event()

    async def move(address: str) -> None:
        async with AsyncCncClient.connect(address) as client:
            await client.positionChanged.connect(lambda x, y, z: moving.set() if x > 0 else None)
            task = asyncio.create_task(client.moveto(100.0, 0.0))
            await asyncio.to_thread(moving.wait, 5.0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    with stage.running("tcp://127.0.0.1:0") as address:
        asyncio.run(move(address))
        with CncClient.connect(address) as client:
            stopped = client.get_position()  # a serial call: it runs once the cancelled move has returned
            assert 0.0 < stopped.x < 100.0
            assert client.get_position() == stopped


@pytest.mark.slow
def test_a_cancelled_scan_records_that_it_is_incomplete_and_how_far_it_got(small_rig: Rig, tmp_path: Path) -> None:
    with ControllerClient.lookup("controller", registry=small_rig.registry) as controller:
        controller.set_db_url(str(tmp_path))
        controller.set_dataset_name("stopped")
        controller.set_config({"positions": 30})
        with controller.run_scan() as steps:
            first = next(steps)
        assert first == ScanProgress(done=1, total=30, images=2)
        controller.set_dataset_name("next")  # a serial call: it runs once the cancelled scan has ended
        record = json.loads((tmp_path / "stopped" / "scan.json").read_text())
    assert record["complete"] is False
    assert 1 <= record["positions_done"] < 30 and record["positions"] == 30
    assert record["images"] == 2 * record["positions_done"]
