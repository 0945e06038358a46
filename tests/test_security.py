"""CurveZMQ: with the right keys everything works; without them nothing does, and the caller is told at once."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import zmq
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import AsyncEchoClient, EchoClient, Mode

from runtime import (
    AuthenticationFailed,
    CurveClient,
    CurveServer,
    KeyPair,
    Registry,
    generate_keypair,
    list_devices,
    watch,
    write_keypair,
)
from runtime.errors import ProtocolError
from runtime.registry import Registration, RegistryClient, lookup, lookup_async
from runtime.transport.addresses import connectable
from runtime.transport.monitor import Monitor

PROMPT = 1.0
"""Seconds within which a refused client must be told (its timeout is far longer)."""
TIMEOUT = 5.0


@dataclass(frozen=True)
class Keys:
    server: KeyPair
    client: KeyPair  # allowed by the server
    stranger: KeyPair  # allowed by nobody
    registry: KeyPair


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys(generate_keypair(), generate_keypair(), generate_keypair(), generate_keypair())


@pytest.fixture
def secured(keys: Keys) -> Iterator[tuple[Echo, str]]:
    server = Echo()
    curve = CurveServer(keys.server.secret, allowed=[keys.client.public])
    with server.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT, curve=curve) as address:
        yield server, address


def _good(keys: Keys) -> CurveClient:
    return CurveClient(keys.server.public, public_key=keys.client.public, secret_key=keys.client.secret)


def test_right_keys_call_read_write_and_receive_signals(keys: Keys, secured: tuple[Echo, str]) -> None:
    server, address = secured
    with EchoClient.connect(address, curve=_good(keys), timeout=TIMEOUT) as client:
        assert client.add(1, 2) == 3
        assert client.mode is Mode.idle
        client.level = 4
        assert client.level == 4
        got = threading.Event()
        client.tick.connect(lambda n, label: got.set())
        server.tick.emit(1, "over curve")
        assert got.wait(5)


def test_async_client_with_right_keys(keys: Keys, secured: tuple[Echo, str]) -> None:
    _, address = secured

    async def main() -> int:
        async with AsyncEchoClient.connect(address, curve=_good(keys)) as client:
            return await client.add(20, 22)

    assert asyncio.run(main()) == 42


def _bad_curves(keys: Keys) -> dict[str, CurveClient | None]:
    return {
        "no curve": None,
        "no own key": CurveClient(keys.server.public),
        "key not allowed": CurveClient(keys.server.public, secret_key=keys.stranger.secret),
        "wrong server key": CurveClient(keys.stranger.public, secret_key=keys.client.secret),
    }


BAD = ["no curve", "no own key", "key not allowed", "wrong server key"]


@pytest.mark.parametrize("case", BAD)
def test_refused_client_cannot_connect_call_or_read_and_is_told_at_once(
    keys: Keys, secured: tuple[Echo, str], case: str
) -> None:
    server, address = secured
    curve = _bad_curves(keys)[case]
    start = time.monotonic()
    with pytest.raises(AuthenticationFailed):
        EchoClient.connect(address, curve=curve, timeout=TIMEOUT)
    unconnected = EchoClient(address, curve=curve, timeout=TIMEOUT)  # no handshake: straight to a call
    try:
        with pytest.raises(AuthenticationFailed):
            unconnected.add(1, timeout=TIMEOUT)
        with pytest.raises(AuthenticationFailed):
            _ = unconnected.mode
    finally:
        unconnected.close()
    assert time.monotonic() - start < 3 * PROMPT
    assert server.started == []


@pytest.mark.parametrize("case", ["no curve", "key not allowed"])
def test_refused_async_client_is_told_at_once(keys: Keys, secured: tuple[Echo, str], case: str) -> None:
    _, address = secured

    async def main() -> None:
        with pytest.raises(AuthenticationFailed):
            await AsyncEchoClient.connect(address, curve=_bad_curves(keys)[case], timeout=TIMEOUT)

    start = time.monotonic()
    asyncio.run(main())
    assert time.monotonic() - start < PROMPT


def test_keys_from_files_written_by_keygen(tmp_path: Path) -> None:
    server_public, server_secret = write_keypair(tmp_path / "server", "cam")
    _, client_secret = write_keypair(tmp_path / "clients", "laptop")
    write_keypair(tmp_path / "clients", "other")
    assert server_secret.stat().st_mode & 0o077 == 0
    with pytest.raises(FileExistsError):
        write_keypair(tmp_path / "server", "cam")
    curve = CurveServer(server_secret, allowed=tmp_path / "clients")  # every *.key in the folder
    assert curve.allowed is not None and len(curve.allowed) == 2
    client_curve = CurveClient(server_public, secret_key=client_secret)
    with (
        Echo().running("tcp://127.0.0.1:0", curve=curve) as address,
        EchoClient.connect(address, curve=client_curve) as client,
    ):
        assert client.add(1) == 2


def test_a_server_needs_allowed_keys_or_allow_any(keys: Keys) -> None:
    with pytest.raises(ValueError, match="allow_any"):
        CurveServer(keys.server.secret)
    with Echo().running("tcp://127.0.0.1:0", curve=CurveServer(keys.server.secret, allow_any=True)) as address:
        with EchoClient.connect(address, curve=CurveClient(keys.server.public)) as client:
            assert client.add(1) == 2
        with pytest.raises(AuthenticationFailed):
            EchoClient.connect(address)  # allow_any still needs Curve


# --- the registry --------------------------------------------------------------------------------


@pytest.fixture
def secure_registry(keys: Keys) -> Iterator[str]:
    curve = CurveServer(keys.registry.secret, allowed={"cam": keys.server.public, "laptop": keys.client.public})
    with Registry(ttl=1.0, probe_timeout=0.2, curve=curve).running("tcp://127.0.0.1:0") as address:
        yield address


def test_device_registered_over_curve_is_found_and_called_over_curve(keys: Keys, secure_registry: str) -> None:
    device_curve = CurveServer(keys.server.secret, allowed=[keys.client.public])
    to_registry = CurveClient(keys.registry.public, secret_key=keys.server.secret)
    mine = CurveClient(keys.registry.public, secret_key=keys.client.secret)  # the registry's key; the device's comes
    added = threading.Event()
    with Echo().running(
        "tcp://127.0.0.1:0", registry=secure_registry, name="cam", curve=device_curve, registry_curve=to_registry
    ):
        with watch(lambda change, record: added.set(), registry=secure_registry, curve=mine):
            assert added.wait(5)  # the registry's events travel over Curve too
        [record] = list_devices(registry=secure_registry, curve=mine)
        assert record.public_key == device_curve.public_key
        with EchoClient.lookup("cam", registry=secure_registry, curve=mine, timeout=TIMEOUT) as client:
            assert client.add(2) == 3


@pytest.mark.parametrize("case", ["no curve", "key not allowed"])
def test_refused_key_cannot_list_or_look_up(keys: Keys, secure_registry: str, case: str) -> None:
    curve = {"no curve": None, "key not allowed": CurveClient(keys.registry.public, secret_key=keys.stranger.secret)}
    start = time.monotonic()
    with pytest.raises(AuthenticationFailed):
        list_devices(registry=secure_registry, curve=curve[case], timeout=TIMEOUT)
    with pytest.raises(AuthenticationFailed):
        EchoClient.lookup("cam", registry=secure_registry, curve=curve[case], timeout=TIMEOUT)
    assert time.monotonic() - start < 2 * PROMPT


class Refusals(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.seen = threading.Event()

    def emit(self, record: logging.LogRecord) -> None:
        if "refused" in record.getMessage():
            self.seen.set()


@pytest.mark.parametrize("case", ["no curve", "key not allowed"])
def test_refused_key_cannot_register_and_the_device_says_so_at_once(
    keys: Keys, secure_registry: str, case: str
) -> None:
    curve = {"no curve": None, "key not allowed": CurveClient(keys.registry.public, secret_key=keys.stranger.secret)}
    refusals = Refusals()
    logger = logging.getLogger("runtime.registry.registration")
    logger.addHandler(refusals)
    registration = Registration(secure_registry, "intruder", "Echo", 1, "h", "tcp://127.0.0.1:9", curve=curve[case])
    try:
        start = time.monotonic()
        while not refusals.seen.is_set() and time.monotonic() - start < PROMPT:
            registration.socket.poll(int(registration.tick() * 1000) + 1)  # the loop a server runs
        assert refusals.seen.is_set(), "the refusal was not reported"
        assert registration.refused is not None and not registration.registered
    finally:
        registration.close()
        logger.removeHandler(refusals)
    good = CurveClient(keys.registry.public, secret_key=keys.client.secret)
    assert list_devices(registry=secure_registry, curve=good) == []


@pytest.mark.parametrize("case", ["allowed", "no curve", "key not allowed"])
def test_heartbeat_socket_is_behind_curve_too(keys: Keys, secure_registry: str, case: str) -> None:
    good = CurveClient(keys.registry.public, secret_key=keys.client.secret)
    with RegistryClient(secure_registry, curve=good, timeout=TIMEOUT) as client:
        fields = {"name": "laptop", "interface": "Echo", "version": 1, "hash": "h", "address": "tcp://127.0.0.1:9"}
        reply = client.request("register", **fields)
    curve = {
        "allowed": good,
        "no curve": None,
        "key not allowed": CurveClient(keys.registry.public, secret_key=keys.stranger.secret),
    }[case]
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    if curve is not None:
        curve.apply(sock)
    monitor = Monitor(sock)
    try:
        sock.connect(connectable(reply["heartbeats"]))
        sock.send(json.dumps({"v": 1, "id": 1, "k": "heartbeat", "lease": reply["lease"], "ack": True}).encode())
        if case == "allowed":
            assert sock.poll(int(TIMEOUT * 1000)) and json.loads(sock.recv())["ok"] is True
        else:
            deadline = time.monotonic() + PROMPT
            while monitor.refused is None and monitor.socket.poll(max(1, int((deadline - time.monotonic()) * 1000))):
                monitor.drain()
            assert monitor.refused is not None, "the heartbeat socket took a handshake it should refuse"
            assert not sock.poll(0)
    finally:
        monitor.close()
        sock.close(0)


def _claim(name: str, address: str = "tcp://127.0.0.1:9", **fields: Any) -> dict[str, Any]:
    return {"name": name, "interface": "Echo", "version": 1, "hash": "h", "address": address, **fields}


def test_a_key_registers_only_the_names_of_its_key_files(tmp_path: Path) -> None:
    members = tmp_path / "members"
    write_keypair(members, "cam1")
    write_keypair(members, "laptop")
    registry_public, registry_secret = write_keypair(tmp_path, "registry")
    curve = CurveServer(registry_secret, allowed=members)
    assert curve.names is not None and sorted(n for names in curve.names.values() for n in names) == ["cam1", "laptop"]
    as_cam1 = CurveClient(registry_public, secret_key=members / "cam1.key_secret")
    as_laptop = CurveClient(registry_public, secret_key=members / "laptop.key_secret")
    with (
        Registry(ttl=1.0, curve=curve).running("tcp://127.0.0.1:0") as address,
        RegistryClient(address, curve=as_cam1, timeout=TIMEOUT) as cam1,
        RegistryClient(address, curve=as_laptop, timeout=TIMEOUT) as laptop,
    ):
        assert cam1.request("register", **_claim("cam1"))["name"] == "cam1"
        assert cam1.request("register", **_claim("cam1-2", "tcp://127.0.0.1:8"))["name"] == "cam1-2"  # its suffixes
        for name in ("cam2", "cam10", "cam1x", "cam1--1"):
            with pytest.raises(ProtocolError, match="not-allowed"):
                cam1.request("register", **_claim(name, "tcp://127.0.0.1:7"))
        with pytest.raises(ProtocolError, match="not-allowed"):
            laptop.request("register", **_claim("cam1", "tcp://127.0.0.1:6", takeover=True))


def test_names_cannot_be_stolen_over_curve(keys: Keys, secure_registry: str) -> None:
    device_curve = CurveServer(keys.server.secret, allowed=[keys.client.public])
    to_registry = CurveClient(keys.registry.public, secret_key=keys.server.secret)
    mine = CurveClient(keys.registry.public, secret_key=keys.client.secret)  # allowed: but as "laptop"
    added = threading.Event()
    with (
        watch(lambda change, record: added.set(), registry=secure_registry, curve=mine),
        Echo().running(
            "tcp://127.0.0.1:0", registry=secure_registry, name="cam", curve=device_curve, registry_curve=to_registry
        ) as device_address,
    ):
        assert added.wait(TIMEOUT)
        with RegistryClient(secure_registry, curve=mine, timeout=TIMEOUT) as thief:
            device = thief.lookup("cam")
            for fields in ({"takeover": True}, {"lease": "forged"}, {"ttl": 86400}):  # by name: not its name
                with pytest.raises(ProtocolError, match="not-allowed"):
                    thief.request("register", **_claim("cam", "tcp://127.0.0.1:9", **fields))
            squat = thief.request("register", **_claim("laptop", device.address, ttl=86400))  # at its address
            assert squat["ttl"] == 1.0  # the registry's, not the day asked for
            with pytest.raises(ProtocolError, match="unknown"):
                thief.request("unregister", lease="forged")
            after = thief.lookup("cam")
            assert (after.address, after.public_key) == (device.address, device_curve.public_key)
        with EchoClient.lookup("cam", registry=secure_registry, curve=mine, timeout=TIMEOUT) as client:
            assert client.add(1) == 2 and client.address == device_address


def test_a_curve_lookup_through_a_registry_without_curve_fails_at_once(keys: Keys) -> None:
    curve = CurveClient(keys.registry.public, secret_key=keys.client.secret)
    with Registry().running("tcp://127.0.0.1:0") as plain:
        start = time.monotonic()
        with pytest.raises(AuthenticationFailed, match="one end only"):
            lookup("cam", registry=plain, curve=curve, timeout=TIMEOUT)
        with pytest.raises(AuthenticationFailed, match="one end only"):
            list_devices(registry=plain, curve=curve, timeout=TIMEOUT)
        with pytest.raises(AuthenticationFailed, match="one end only"):
            asyncio.run(lookup_async("cam", registry=plain, curve=curve, timeout=TIMEOUT))
        with pytest.raises(AuthenticationFailed):
            EchoClient.lookup("cam", registry=plain, curve=curve, timeout=TIMEOUT)
        assert time.monotonic() - start < 2 * PROMPT


def test_registry_command_with_a_secret_key_needs_allowed_keys_or_allow_any_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from runtime.tools.cli import main

    _, secret = write_keypair(tmp_path, "registry")
    assert main(["registry", "--bind", "tcp://127.0.0.1:0", "--secret-key", str(secret)]) == 1
    assert "--allow-any-key" in capsys.readouterr().err
    assert main(["registry", "--allow-any-key"]) == 1  # without a secret key, no Curve to allow keys on
    assert "--secret-key" in capsys.readouterr().err


# --- nothing stops a server remotely -----------------------------------------------------------------


def _ask(sock: zmq.Socket[bytes], message: dict[str, Any]) -> dict[str, Any]:
    sock.send(json.dumps(message).encode())
    assert sock.poll(5000), message
    reply: dict[str, Any] = json.loads(sock.recv_multipart()[0])
    return reply


def test_no_request_kind_stops_a_server_or_the_registry() -> None:
    kinds = ["hello", "call", "get", "set", "ping", "stop", "shutdown", "exit", "quit", "kill", "close", "terminate"]
    names = ["stop", "serve", "running", "close", "_zidl_stop_engine", "__del__", "request_stop", "set_mode"]
    server = Echo()
    with server.running("tcp://127.0.0.1:0") as address, Registry().running("tcp://127.0.0.1:0") as registry:
        for endpoint in (address, registry):
            sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
            sock.setsockopt(zmq.LINGER, 0)
            sock.connect(endpoint)
            try:
                for kind in kinds:
                    for name in names:
                        _ask(sock, {"v": 1, "id": 1, "k": kind, "n": name, "name": name, "b": {}})
            finally:
                sock.close(linger=0)
        with EchoClient.connect(address) as client:
            assert client.add(1) == 2
        assert list_devices(registry=registry) == []
        assert server.address is not None
