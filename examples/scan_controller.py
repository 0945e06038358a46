"""The scan controller: moves the stage round a circle and captures from every camera at each stop.

    python examples/scan_controller.py --registry tcp://127.0.0.1:5555

It follows the registry, so `camera_names` changes as cameras come and go. A scan
writes `<root>/<dataset>/images/<position>_<camera>.<jpg|png>` and a JSON file of
metadata beside each image. A camera that fails mid-scan is left out of the rest
of the scan and named in the summary. `run_scan` is a stream: it yields the
progress after each position and returns the summary. Cancelled (its reader
cancels it or goes away), the scan stops: the stage's move is cancelled where it
is, and `<dataset>/scan.json` records that the scan is incomplete and how far it got.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import queue
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from device_options import device_parser, serving
from zidl_devices.camera import AsyncCameraClient, Encoding, GetImageResult
from zidl_devices.cnc import AsyncCncClient
from zidl_devices.controller import ControllerServer, NotReady, ScanProgress, ScanSummary

from runtime import DeviceRecord, ZidlError, current_call, watch

log = logging.getLogger("scan_controller")

DEFAULT_CONFIG: dict[str, Any] = {"positions": 36, "radius": 120.0, "z": 0.0, "camera": {}}
LOOK_FOR_CANCEL = 0.05
"""Seconds between looks at a cancel while the stream waits for the scan's next report."""


class ScanRun:
    """A scan's coroutine on an event loop of its own thread: its reports come through a queue (None: it ended),
    and ``stop()`` cancels it and waits until it has cleaned up."""

    def __init__(self, scan: Callable[[Callable[[ScanProgress], None]], Coroutine[Any, Any, ScanSummary]]) -> None:
        self.reports: queue.SimpleQueue[ScanProgress | None] = queue.SimpleQueue()
        self._loop = asyncio.new_event_loop()
        self._task = self._loop.create_task(self._run(scan))
        self._thread = threading.Thread(target=self._drive, name="scan")
        self._thread.start()

    def _drive(self) -> None:
        with contextlib.suppress(BaseException):  # what the scan met stays in its task, for ``stop()``
            self._loop.run_until_complete(self._task)

    async def _run(
        self, scan: Callable[[Callable[[ScanProgress], None]], Coroutine[Any, Any, ScanSummary]]
    ) -> ScanSummary:
        try:
            return await scan(self.reports.put)
        finally:
            self.reports.put(None)

    def next_report(self) -> ScanProgress | None:
        """The next report; None once the scan has ended, or when the stream's caller cancelled it."""
        while True:
            try:
                return self.reports.get(timeout=LOOK_FOR_CANCEL)
            except queue.Empty:
                if current_call().cancelled:
                    return None

    def stop(self) -> ScanSummary:
        """Cancel the scan if it still runs, wait for it to end; what it produced (or raise what it met)."""
        if not self._task.done():
            self._loop.call_soon_threadsafe(self._task.cancel)
        self._thread.join()
        self._loop.close()
        return self._task.result()


