# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""The web view's HTTP and WebSocket API against real devices and a real registry, over real sockets."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.web_fixtures import JPEG, PNG, Rig, web_rig  # noqa: F401
from websockets.exceptions import InvalidStatus
from websockets.sync.client import ClientConnection, connect
from websockets.typing import Origin

from runtime import Client
from runtime.tools.web.server import WebView

ROOT = Path(__file__).parent.parent


def messages(socket: ClientConnection, until: str = "result") -> Iterator[Any]:
    """The messages of a stream's WebSocket, JSON ones decoded, until one with the key ``until`` (or an error)."""
    while True:
        message = socket.recv(timeout=10.0)
        if isinstance(message, bytes):
            yield message
            continue
        decoded = json.loads(message)
        yield decoded
        if until in decoded or "error" in decoded:
            return


def refused_status(url: str, **options: Any) -> int:
    with pytest.raises(InvalidStatus) as refused, connect(url, open_timeout=5.0, **options):
        pass
    return refused.value.response.status_code


def test_devices_lists_every_registered_device(web_rig: Rig) -> None:
    with web_rig.http() as http:
        devices = http.get("/api/devices").json()
    assert [(d["name"], d["interface"], d["version"]) for d in devices] == [
        ("echo", "Echo", 1),
        ("gallery", "Gallery", 1),
        ("streamer", "Streamer", 1),
    ]


def test_a_description_is_the_one_the_device_gives(web_rig: Rig) -> None:
    with web_rig.http() as http, Client.lookup("echo", registry=web_rig.registry) as echo:
        assert http.get("/api/devices/echo").json() == echo.interface.to_dict()


def test_a_property_is_read_and_written_as_json(web_rig: Rig) -> None:
    with web_rig.http() as http, Client.lookup("echo", registry=web_rig.registry) as echo:
        assert http.put("/api/devices/echo/properties/meta", json={"value": {"name": "web", "size": 3}}).json() == {
            "value": {"name": "web", "size": 3}
        }
        assert echo.get("meta").name == "web"
        assert http.get("/api/devices/echo/properties/meta").json() == {"value": {"name": "web", "size": 3}}


def test_a_value_refused_by_validation_is_a_422_with_pydantics_errors(web_rig: Rig) -> None:
    with web_rig.http() as http:
        before = http.get("/api/devices/echo/properties/level").json()
        response = http.put("/api/devices/echo/properties/level", json={"value": 11})
        assert response.status_code == 422
        error = response.json()["error"]
        assert error["type"] == "ValidationError"
        assert error["errors"][0]["type"] == "less_than_equal"
        assert error["errors"][0]["ctx"] == {"le": 10}
        assert http.get("/api/devices/echo/properties/level").json() == before
        bad_args = http.post("/api/devices/echo/methods/add", json={"a": "three"})
        assert bad_args.status_code == 422
        assert bad_args.json()["error"]["errors"][0]["loc"] == ["a"]


def test_a_value_the_device_refuses_is_a_502_with_its_reason(web_rig: Rig) -> None:
    with web_rig.http() as http:
        response = http.put("/api/devices/echo/properties/level", json={"value": 7})
        assert response.status_code == 502
        assert response.json() == {"error": {"type": "ValueError", "message": "level 7 is not allowed"}}
        assert http.put("/api/devices/echo/properties/count", json={"value": 1}).status_code == 405


def test_a_method_returns_its_result_as_json(web_rig: Rig) -> None:
    with web_rig.http() as http:
        assert http.post("/api/devices/echo/methods/add", json={"a": 2}).json() == {"result": 3}
        assert http.post("/api/devices/echo/methods/echo", json={"value": [1, "two"]}).json() == {"result": [1, "two"]}
        blob = http.post("/api/devices/echo/methods/blob", json={"size": 3}).json()["result"]
        assert blob == {"data": "data:application/octet-stream;base64,AAAA", "meta": {"name": "blob", "size": 3}}
        array = http.post("/api/devices/echo/methods/array", json={"value": [[1, 2, 3]]}).json()["result"]
        assert (array["dtype"], array["shape"]) == ("int64", [1, 3])


