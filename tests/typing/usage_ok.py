"""Correct uses of the generated code: `mypy --strict` must accept every line."""

from collections.abc import Iterator

from zidl_devices.camera import (
    AsyncCameraClient,
    CameraBusy,
    CameraClient,
    CameraMode,
    CameraServer,
    Encoding,
    GetImageResult,
    ImageInfo,
)
from zidl_devices.cnc import CncClient, CncServer, Position
from zidl_devices.controller import AsyncControllerClient, ControllerClient, ScanProgress, ScanSummary

from runtime import AsyncStream, Cancelled, NDArray, Stream, current_call


def use_blocking(address: str) -> None:
    with CameraClient.connect(address, timeout=2.0) as camera:
        result: GetImageResult = camera.get_image(lores=True)
        data: bytes = result.image
        rotation: int = result.info.rotation
        array: NDArray = camera.capture_array(timeout=None)
        camera.mode = CameraMode.video
        mode: CameraMode = camera.mode
        width, height = camera.resolution
        camera.config = {"exposure": 1.5}
        url: str = camera.video_url
        print(data, rotation, array.shape, mode, width, height, url)

        def on_rotation(value: int) -> None:
            print(value)

        camera.rotationChanged.connect(on_rotation)
        camera.rotationChanged.disconnect(on_rotation)
        try:
            camera.get_image(timeout=30.0)
        except CameraBusy as busy:
            print(busy.mode, busy.message, busy.traceback)


def use_streams(address: str) -> None:
    with CameraClient.connect(address) as camera, camera.preview(fps=10.0) as frames:
        for frame in frames:
            size: int = len(frame)
            print(size, frames.skipped)
    with ControllerClient.connect(address) as controller:
        scan: Stream[ScanProgress, ScanSummary] = controller.run_scan(timeout=120.0)
        for step in scan:
            print(step.done, step.total, step.images)
        summary: ScanSummary = scan.result()
        print(summary.images)
        running = controller.run_scan()
        running.cancel()
        try:
            running.result()
        except Cancelled:
            print("cancelled, as asked")


async def use_async_streams(address: str) -> None:
    async with AsyncCameraClient.connect(address) as camera, camera.preview() as frames:
        async for frame in frames:
            data: bytes = frame
            print(data)
    async with AsyncControllerClient.connect(address) as controller:
        scan: AsyncStream[ScanProgress, ScanSummary] = controller.run_scan()
        summary: ScanSummary = await scan.result()
        print(summary.seconds)


def use_stage(address: str) -> None:
    with CncClient.connect(address) as stage:
        stage.moveto(1.0, 2.0)
        stage.moveto(x=1.0, y=2.0, z=3.0, timeout=None)
        here: Position = stage.get_position()
        print(here.x + here.y + here.z)


async def use_async(address: str) -> None:
    async with AsyncCameraClient.connect(address) as camera:
        result = await camera.get_image()
        print(result.info.shape)
        mode: CameraMode = await camera.mode.get()
        await camera.mode.set(CameraMode.still)
        rotation: int = await camera.rotation.get()
        print(mode, rotation)

        async def on_mode(mode: CameraMode) -> None:
            print(mode)

        await camera.modeChanged.connect(on_mode)
    camera2 = await AsyncCameraClient.connect(address)
    await camera2.close()


class MyCamera(CameraServer):
    def get_image(self, lores: bool = False) -> GetImageResult:
        info = ImageInfo(encoding=Encoding.jpeg, rotation=self.rotation, shape=(2, 2, 3))
        return GetImageResult(image=b"jpeg", info=info)

    def capture_array(self) -> NDArray:
        raise CameraBusy("recording", mode=self.mode)

    def set_mode(self, value: CameraMode) -> None:
        self.mode = value
        self.rotation = 90
        self.modeChanged.emit(value)

    def preview(self, fps: float = 5.0) -> Iterator[bytes]:
        while not current_call().cancelled:
            yield b"jpeg"


class MyStage(CncServer):
    def home(self) -> None:
        pass

    def get_position(self) -> Position:
        return Position(x=0.0, y=0.0, z=0.0)

    def moveto(self, x: float, y: float, z: float = 0.0) -> None:
        left: float | None = current_call().time_left
        print(x, y, z, left)


def serve_in_background() -> None:
    with MyCamera().running("tcp://127.0.0.1:0") as address, CameraClient.connect(address) as camera:
        print(camera.encoding)
