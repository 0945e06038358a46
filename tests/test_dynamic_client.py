# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""The public dynamic client: ``call``, ``get``, ``set`` and ``signal`` by name, from the handshake alone."""

from __future__ import annotations

import asyncio
import enum
import queue
import time
from collections.abc import Callable

import numpy as np
import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import BlobResult, EchoClient, Meta, Mode
from fixtures.runtime_fixtures import address, echo  # noqa: F401
from pydantic import BaseModel, ValidationError

from runtime import AsyncClient, CallTimeout, Client, RemoteError, ZidlError


def test_a_call_by_name_returns_what_the_generated_client_returns(address: str) -> None:
    with Client.connect(address) as device, EchoClient.connect(address) as typed:
        assert device.call("add", a=1, b=2) == typed.add(1, 2) == 3
        assert device.call("add", a=4) == 5  # the IDL's default for b
        by_name, generated = device.call("blob", size=300), typed.blob(300)
        assert isinstance(generated, BlobResult)
        assert isinstance(by_name, BaseModel)
        assert type(by_name).__name__ == "BlobResult"
        assert by_name.model_dump() == {"data": generated.data, "meta": generated.meta.model_dump()}
        array = np.arange(6, dtype=np.int32).reshape(2, 3)
        np.testing.assert_array_equal(device.call("array", value=array), typed.array(array))
        assert device.call("burst", n=0) is None  # oneway
        assert typed.call("add", a=2, b=2) == 4  # a generated client has the same calls by name


def test_a_call_by_name_raises_the_idl_error_as_its_class(address: str) -> None:
    with Client.connect(address) as device:
        with pytest.raises(RemoteError) as caught:
            device.call("refuse")
        assert type(caught.value).__name__ == "Busy"
        assert isinstance(caught.value.mode, enum.Enum)  # type: ignore[attr-defined]
        assert caught.value.mode.value == "busy"  # type: ignore[attr-defined]


def test_a_bad_argument_raises_validation_error_before_anything_is_sent(echo: Echo) -> None:
    with echo.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT) as bound:
        device = Client.connect(bound, timeout=5.0)
    try:  # the server is gone: only a check in the caller can answer at once
        started = time.monotonic()
        with pytest.raises(ValidationError):
            device.call("add", a="not a number")
        with pytest.raises(ValidationError):
            device.call("add", a=1, c=2)
        with pytest.raises(ValidationError):
            device.set("level", 11)
        with pytest.raises(ValidationError):
            device.set("mode", "asleep")
        assert time.monotonic() - started < 1.0
    finally:
        device.close()


def test_the_timeout_of_a_call_by_name_is_the_methods_own_unless_given(address: str, echo: Echo) -> None:
    with Client.connect(address) as device:
        assert device.call("sleep", seconds=0.0) == 0.0  # its IDL says no limit
        with pytest.raises(CallTimeout, match=r"within 0\.05 s"):
            device.call("sleep", seconds=0.3, timeout=0.05)
        assert device.call("sleep", seconds=0.0, timeout=None) == 0.0


def test_get_and_set_by_name_take_an_enum_by_value_and_a_struct_as_a_dict(address: str, echo: Echo) -> None:
    with Client.connect(address) as device:
        device.set("mode", "busy")
        mode = device.get("mode")
        assert isinstance(mode, enum.Enum)
        assert mode.value == "busy"
        assert echo.mode is Mode.busy
        device.set("mode", mode)  # the member read back is taken as well
        device.set("meta", {"name": "set by name", "size": 3})
        meta = device.get("meta")
        assert isinstance(meta, BaseModel)
        assert type(meta).__name__ == "Meta"
        assert meta.model_dump() == {"name": "set by name", "size": 3}
        assert echo.meta == Meta(name="set by name", size=3)
        device.set("level", 4)
        assert device.get("level") == 4


def test_a_signal_by_name_delivers(address: str, echo: Echo) -> None:
    got: queue.Queue[tuple[int, str]] = queue.Queue()
    with Client.connect(address) as device:
        device.signal("tick").connect(lambda n, label: got.put((n, label)))  # type: ignore[misc]
        echo.tick.emit(7, "by name")
        assert got.get(timeout=5.0) == (7, "by name")


@pytest.mark.parametrize(
    ("use", "named", "listed"),
    [
        (lambda device: device.call("nope"), "no method 'nope'", "its methods: echo, add, blob"),
        (lambda device: device.get("shutter"), "no property 'shutter'", "its properties: mode, level"),
        (lambda device: device.set("shutter", 1), "no property 'shutter'", "its properties: mode"),
        (lambda device: device.signal("ring"), "no signal 'ring'", "its signals: modeChanged, levelChanged"),
    ],
)
def test_an_unknown_name_raises_naming_the_device_and_what_it_has(
    address: str, use: Callable[[Client], object], named: str, listed: str
) -> None:
    with Client.connect(address) as device, pytest.raises(ZidlError) as caught:
        use(device)
    message = str(caught.value)
    assert message.startswith(f"Echo at {address} has ")
    assert named in message
    assert listed in message


def test_the_async_client_calls_gets_sets_and_subscribes_by_name(address: str, echo: Echo) -> None:
    async def main() -> None:
        async with AsyncClient.connect(address) as device:
            assert device.interface.name == "Echo"
            assert await device.call("add", a=1, b=2) == 3
            with pytest.raises(ValidationError):
                await device.call("add", a="x")
            await device.set("mode", "busy")
            assert (await device.get("mode")).value == "busy"
            await device.set("meta", {"name": "async", "size": 1})
            assert (await device.get("meta")).model_dump() == {"name": "async", "size": 1}
            with pytest.raises(ZidlError, match="its methods: echo"):
                await device.call("nope")
            got: asyncio.Queue[int] = asyncio.Queue()
            await device.signal("levelChanged").connect(got.put_nowait)
            await device.set("level", 5)
            assert await asyncio.wait_for(got.get(), 5.0) == 5

    asyncio.run(main())
    assert echo.meta == Meta(name="async", size=1)