def test_a_bytes_result_is_the_raw_body_with_its_media_type(web_rig: Rig) -> None:
    with web_rig.http() as http:
        response = http.post("/api/devices/gallery/methods/picture", json={"size": 1 << 20})
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == PNG + bytes((1 << 20) - len(PNG))


def test_a_remote_error_is_a_502_with_its_type_and_message(web_rig: Rig) -> None:
    with web_rig.http() as http:
        failed = http.post("/api/devices/echo/methods/fail", json={"message": "it broke"})
        assert failed.status_code == 502
        assert failed.json() == {"error": {"type": "ValueError", "message": "it broke"}}
        declared = http.post("/api/devices/echo/methods/refuse")
        assert (declared.status_code, declared.json()["error"]["type"]) == (502, "Busy")


def test_a_call_past_its_timeout_is_a_504(web_rig: Rig) -> None:
    with web_rig.http() as http:
        response = http.post("/api/devices/echo/methods/sleep?timeout=0.1", json={"seconds": 0.4})
        assert response.status_code == 504
        assert response.json()["error"]["type"] == "CallTimeout"
        assert http.post("/api/devices/echo/methods/fast").json() == {"result": "fast"}


def test_unknown_devices_methods_and_properties_are_404s(web_rig: Rig) -> None:
    with web_rig.http() as http:
        for response in (
            http.get("/api/devices/nobody"),
            http.get("/api/devices/nobody/properties/level"),
            http.get("/api/devices/echo/properties/nothing"),
            http.put("/api/devices/echo/properties/nothing", json={"value": 1}),
            http.post("/api/devices/echo/methods/nothing"),
        ):
            assert response.status_code == 404
            assert response.json()["error"]["type"] == "NotFound"
    assert refused_status(web_rig.ws("/api/devices/nobody/events")) == 404
    assert refused_status(web_rig.ws("/api/devices/streamer/methods/nothing")) == 404


def test_a_property_changed_by_another_client_reaches_the_events_websocket(web_rig: Rig) -> None:
    with (
        connect(web_rig.ws("/api/devices/echo/events")) as events,
        Client.lookup("echo", registry=web_rig.registry) as echo,
    ):
        echo.set("mode", "busy" if echo.get("mode").value == "idle" else "idle")
        message = json.loads(events.recv(timeout=5.0))
        assert message["signal"] == "modeChanged"
        assert message["args"] == [echo.get("mode").value]
        assert isinstance(message["time"], float)


def test_a_stream_of_bytes_comes_as_binary_messages_then_its_result(web_rig: Rig) -> None:
    with connect(web_rig.ws("/api/devices/gallery/methods/frames")) as socket:
        socket.send(json.dumps({"n": 3, "size": 1000}))
        received = list(messages(socket))
    assert received == [JPEG + bytes([i]) * 997 for i in range(3)] + [{"result": 3}]


def test_a_stream_of_structs_comes_as_json_items(web_rig: Rig) -> None:
    with connect(web_rig.ws("/api/devices/streamer/methods/steps")) as socket:
        socket.send(json.dumps({"n": 2, "label": "web"}))
        received = list(messages(socket))
    assert received == [
        {"item": {"done": 1, "total": 2}},
        {"item": {"done": 2, "total": 2}},
        {"result": {"steps": 2, "label": "web"}},
    ]


def test_a_stream_that_fails_ends_with_its_error_after_its_items(web_rig: Rig) -> None:
    with connect(web_rig.ws("/api/devices/streamer/methods/count")) as socket:
        socket.send(json.dumps({"n": 5, "fail_at": 2}))
        received = list(messages(socket))
    assert received[:2] == [{"item": 0}, {"item": 1}]
    assert received[2]["error"]["type"] == "Jammed"
    with connect(web_rig.ws("/api/devices/streamer/methods/count")) as socket:
        socket.send(json.dumps({"n": -1}))
        (refused,) = messages(socket)
    assert refused["error"]["type"] == "ValidationError"
    assert refused["error"]["errors"][0]["loc"] == ["n"]


