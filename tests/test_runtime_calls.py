# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Method calls, properties, errors and validation between a real client and server."""

from __future__ import annotations

import math
import re
import threading
import time

import numpy as np
import pytest
import zmq
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import INTERFACE, Busy, EchoClient, Meta, Mode
from fixtures.runtime_fixtures import address, client, echo  # noqa: F401
from pydantic import ValidationError

import runtime
from runtime import CallTimeout, Client, ConnectionLost, ProtocolError, RemoteError
from runtime.protocol.messages import outcome, read_reply, request
from runtime.protocol.wire import DEFAULT_LIMITS, decode, encode, encode_plain


def test_public_names_are_the_runtime_surface() -> None:
    assert set(runtime.__all__) >= {
        "AsyncClient", "AsyncProperty", "AsyncReadOnlyProperty", "AsyncSignal", "Client", "EnumSpec", "ErrorSpec",
        "FieldSpec", "Interface", "MethodSpec", "NDArray", "PropertySpec", "RemoteError", "Server", "ServerSignal",
        "Signal", "SignalSpec", "StructSpec", "ZidlError", "CallTimeout", "ConnectionLost", "ClientClosed",
        "InterfaceMismatch", "DeviceNotFound", "RegistryUnavailable",
    }  # fmt: skip
    assert all(hasattr(runtime, name) for name in runtime.__all__)
    for name in ("RemoteError", "CallTimeout", "ConnectionLost", "ClientClosed", "InterfaceMismatch"):
        assert issubclass(getattr(runtime, name), runtime.ZidlError)
    assert issubclass(runtime.CallTimeout, TimeoutError)


def test_call_returns_value(client: EchoClient) -> None:
    assert client.add(2, 3) == 5
    assert client.add(2) == 3
    assert client.echo({"a": [1, 2.5, None, "x"], "$b": 1}) == {"a": [1, 2.5, None, "x"], "$b": 1}


def test_bytes_with_metadata(client: EchoClient) -> None:
    result = client.blob(1000)
    assert result.meta == Meta(name="blob", size=1000)
    assert result.data == bytes(range(256)) * 3 + bytes(1000 - 768)


@pytest.mark.parametrize(
    "array",
    [
        np.arange(24, dtype=np.uint16).reshape(2, 3, 4),
        np.linspace(-1, 1, 50, dtype=np.float64),
        np.array([True, False, True]),
        np.arange(12, dtype=np.int8).reshape(3, 4).T,  # not contiguous
        np.array(3.5, dtype=np.float32),  # 0-d
        np.zeros((0, 3), dtype=np.int64),  # empty
        (np.arange(6) + 1j).astype(np.complex64),
        np.arange(5, dtype=">i4"),  # big-endian
    ],
    ids=["uint16-3d", "float64", "bool", "non-contiguous", "0-d", "empty", "complex64", "big-endian"],
)
def test_ndarray_round_trip_bit_for_bit(client: EchoClient, array: np.ndarray) -> None:
    back = client.array(array)
    assert back.dtype == array.dtype
    assert back.shape == array.shape
    assert back.tobytes() == array.tobytes()


def test_object_arrays_never_travel(client: EchoClient) -> None:
    with pytest.raises(ValidationError):
        client.array(np.array([object()], dtype=object))


@pytest.mark.parametrize(
    ("dtype", "refusal"),
    [
        ("|O8", "cannot travel: only numeric and bool dtypes can"),
        ("c", "bad dtype 'c': arrays of dtype |S1 cannot travel"),
    ],
    ids=["not-a-numeric-code", "numeric-looking-code-for-chars"],
)
def test_the_decoder_refuses_a_dtype_that_cannot_travel_at_either_check(dtype: str, refusal: str) -> None:
    """The dtype text's own form is checked first; a code of that form that numpy reads as characters, second."""
    header = encode({"v": 1, "id": 1}, None)[0]
    message = header.replace(b'"b":null', b'"b":{"$a":[1,"%s",[1]]},"x":1' % dtype.encode())
    with pytest.raises(ProtocolError, match=re.escape(refusal)):
        decode([message, b"\0"])


def test_property_get_set_and_notify(client: EchoClient, echo: Echo) -> None:
    seen: list[Mode] = []
    changed = threading.Event()

    def on_mode(mode: Mode) -> None:
        seen.append(mode)
        changed.set()

    client.modeChanged.connect(on_mode)
    assert client.mode is Mode.idle
    client.mode = Mode.busy
    assert client.mode is Mode.busy
    assert echo.mode is Mode.busy
    assert changed.wait(5)
    client.mode = Mode.busy  # no change, no notification
    echo.mode = Mode.idle  # server code assigns directly
    deadline = time.monotonic() + 5
    while len(seen) < 2 and time.monotonic() < deadline:
        changed.clear()
        changed.wait(0.1)
    assert seen == [Mode.busy, Mode.idle]


