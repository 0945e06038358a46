"""What docs/protocol.md promises a client written in another language, checked on the wire with a raw DEALER:
the interface description's JSON Schema, the hello a server accepts or refuses, and the header's edge values."""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import zmq
from fixtures.echo_device import Echo
from fixtures.generated.echo import INTERFACE
from jsonschema import Draft202012Validator

ROOT = Path(__file__).parent.parent
SCHEMA = json.loads((ROOT / "docs" / "interface.schema.json").read_text())
GENERATED = [
    f"{package}.{path.stem}"
    for package, folder in (
        ("zidl_devices", ROOT / "generated"),
        ("fixtures.generated", ROOT / "tests" / "fixtures" / "generated"),
        ("bench.generated", ROOT / "bench" / "generated"),
    )
    for path in sorted(folder.glob("*.py"))
    if path.stem != "__init__"
]


def test_the_schema_is_a_json_schema() -> None:
    Draft202012Validator.check_schema(SCHEMA)


@pytest.mark.parametrize("module", GENERATED)
@pytest.mark.parametrize("docs", [True, False])
def test_every_generated_interface_is_what_the_schema_describes(
    module: str, docs: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(ROOT))  # bench is a package of the repository, not installed
    description = importlib.import_module(module).INTERFACE.to_dict(docs=docs)
    assert [error.message for error in Draft202012Validator(SCHEMA).iter_errors(description)] == []


@pytest.mark.parametrize(
    "spoil",
    [
        lambda d: d.pop("methods"),
        lambda d: d.update(colour="red"),
        lambda d: d["methods"][0].pop("kind"),
        lambda d: d["methods"][0].update(kind="stream"),  # a stream without its yields
        lambda d: d["properties"][0].update(writable="yes"),
    ],
    ids=["no methods", "an unknown key", "a method without kind", "a stream without yields", "writable not a bool"],
)
def test_the_schema_refuses_what_no_server_sends(spoil: Any) -> None:
    description = INTERFACE.to_dict()
    spoil(description)
    assert list(Draft202012Validator(SCHEMA).iter_errors(description))


@pytest.fixture(scope="module")
def echo() -> Iterator[str]:
    with Echo().running("tcp://127.0.0.1:0") as address:
        yield address


@pytest.fixture
def ask(echo: str) -> Iterator[Any]:
    """Send one header on a fresh DEALER (no hello first, no empty delimiter); the reply's header."""
    sockets: list[zmq.Socket[bytes]] = []

    def send(**header: Any) -> dict[str, Any]:
        sock = zmq.Context.instance().socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sockets.append(sock)
        sock.connect(echo)
        sock.send(json.dumps({"v": 1, "id": 7, **header}).encode())
        assert sock.poll(10_000), f"no reply to {header}"
        reply: dict[str, Any] = json.loads(sock.recv_multipart()[0])
        return reply

    yield send
    for sock in sockets:
        sock.close()


def test_a_call_before_any_hello_is_served(ask: Any) -> None:
    assert ask(k="call", n="add", b={"a": 2}) == {"v": 1, "id": 7, "k": "ok", "b": 3}


@pytest.mark.parametrize("body", [{}, {"b": None}], ids=["no b", "b null"])
def test_a_call_without_arguments_needs_no_body(ask: Any, body: dict[str, Any]) -> None:
    assert ask(k="call", n="fast", **body)["b"] == "fast"


@pytest.mark.parametrize("timeout", [-1, "5", True, None], ids=["negative", "a string", "a boolean", "null"])
def test_a_timeout_is_seconds_zero_or_more(ask: Any, timeout: Any) -> None:
    reply = ask(k="call", n="fast", b={}, t=timeout)
    if timeout is None:
        assert reply["b"] == "fast"
    else:
        assert reply["b"]["kind"] == "protocol"
        assert "'t' is the seconds the caller waits" in reply["b"]["message"]


def test_a_timeout_of_zero_has_passed_already(ask: Any) -> None:
    assert ask(k="call", n="fast", b={}, t=0)["b"]["kind"] == "expired"


@pytest.mark.parametrize("request_id", ["abc", 1.5, None, [1]], ids=["a string", "a float", "null", "a list"])
def test_any_json_id_comes_back_as_sent(ask: Any, request_id: Any) -> None:
    assert ask(k="call", n="fast", id=request_id)["id"] == request_id


def test_a_hello_without_a_description_is_accepted(ask: Any) -> None:
    reply = ask(k="hello", b={"interface": None, "protocol": 1})
    assert reply["k"] == "ok"
    assert reply["b"]["interface"] == INTERFACE.to_dict()
    assert reply["b"]["protocol"] == 1
    assert reply["b"]["signals"].startswith("tcp://127.0.0.1:")


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (None, 'a hello\'s body is {"interface": <description> or null, "protocol": 1}'),
        ("garbage", 'a hello\'s body is {"interface": <description> or null, "protocol": 1}'),
        ({"interface": None, "protocol": 2}, "this server speaks protocol 1, not 2"),
        ({"interface": {"interface": "Echo"}, "protocol": 1}, "a hello's interface is not a description"),
    ],
    ids=["no body", "not an object", "another protocol", "not a description"],
)
def test_a_hello_the_server_cannot_accept_is_refused(ask: Any, body: Any, said: str) -> None:
    reply = ask(k="hello", b=body)
    assert (reply["k"], reply["b"]["kind"]) == ("err", "protocol")
    assert said in reply["b"]["message"]


def test_a_hello_with_an_incompatible_description_is_refused_with_the_differences(ask: Any) -> None:
    mine = INTERFACE.to_dict()
    mine["version"] = 2
    mine["methods"].append({**mine["methods"][0], "name": "teleport"})
    reply = ask(k="hello", b={"interface": mine, "protocol": 1})
    assert (reply["k"], reply["b"]["kind"]) == ("err", "mismatch")
    assert reply["b"]["message"].startswith("client Echo v2 / server Echo v1: ")
    assert reply["b"]["differences"] == ["major versions differ (2 and 1)", "method teleport is missing on the server"]
