"""Mistakes in using the generated code: mypy must report exactly the lines marked `# error:`."""

from generated.camera import AsyncCameraClient, CameraClient
from generated.cnc import CncClient


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


async def misuse_async(address: str) -> None:
    async with AsyncCameraClient.connect(address) as camera:
        await camera.rotation.set(90)  # error: attr-defined