def test_a_stream_is_opened_as_a_websocket_and_a_call_is_posted(web_rig: Rig) -> None:
    with web_rig.http() as http:
        posted = http.post("/api/devices/streamer/methods/ticks")
    assert (posted.status_code, posted.json()["error"]["type"]) == (400, "StreamMethod")
    assert refused_status(web_rig.ws("/api/devices/echo/methods/add")) == 400
    with connect(web_rig.ws("/api/devices/streamer/methods/count")) as socket:
        socket.send("not json")
        (refused,) = messages(socket)
    assert refused["error"]["type"] == "BadRequest"


def test_closing_the_websocket_cancels_the_stream_on_the_device(web_rig: Rig) -> None:
    # max_queue=None: the test's client keeps reading while it closes, as a browser does
    with connect(web_rig.ws("/api/devices/streamer/methods/ticks"), max_queue=None) as socket:
        socket.send("{}")
        assert [json.loads(socket.recv(timeout=5.0)) for _ in range(2)] == [{"item": 0}, {"item": 1}]
        run = web_rig.streamer.last("ticks")
        assert not run.closed.is_set()
    assert run.closed.wait(5.0), "the device's generator was not closed"


def test_openapi_describes_every_device_with_pydantics_json_schemas(web_rig: Rig) -> None:
    with web_rig.http() as http:
        document = http.get("/api/openapi.json").json()
    assert document["openapi"] == "3.1.0"
    add = document["paths"]["/api/devices/echo/methods/add"]["post"]
    arguments = add["requestBody"]["content"]["application/json"]["schema"]
    assert arguments["properties"]["a"]["type"] == "integer"
    assert arguments["properties"]["b"]["default"] == 1
    assert arguments["required"] == ["a"]
    level = document["paths"]["/api/devices/echo/properties/level"]
    value = level["put"]["requestBody"]["content"]["application/json"]["schema"]["properties"]["value"]
    assert (value["minimum"], value["maximum"]) == (0, 10)
    assert "put" not in document["paths"]["/api/devices/echo/properties/count"]
    mode = document["paths"]["/api/devices/echo/properties/mode"]["get"]["responses"]["200"]["content"]
    assert mode["application/json"]["schema"]["properties"]["value"]["$ref"] == "#/components/schemas/Echo.Mode"
    assert document["components"]["schemas"]["Echo.Mode"]["enum"] == ["idle", "busy"]
    blob = document["paths"]["/api/devices/echo/methods/blob"]["post"]["responses"]["200"]["content"]
    assert blob["application/json"]["schema"]["properties"]["result"]["$ref"] == "#/components/schemas/Echo.BlobResult"
    assert document["components"]["schemas"]["Echo.Meta"]["required"] == ["name", "size"]
    picture = document["paths"]["/api/devices/gallery/methods/picture"]["post"]["responses"]["200"]
    assert "image/*" in picture["content"]
    assert {"404", "422", "502", "504"} <= set(add["responses"])


def _removed(socket: ClientConnection, name: str) -> None:
    while True:
        change = json.loads(socket.recv(timeout=10.0))
        if change == {"change": "removed", "device": change["device"]} and change["device"]["name"] == name:
            return


def test_a_device_that_stops_is_gone_from_the_devices_and_its_websockets_close(web_rig: Rig) -> None:
    with contextlib.ExitStack() as stack:
        http = stack.enter_context(web_rig.http())
        changes = stack.enter_context(connect(web_rig.ws("/api/events")))
        with Echo().running("tcp://127.0.0.1:0", registry=web_rig.registry, name="doomed", heartbeat=FAST_HEARTBEAT):
            while json.loads(changes.recv(timeout=10.0))["device"]["name"] != "doomed":
                pass
            assert http.post("/api/devices/doomed/methods/add", json={"a": 1}).json() == {"result": 2}
            events = stack.enter_context(connect(web_rig.ws("/api/devices/doomed/events")))
        _removed(changes, "doomed")
        assert "doomed" not in [device["name"] for device in http.get("/api/devices").json()]
        assert json.loads(events.recv(timeout=5.0))["error"]["type"] == "DeviceGone"
        assert http.post("/api/devices/echo/methods/add", json={"a": 1}).json() == {"result": 2}  # the rest go on


