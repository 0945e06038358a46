"""Strict JSON on the wire: NaN and infinities are no JSON numbers, so they never travel, in either direction.

A ``float`` that is NaN or infinite fails validation where it is made (an argument or
a property write in the caller, a result or an emission on the device); an ``any``
value holding one cannot be written; a header holding one is refused as not JSON.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import pytest
from fixtures.echo_device import Echo
from fixtures.generated.echo import EchoClient
from fixtures.still_stage import StillStage
from pydantic import ValidationError
from zidl_devices.camera import CameraClient, CameraServer, Encoding, GetImageResult, ImageInfo
from zidl_devices.cnc import Position

from runtime import Client, NDArray, ProtocolError, RemoteError
from runtime.protocol.messages import request
from runtime.protocol.wire import decode, encode

NOT_FINITE = [math.nan, math.inf, -math.inf]


class TinyCamera(CameraServer):
    def get_image(self, lores: bool = False) -> GetImageResult:
        return GetImageResult(image=b"", info=ImageInfo(encoding=Encoding.jpeg, rotation=0, shape=(0, 0, 3)))

    def capture_array(self) -> NDArray:
        return np.zeros((2, 3), dtype=np.float64) + math.nan  # an array may hold NaN: it travels as a frame

    def preview(self, fps: float = 5.0) -> Iterator[bytes]:
        yield b""


class Unsendable(Echo):
    """Results that cannot travel: a NaN for a ``float``, an infinity inside an ``any``."""

    def sleep(self, seconds: float) -> float:
        return math.nan

    def unsendable(self) -> object:
        return {"x": [math.inf]}


@pytest.fixture
def unsendable() -> Iterator[str]:
    with Unsendable().running("tcp://127.0.0.1:0") as address:
        yield address


@pytest.mark.parametrize("value", NOT_FINITE)
def test_the_wire_neither_writes_nor_reads_nan_or_infinities(value: float) -> None:
    class Reading(float):
        pass

    for body in ({"value": value}, [1, [2.0, value]], {"a": np.float64(value)}, Reading(value)):
        with pytest.raises(TypeError, match="NaN and infinities cannot travel"):
            encode({"v": 1}, body)
    text = {math.inf: b"Infinity", -math.inf: b"-Infinity"}.get(value, b"NaN")
    with pytest.raises(ProtocolError, match="not JSON"):
        decode([b'{"v": 1, "k": "ok", "b": ' + text + b"}"])
    assert encode({"v": 1}, "NaN and Infinity, as words") == [b'{"v":1,"b":"NaN and Infinity, as words"}']


def test_a_timeout_of_no_limit_travels_as_no_timeout() -> None:
    assert b'"t"' not in request(1, "call", "add", math.inf, {"a": 1})[0]
    assert b'"t":2.5' in request(1, "call", "add", 2.5, {"a": 1})[0]


@pytest.mark.parametrize("value", NOT_FINITE)
def test_a_float_that_is_not_finite_is_a_validation_error_where_it_is_made(value: float) -> None:
    camera, stage = TinyCamera(), StillStage()
    with pytest.raises(ValidationError, match="finite number"):
        Position(x=value, y=0.0, z=0.0)  # a generated struct
    with pytest.raises(ValidationError, match="finite number"):
        camera.config = {"gain": value}  # the device's own property
    with (
        camera.running("tcp://127.0.0.1:0") as camera_address,
        stage.running("tcp://127.0.0.1:0") as stage_address,
        CameraClient.connect(camera_address) as client,
        Client.connect(camera_address) as dynamic,
    ):
        with pytest.raises(ValidationError, match="finite number"):
            client.config = {"gain": value}  # a property write, in the caller
        with pytest.raises(ValidationError, match="finite number"):
            dynamic.set("config", {"gain": value})
        with pytest.raises(ValidationError, match="finite number"):
            stage.positionChanged.emit(value, 0.0, 0.0)  # an emission, on the device
        with Client.connect(stage_address) as stage_client, pytest.raises(ValidationError, match="finite number"):
            stage_client.call("moveto", x=0.0, y=0.0, z=value)  # an argument, in the caller
        assert client.config == {}
        assert np.isnan(client.capture_array()).all()


def test_a_result_that_is_not_finite_reaches_the_caller_as_a_remote_error(unsendable: str) -> None:
    with EchoClient.connect(unsendable) as client:
        with pytest.raises(RemoteError, match="finite number") as refused:
            client.sleep(0.0)
        assert refused.value.type == "ResultValidationError"
        with pytest.raises(RemoteError, match="NaN and infinities cannot travel") as unsent:
            client.unsendable()
        assert unsent.value.type == "SerializationError"
        with pytest.raises(TypeError, match="NaN and infinities cannot travel"):
            client.echo([1.0, math.nan])  # an ``any`` argument, refused as it is written
        assert client.echo([1.0, 1e308]) == [1.0, 1e308]