def test_an_ndarray_property_notifies_when_its_values_change_not_when_an_equal_array_is_assigned(
    client: EchoClient, echo: Echo
) -> None:
    seen: list[np.ndarray | None] = []
    second = threading.Event()

    def on_frame(frame: np.ndarray | None) -> None:
        seen.append(frame)
        if len(seen) == 2:
            second.set()

    client.frameChanged.connect(on_frame)
    echo.frame = np.zeros(3)
    echo.frame = np.zeros(3)  # another array, equal values: no notification
    echo.frame = np.ones(3)
    assert second.wait(5)
    assert [None if frame is None else frame.tolist() for frame in seen] == [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0]]
    assert client.frame is not None and client.frame.tolist() == [1.0, 1.0, 1.0]


def test_refused_write_raises_and_keeps_value(client: EchoClient) -> None:
    client.level = 3
    with pytest.raises(RemoteError) as caught:
        client.level = 7
    assert caught.value.type == "ValueError"
    assert "not allowed" in caught.value.message
    assert client.level == 3


def test_read_only_property_is_refused_over_the_wire(address: str) -> None:
    with Client.connect(address) as dynamic:
        assert dynamic._get("count") == 0
        with pytest.raises(ProtocolError, match="read-only"):
            dynamic._set("count", 3)


def test_server_assigns_read_only_property(client: EchoClient, echo: Echo) -> None:
    echo.count = 4
    assert client.count == 4
    with pytest.raises(ValidationError):
        echo.level = 11


def test_unknown_method_gets_an_error_reply_and_client_keeps_working(client: EchoClient) -> None:
    with pytest.raises(ProtocolError, match="no method 'nope'"):
        client._request("call", "nope", {}, 5.0)
    with pytest.raises(ProtocolError, match="unknown request kind"):
        client._request("frobnicate", "x", {}, 5.0)
    with pytest.raises(ProtocolError, match="no property '_private'"):
        client._request("get", "_private", None, 5.0)
    assert client.add(1, 1) == 2


def test_call_after_timeout_still_works(client: EchoClient) -> None:
    with pytest.raises(CallTimeout):
        client.sleep(0.5, timeout=0.1)
    assert client.add(40, 2) == 42  # the late reply of sleep is dropped


def test_timeouts_at_the_edges(client: EchoClient) -> None:
    assert client.add(1, 1, timeout=math.inf) == 2  # waits in slices, however long
    assert client.add(1, 2, timeout=None) == 3
    for spent in (0.0, -1.0):
        with pytest.raises(CallTimeout):
            client.add(1, 1, timeout=spent)
    assert client.add(2, 2) == 4


def test_a_call_longer_than_a_wait_slice_over_inproc_returns() -> None:
    """inproc connections report no handshake to the monitor: a long call must not be taken for a lost one."""
    with Echo().running(f"inproc://zidl-test-{id(object())}") as address, EchoClient.connect(address) as client:
        assert client.sleep(0.3) == 0.3
        with pytest.raises(CallTimeout):
            client.sleep(0.3, timeout=0.05)


def test_request_whose_deadline_passed_in_queue_is_never_run(address: str, echo: Echo) -> None:
    with EchoClient.connect(address) as first, EchoClient.connect(address) as second:
        blocker = threading.Thread(target=first.sleep, args=(0.6,))
        blocker.start()
        assert echo.sleeping.wait(5)
        with pytest.raises(CallTimeout):
            second.sleep(0.01, timeout=0.2)  # waits in the queue behind the first
        blocker.join()
        assert second.add(1) == 2  # the queue has moved past the expired request
    assert echo.started == [0.6]


def test_a_caller_that_waits_past_its_deadline_gets_an_expired_reply(address: str, echo: Echo) -> None:
    """The reply nobody usually reads: a raw socket keeps waiting after the deadline its request carried."""
    with EchoClient.connect(address) as first, zmq.Context.instance().socket(zmq.DEALER) as raw:
        raw.setsockopt(zmq.LINGER, 0)
        raw.connect(address)
        blocker = threading.Thread(target=first.sleep, args=(0.4,))
        blocker.start()
        assert echo.sleeping.wait(5)
        raw.send_multipart(request(7, "call", "add", 0.05, {"a": 1}))  # queued behind the sleep; gives up first
        assert raw.poll(5000), "no reply to a request whose deadline passed"
        request_id, kind, body = read_reply(raw.recv_multipart(), DEFAULT_LIMITS)
        blocker.join()
    assert (request_id, kind, body["kind"]) == (7, "err", "expired")
    with pytest.raises(CallTimeout, match="not started"):
        outcome(kind, body, {}, "add")
    assert echo.started == [0.4]