DEVICE = """
import sys
from fixtures.echo_device import Echo
Echo().serve("tcp://127.0.0.1:0", registry=sys.argv[1], name="killed")
"""


@pytest.mark.slow
def test_a_device_killed_mid_session_is_gone_within_the_registrys_lease(web_rig: Rig) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    with connect(web_rig.ws("/api/events")) as changes:
        device = subprocess.Popen([sys.executable, "-c", DEVICE, web_rig.registry], env=env)
        try:
            while json.loads(changes.recv(timeout=60.0))["device"]["name"] != "killed":  # a new process's imports
                pass
            device.send_signal(signal.SIGKILL)
            _removed(changes, "killed")  # the registry's lease is 3 s; the recv waits at most 10 s
        finally:
            device.kill()
            device.wait()
    with web_rig.http() as http:
        assert http.get("/api/devices/killed").status_code == 404


@pytest.fixture(scope="module")
def guarded(web_rig: Rig) -> Iterator[tuple[str, str]]:
    """A second view of the same registry: with a token, read-only."""
    with WebView(bind="127.0.0.1:0", registry=web_rig.registry, token="s3cret", read_only=True).running() as url:
        yield url.split("?")[0], "s3cret"


def test_with_a_token_every_request_and_websocket_needs_it(guarded: tuple[str, str]) -> None:
    url, token = guarded
    ws = url.replace("http://", "ws://") + "api/devices/echo/events"
    with httpx.Client(base_url=url, trust_env=False) as http:
        assert http.get("/api/devices").status_code == 401
        assert http.get("/").status_code == 401
        assert http.get("/api/devices", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert http.get("/api/devices", headers={"Authorization": f"Bearer {token}"}).status_code == 200
        assert http.get(f"/api/devices?token={token}").status_code == 200
        assert http.get(f"/static/app.js?token={token}").status_code == 200
    assert refused_status(ws) == 401
    with connect(f"{ws}?token={token}"):
        pass


def test_read_only_refuses_writes_and_calls_with_a_403(guarded: tuple[str, str]) -> None:
    url, token = guarded
    auth = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=url, headers=auth, trust_env=False) as http:
        assert http.get("/api/devices/echo/properties/level").status_code == 200
        assert http.put("/api/devices/echo/properties/level", json={"value": 1}).status_code == 403
        refused = http.post("/api/devices/echo/methods/add", json={"a": 1})
        assert (refused.status_code, refused.json()["error"]["type"]) == (403, "ReadOnly")
    base = url.replace("http://", "ws://")
    assert refused_status(f"{base}api/devices/streamer/methods/ticks?token={token}") == 403
    with connect(f"{base}api/devices/echo/events?token={token}"):
        pass


def test_a_websocket_or_a_write_from_another_sites_page_is_refused(web_rig: Rig) -> None:
    host = web_rig.url.removeprefix("http://").rstrip("/")
    assert refused_status(web_rig.ws("/api/events"), origin="http://elsewhere.example") == 403
    with connect(web_rig.ws("/api/events"), origin=Origin(f"http://{host}")):
        pass
    with web_rig.http() as http:
        elsewhere = {"Origin": "http://elsewhere.example"}
        assert http.post("/api/devices/echo/methods/add", json={"a": 1}, headers=elsewhere).status_code == 403
        rebound = http.get("/api/devices", headers={"Host": f"rebound.example:{host.split(':')[1]}"})
        assert rebound.status_code == 403


def test_off_the_loopback_a_token_is_made_and_the_url_carries_it() -> None:
    view = WebView(bind="0.0.0.0:8000")
    assert view.token is not None and len(view.token) >= 24
    assert view.url.endswith(f":8000/?token={view.token}")
    assert WebView().token is None
    assert WebView(bind="127.0.0.1:8000", token="given").url == "http://127.0.0.1:8000/?token=given"


def test_zidl_web_with_a_bad_bind_says_so_in_one_line() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "runtime.tools.cli", "web", "--bind", "nowhere"], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == ["zidl: --bind takes HOST:PORT, such as 127.0.0.1:8000, not 'nowhere'"]