class ScanController(ControllerServer):
    def __init__(self, *, registry: str | None = None, stage: str = "stage") -> None:
        super().__init__()
        self.registry = registry
        self.stage = stage
        self.root: Path | None = None
        self.dataset = ""
        self.api_token = ""
        self.scan_config: dict[str, Any] = dict(DEFAULT_CONFIG)
        self._cameras: set[str] = set()
        self._watcher = watch(self._on_device, registry=registry)

    def _on_device(self, change: str, device: DeviceRecord) -> None:
        if device.interface != "Camera":
            return
        if change == "added":
            self._cameras.add(device.name)
        else:
            self._cameras.discard(device.name)
        self._publish_cameras()

    def _publish_cameras(self) -> None:
        self.camera_names = sorted(self._cameras)
        self._update_ready()

    def _update_ready(self) -> None:
        self.ready_to_scan = bool(self.root and self.dataset and self.camera_names)

    def set_db_url(self, url: str) -> None:
        parsed = urlparse(url)
        if parsed.scheme not in ("", "file"):
            raise ValueError(f"only folders and file:// URLs are supported, not {parsed.scheme}://")
        self.root = Path(unquote(parsed.path) if parsed.scheme else url).expanduser()
        self._update_ready()

    def set_dataset_name(self, name: str) -> None:
        self.dataset = name
        self._update_ready()

    def set_config(self, config: dict[str, Any]) -> None:
        unknown = set(config) - set(DEFAULT_CONFIG)
        if unknown:
            raise ValueError(f"unknown scan settings {sorted(unknown)}; known: {sorted(DEFAULT_CONFIG)}")
        merged = {**self.scan_config, **config}
        if not isinstance(merged["positions"], int) or merged["positions"] < 1:
            raise ValueError("positions must be a whole number of at least 1")
        self.scan_config = merged

    def set_api_token(self, token: str) -> None:
        self.api_token = token

    def run_scan(self) -> Generator[ScanProgress, None, ScanSummary]:
        if not self.ready_to_scan or self.root is None:
            missing = [
                what
                for what, have in (
                    ("db_url", self.root),
                    ("dataset name", self.dataset),
                    ("cameras", self.camera_names),
                )
                if not have
            ]
            raise NotReady(f"cannot scan yet: no {', '.join(missing)}", reason=f"missing {', '.join(missing)}")
        folder = self.root / self.dataset
        run = ScanRun(lambda report: self._scan(folder, report))
        try:
            while (progress := run.next_report()) is not None:
                yield progress  # closed here when the caller cancels: ``finally`` stops the scan
        finally:
            summary = run.stop()
        return summary

    async def _scan(self, folder: Path, report: Callable[[ScanProgress], None]) -> ScanSummary:
        """The scan itself; cancelled, it stops where it is (the stage's move too) and records how far it got."""
        config = self.scan_config
        positions: int = config["positions"]
        images = folder / "images"
        images.mkdir(parents=True, exist_ok=True)
        began = time.monotonic()
        self.max_progress = positions
        self.progress = 0
        per_camera: dict[str, int] = {}
        failed: list[str] = []
        total_bytes = 0
        phases = {"move": 0.0, "capture": 0.0, "write": 0.0}
        done = 0
        complete = False
        stage = await AsyncCncClient.lookup(self.stage, registry=self.registry)
        cameras: dict[str, AsyncCameraClient] = {}
        for name in self.camera_names:
            try:
                cameras[name] = await AsyncCameraClient.lookup(name, registry=self.registry)
                if config["camera"]:
                    await cameras[name].config.set(config["camera"])
                per_camera[name] = 0
            except ZidlError as exc:
                log.warning("camera %s left out of the scan: %s", name, exc)
                failed.append(name)
        try:
            for index in range(positions):
                angle = 2 * math.pi * index / positions
                x, y = config["radius"] * math.cos(angle), config["radius"] * math.sin(angle)
                mark = time.monotonic()
                await stage.moveto(x, y, config["z"])
                moved = time.monotonic()
                shots = await asyncio.gather(
                    *(camera.get_image() for camera in cameras.values()), return_exceptions=True
                )
                captured = time.monotonic()
                phases["move"] += moved - mark
                phases["capture"] += captured - moved
                for (name, camera), shot in zip(list(cameras.items()), shots, strict=True):
                    if isinstance(shot, BaseException):
                        log.warning("camera %s failed at position %d and is left out: %s", name, index, shot)
                        failed.append(name)
                        del cameras[name]
                        await camera.close()
                        continue
                    total_bytes += self._write(images, index, name, shot, (x, y, config["z"]))
                    per_camera[name] += 1
                phases["write"] += time.monotonic() - captured
                done = self.progress = index + 1
                report(ScanProgress(done=done, total=positions, images=sum(per_camera.values())))
            complete = True
        except asyncio.CancelledError:  # the stage's move in flight is cancelled with it, where the stage is
            log.info("scan cancelled after %d of %d positions", done, positions)
        finally:
            for camera in cameras.values():
                await camera.close()
            await stage.close()
            record = {"complete": complete, "positions_done": done, "positions": positions}
            record["images"] = sum(per_camera.values())
            (folder / "scan.json").write_text(json.dumps({**record, "time": time.time()}, indent=2))
        return ScanSummary(
            images=sum(per_camera.values()),
            total_bytes=total_bytes,
            seconds=time.monotonic() - began,
            dataset=str(folder),
            per_camera=per_camera,
            failed_cameras=failed,
            phases=phases,
        )

    def _write(
        self, images: Path, index: int, camera: str, shot: GetImageResult, where: tuple[float, float, float]
    ) -> int:
        suffix = "jpg" if shot.info.encoding is Encoding.jpeg else "png"
        stem = f"{index:03d}_{camera}"
        (images / f"{stem}.{suffix}").write_bytes(shot.image)
        height, width, _ = shot.info.shape
        metadata = {
            "position": {"index": index, "x": where[0], "y": where[1], "z": where[2]},
            "camera": camera,
            "resolution": [width, height],
            "encoding": shot.info.encoding.value,
            "rotation": shot.info.rotation,
            "config": self.scan_config,
            "time": time.time(),
        }
        (images / f"{stem}.json").write_text(json.dumps(metadata, indent=2))
        return len(shot.image)


def main() -> None:
    parser = device_parser("The scan controller.", "controller")
    parser.add_argument("--stage", default="stage", help="the stage to drive (default stage)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ScanController(registry=args.registry, stage=args.stage).serve(args.bind, **serving(args))


if __name__ == "__main__":
    main()