def test_long_call_does_not_block_handshakes_or_property_reads(address: str, echo: Echo) -> None:
    with EchoClient.connect(address) as first:
        blocker = threading.Thread(target=first.sleep, args=(1.0,))
        blocker.start()
        assert echo.sleeping.wait(5)
        start = time.monotonic()
        with EchoClient.connect(address) as second:
            assert second.mode is Mode.idle
            assert second.fast() == "fast"  # concurrent
        assert time.monotonic() - start < 0.8
        blocker.join()


def test_result_that_cannot_serialise_gets_error_and_server_keeps_serving(client: EchoClient) -> None:
    with pytest.raises(RemoteError) as caught:
        client.unsendable()
    assert "could not be sent" in caught.value.message
    assert client.add(1, 2) == 3


def test_raising_implementation_reaches_caller_as_remote_error(client: EchoClient) -> None:
    with pytest.raises(RemoteError) as caught:
        client.fail("it broke")
    assert caught.value.type == "ValueError"
    assert caught.value.message == "it broke"
    assert "raise ValueError(message)" in caught.value.traceback
    assert client.add(1) == 2


def test_declared_error_arrives_as_its_class_with_fields(client: EchoClient) -> None:
    with pytest.raises(Busy) as caught:
        client.refuse()
    assert caught.value.mode is Mode.busy
    assert caught.value.type == "Busy"
    assert caught.value.message == "the device is busy"
    assert "Busy(" in caught.value.traceback


def test_bad_argument_raises_validation_error_in_the_caller(client: EchoClient) -> None:
    with pytest.raises(ValidationError):
        client.add("not a number", 1)  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        client.level = 11


def test_server_side_validation_failure_arrives_as_validation_error(address: str) -> None:
    with Client.connect(address) as dynamic:
        dynamic._tables = None  # skip client-side validation: send raw values
        with pytest.raises(ValidationError) as caught:
            dynamic._request("call", "add", {"a": "x"}, 5.0)
        assert caught.value.errors()[0]["loc"] == ("a",)
        with pytest.raises(ValidationError):
            dynamic._request("set", "level", 99, 5.0)


def test_sixteen_threads_share_one_blocking_client(client: EchoClient) -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(50):
                assert client.add(n, i) == n + i
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []


def test_dynamic_client_works_from_the_handshake_alone(address: str) -> None:
    with Client.connect(address) as dynamic:
        assert dynamic.interface.name == "Echo"
        assert dynamic._call("add", {"a": 1, "b": 2}) == 3
        mode = dynamic._get("mode")
        assert mode.value == "idle"
        with pytest.raises(RemoteError) as caught:
            dynamic._call("refuse", {})
        assert type(caught.value).__name__ == "Busy"
        assert caught.value.mode.value == "busy"  # type: ignore[attr-defined]


def test_client_keeps_working_after_server_restarts_on_same_address() -> None:
    first = Echo()
    with first.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT) as address:
        client = EchoClient.connect(address, heartbeat=FAST_HEARTBEAT)
        assert client.add(1) == 2
    try:
        with Echo().running(address, heartbeat=FAST_HEARTBEAT):
            try:
                assert client.add(2) == 3
            except ConnectionLost:
                # sent before this client's I/O thread saw the first server go, so lost with its connection,
                # as a call in flight when a server stops is; the call after it reaches the new server
                assert client.add(2) == 3
    finally:
        client.close()


def test_interface_description_round_trips() -> None:
    assert runtime.Interface.from_dict(INTERFACE.to_dict()) == INTERFACE


@pytest.mark.parametrize(
    "result",
    [{"sum": 3.5, "n": -1}, {"$b": 1.0, "$$x": [2]}, [1, (2, "é")], None, "lone \ud800", {"a": {"$a": [1]}}],
)
def test_a_plain_result_travels_as_the_generic_encoder_sends_it(result: object) -> None:
    frames = encode_plain({"v": 1, "id": 7, "k": "ok"}, result)
    assert decode(frames)[1] == decode(encode({"v": 1, "id": 7, "k": "ok"}, result))[1]
    assert len(frames) == 1
