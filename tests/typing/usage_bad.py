"""Mistakes in using the generated code: mypy must report exactly the lines marked `# error:`."""

from collections.abc import Iterator

from zidl_devices.camera import AsyncCameraClient, CameraClient, CameraServer
from zidl_devices.cnc import CncClient
from zidl_devices.controller import ControllerClient


def misuse(address: str) -> None:
    with CameraClient.connect(address) as camera:
        camera.get_image(lores="yes")  # error: arg-type
        camera.take_picture()  # error: attr-defined
        camera.rotation = 90  # error: misc

        def on_name(name: str) -> None:
            print(name)

        camera.rotationChanged.connect(on_name)  # error: arg-type
    with CncClient.connect(address) as stage:
        stage.moveto(x=1.0)  # error: call-arg


def misuse_streams(address: str) -> None:
    with CameraClient.connect(address) as camera, camera.preview() as frames:
        for frame in frames:
            name: str = frame  # error: assignment
            print(name)
    with ControllerClient.connect(address) as controller:
        done: int = controller.run_scan().result()  # error: assignment
        print(done)


async def misuse_async(address: str) -> None:
    async with AsyncCameraClient.connect(address) as camera:
        await camera.rotation.set(90)  # error: attr-defined
        async for frame in camera.preview():
            text: str = frame  # error: assignment
            print(text)


class WrongPreview(CameraServer):
    def preview(self, fps: float = 5.0) -> Iterator[str]:  # error: override
        yield "not a frame"
