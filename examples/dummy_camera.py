"""A dummy camera: renders a plant seen from the stage's position, or serves a folder of images.

    python examples/dummy_camera.py --name cam1 --registry tcp://127.0.0.1:5555
    python examples/dummy_camera.py --images ~/photos --lag 200

By default it follows the stage named by `--stage` through the registry (its
`positionChanged` signal), so each image is what the camera sees from there.
"""

from __future__ import annotations

import io
import itertools
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import simplejpeg
from device_options import device_parser, serving
from PIL import Image
from scene import render
from zidl_devices.camera import CameraBusy, CameraMode, CameraServer, Encoding, GetImageResult, ImageInfo
from zidl_devices.cnc import CncClient

from runtime import NDArray, ZidlError

log = logging.getLogger("dummy_camera")

LORES_FACTOR = 4
"""A `lores` image is this many times smaller on each side."""

STAGE_WAIT = 5.0
"""Seconds a capture waits for the camera to start following the stage."""


class DummyCamera(CameraServer):
    def __init__(
        self,
        *,
        name: str = "camera",
        resolution: tuple[int, int] = (1640, 1232),
        images: Path | None = None,
        lag: float = 0.0,
    ) -> None:
        super().__init__()
        self.camera_name = name
        self.resolution = resolution
        self.lag = lag
        self.position = (100.0, 0.0, 0.0)
        self._files: Iterator[Path] | None = None
        if images is not None:
            files = sorted(p for p in images.iterdir() if p.suffix.lower() in {".jpg", ".jpeg", ".png"})
            if not files:
                raise SystemExit(f"dummy_camera: no .jpg or .png images in {images}")
            self._files = itertools.cycle(files)
        self._stage: CncClient | None = None
        self._following: threading.Event | None = None

    def follow_stage(self, stage: str, registry: str | None) -> None:
        """Look the stage up in the background and track its position from its signal.

        Until the camera follows the stage, a capture waits for it (up to ``STAGE_WAIT``
        seconds), so that no image is rendered from a position the stage never had.
        """
        following = self._following = threading.Event()

        def connect() -> None:
            while self._stage is None:
                try:
                    self._stage = CncClient.lookup(stage, registry=registry)
                except ZidlError as exc:
                    log.info("stage %r not found yet (%s); retrying", stage, exc)
                    time.sleep(0.2)
            self._stage.positionChanged.connect(self._on_position)
            here = self._stage.get_position()
            self._on_position(here.x, here.y, here.z)
            following.set()
            log.info("following stage %r", stage)

        threading.Thread(target=connect, name="follow-stage", daemon=True).start()

    def _on_position(self, x: float, y: float, z: float) -> None:
        self.position = (x, y, z)

    def frame(self, lores: bool = False) -> NDArray:
        """The current view as an RGB array, rotated as the camera is mounted."""
        width, height = self.resolution
        if lores:
            width, height = width // LORES_FACTOR, height // LORES_FACTOR
        if self._files is not None:
            with Image.open(next(self._files)) as picture:
                array = np.asarray(picture.convert("RGB").resize((width, height)))
        else:
            if self._following is not None and not self._following.wait(STAGE_WAIT):
                log.warning("not following the stage yet; rendering from %s", self.position)
            array = render(width, height, *self.position, camera=self.camera_name)
        if self.lag:
            time.sleep(self.lag)
        return np.ascontiguousarray(np.rot90(array, k=-self.rotation // 90))

    def get_image(self, lores: bool = False) -> GetImageResult:
        if self.mode is CameraMode.video:
            raise CameraBusy("the camera is streaming video; set mode to still first", mode=self.mode)
        array = self.frame(lores)
        if self.encoding is Encoding.jpeg:
            data = simplejpeg.encode_jpeg(array, quality=95, colorspace="RGB", colorsubsampling="420")
        else:
            buffer = io.BytesIO()
            Image.fromarray(array).save(buffer, format="PNG", compress_level=1)
            data = buffer.getvalue()
        height, width, channels = array.shape
        return GetImageResult(
            image=data, info=ImageInfo(encoding=self.encoding, rotation=self.rotation, shape=(height, width, channels))
        )

    def preview(self, fps: float = 5.0) -> Iterator[bytes]:
        """Lores JPEG frames at ``fps``, until the reader stops (the runtime closes this generator at its ``yield``)."""
        period = 1.0 / fps
        due = time.monotonic()
        while True:
            yield simplejpeg.encode_jpeg(self.frame(lores=True), quality=80, colorspace="RGB", colorsubsampling="420")
            due += period
            time.sleep(max(0.0, due - time.monotonic()))

    def capture_array(self) -> NDArray:
        if self.mode is CameraMode.video:
            raise CameraBusy("the camera is streaming video; set mode to still first", mode=self.mode)
        return self.frame()

    def set_mode(self, value: CameraMode) -> None:
        self.mode = value
        self.video_url = f"rtsp://{socket.gethostname()}:8554/{self.camera_name}" if value is CameraMode.video else ""

    def set_resolution(self, value: tuple[int, int]) -> None:
        width, height = value
        if not (16 <= width <= 8192 and 16 <= height <= 8192):
            raise ValueError(f"resolution {width}x{height} is outside 16x16 to 8192x8192")
        self.resolution = value


def main() -> None:
    parser = device_parser("A dummy camera.", "camera")
    parser.add_argument("--stage", default="stage", help="the stage to follow (default stage); '' follows none")
    parser.add_argument(
        "--images", type=Path, default=os.environ.get("ZIDL_CAMERA_IMAGES"), help="serve these images, cycling"
    )
    parser.add_argument("--lag", type=float, default=0.0, metavar="MS", help="extra milliseconds per capture")
    parser.add_argument("--resolution", default="1640x1232", help="WIDTHxHEIGHT (default 1640x1232)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    width, height = (int(part) for part in args.resolution.lower().split("x"))
    camera = DummyCamera(
        name=args.name,
        resolution=(width, height),
        images=Path(args.images) if args.images else None,
        lag=args.lag / 1000,
    )
    if args.stage and args.images is None:
        camera.follow_stage(args.stage, args.registry)
    camera.serve(args.bind, **serving(args))


if __name__ == "__main__":
    main()
