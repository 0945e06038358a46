# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""A greedy peer on B's side exhausts neither the bridge nor, through it, the device: the device's own bounds apply.

Each test attacks with raw sockets (they send what a zidl client never would) while a
well-behaved client on B's side goes on being served.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Iterator

import pytest
import zmq
from fixtures.bridging import BIND, BRIDGE_HEARTBEAT, Networks, address_in, networks  # noqa: F401
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import EchoClient
from fixtures.raw_peers import dealer, eventually, replies, request, sockets  # noqa: F401

from runtime import Bridge, Limits

LIMITS = Limits(max_bytes=1 << 20, max_header_bytes=8192, max_calls_per_caller=3)


@pytest.fixture
def device() -> Echo:
    return Echo()


@pytest.fixture
def bridge(networks: Networks, device: Echo) -> Iterator[Bridge]:
    with (
        device.running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT),
        Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT, limits=LIMITS).running() as running,
    ):
        yield running


@pytest.fixture
def address(networks: Networks, bridge: Bridge) -> str:
    return address_in(networks.b, "echo")


def test_messages_over_the_limits_are_refused_with_their_id_and_never_reach_the_device(
    sockets: list[zmq.Socket[bytes]], address: str, device: Echo
) -> None:
    peer = dealer(sockets, address)
    peer.send_multipart([request(1, "call", "echo", {"value": {"$b": 1}}, x=1), b"x" * (2 << 20)])
    peer.send(request(2, "call", "echo", {"value": "y" * 10_000}))
    peer.send_multipart([request(3, "call", "echo", {"value": 1}), *[b""] * 2000])
    got = replies(peer, 3)
    assert "bytes, more than the limit" in got[1]["b"]["message"]
    assert "header has" in got[2]["b"]["message"] and "yyyy" not in got[2]["b"]["message"]
    assert "frames, more than the limit" in got[3]["b"]["message"]
    usage = device.usage
    assert usage is not None and usage.refused == 0  # none of it went through
    with EchoClient.connect(address, timeout=5.0) as client:
        assert client.echo("fine") == "fine"


def test_a_caller_holds_no_more_than_its_quota_while_the_device_is_away(
    networks: Networks, sockets: list[zmq.Socket[bytes]]
) -> None:
    with Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT, limits=LIMITS).running() as bridge:
        with Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            peer = dealer(sockets, address_in(networks.b, "echo"))
            peer.send(request(0, "hello", None, {"interface": None, "protocol": 1}))
            assert replies(peer, 1)[0]["k"] == "ok"
        assert bridge.wait("echo", present=False)
        for n in range(1, 6):
            peer.send(request(n, "call", "add", {"a": n, "b": 0}, t=10.0))
        refused = replies(peer, 2)  # at once, the device being away
        assert sorted(refused) == [4, 5] and all(
            "calls of this connection" in r["b"]["message"] for r in refused.values()
        )
        usage = bridge.usage("echo")
        assert usage is not None and usage.held == 3
        with Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            answered = replies(peer, 3)
        assert {n: r["b"] for n, r in answered.items()} == {1: 1, 2: 2, 3: 3}
        usage = bridge.usage("echo")
        assert usage is not None and (usage.held, usage.in_flight) == (0, 0)


def test_a_greedy_subscriber_on_b_never_reaches_the_device(
    sockets: list[zmq.Socket[bytes]], address: str, device: Echo
) -> None:
    peer = dealer(sockets, address)
    peer.send(request(1, "hello", None, {"interface": None, "protocol": 1}))
    signals = replies(peer, 1)[1]["b"]["signals"]
    attacker = dealer(sockets, signals, zmq.XSUB)
    for _ in range(20_000):  # random topics, none the interface's
        attacker.send(b"\x01" + os.urandom(16).hex().encode())
    for _ in range(3000):  # welcomes never unsubscribed
        attacker.send(b"\x01\x01zidl-welcome:" + os.urandom(8).hex().encode())
    attacker.send(b"\x01tick\0")
    # what this test bounds is what reaches the device; the listener's welcome waits behind the attacker's 3000,
    # which a loaded machine's bridge and device take seconds to answer
    with EchoClient.connect(address, timeout=20.0) as listener:
        arrived = threading.Event()
        listener.tick.connect(lambda n, label: arrived.set())
        eventually(lambda: device.usage is not None and device.usage.subscriptions == 1)  # the bridge's one "tick"
        device.tick.emit(1, "once")
        assert arrived.wait(5.0)
        while attacker.poll(5000) and (message := attacker.recv_multipart())[0] != b"tick\0":
            pass  # the welcomes the device answered
        assert json.loads(message[1])["s"] == 1  # the attacker's own "tick", through the bridge
    attacker.close(linger=0)
    eventually(lambda: device.usage is not None and device.usage.subscriptions == 0)  # both left: nothing is held


def test_a_caller_cannot_fill_the_held_bound_with_credits_and_cancels_while_the_device_is_away(
    networks: Networks, sockets: list[zmq.Socket[bytes]]
) -> None:
    hello = request(0, "hello", None, {"interface": None, "protocol": 1})
    bridge = Bridge(networks.a, networks.b, bind=BIND, heartbeat=BRIDGE_HEARTBEAT, limits=LIMITS, max_held=10)
    with bridge.running():
        with Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            bridged = address_in(networks.b, "echo")
            greedy, polite = dealer(sockets, bridged), dealer(sockets, bridged)
            for peer in (greedy, polite):
                peer.send(hello)
                assert replies(peer, 1)[0]["k"] == "ok"
        assert bridge.wait("echo", present=False)
        for n in range(40):  # neither is a call the quota counted: no reply, held all the same
            greedy.send(request(n, "credit", None, c=1) if n % 2 else request(n, "cancel", None))
        greedy.send(request(99, "ping", None))
        assert replies(greedy, 1)[99]["k"] == "ok"  # the bridge has read all of them
        usage = bridge.usage("echo")
        assert usage is not None and usage.held <= LIMITS.max_calls_per_caller
        polite.send(request(1, "call", "add", {"a": 1, "b": 2}, t=10.0))
        with Echo().running(BIND, registry=networks.a, name="echo", heartbeat=FAST_HEARTBEAT):
            assert replies(polite, 1)[1]["b"] == 3  # held, not turned away: the greedy one took no more than its share


def test_an_unsubscription_from_a_peer_that_never_subscribed_stops_no_one_elses_signals(
    sockets: list[zmq.Socket[bytes]], address: str, device: Echo
) -> None:
    with EchoClient.connect(address, timeout=5.0) as listener:
        arrived = threading.Event()
        listener.tick.connect(lambda n, label: arrived.set())
        peer = dealer(sockets, address)
        peer.send(request(1, "hello", None, {"interface": None, "protocol": 1}))
        attacker = dealer(sockets, replies(peer, 1)[1]["b"]["signals"], zmq.XSUB)
        welcome = b"\x01\x01zidl-welcome:" + os.urandom(8).hex().encode()
        attacker.send(b"\x00tick\0")  # "tick", which it never subscribed
        attacker.send(welcome)
        assert attacker.poll(5000) and attacker.recv_multipart()[0] == welcome[1:]  # the unsubscription went first
        device.tick.emit(1, "still")
        assert arrived.wait(5.0)  # the listener's subscription held at the device


def test_a_message_from_b_that_is_not_a_subscription_never_reaches_the_devices_publisher(
    sockets: list[zmq.Socket[bytes]], address: str, caplog: pytest.LogCaptureFixture
) -> None:
    # the device's publisher cannot say whose the subscriptions read just after such a message are, and drops them:
    # through the bridge's one XSUB, those are every caller's on B's side
    peer = dealer(sockets, address)
    peer.send(request(1, "hello", None, {"interface": None, "protocol": 1}))
    attacker = dealer(sockets, replies(peer, 1)[1]["b"]["signals"], zmq.XSUB)
    with caplog.at_level(logging.WARNING, logger="runtime.server"):
        for _ in range(20):  # the device drops a welcome only when it is read in the same turn: often, not always
            welcome = b"\x01\x01zidl-welcome:" + os.urandom(8).hex().encode()
            attacker.send(b"\x05tick\0")  # neither a subscription (\x01) nor an unsubscription (\x00)
            attacker.send(welcome)
            assert attacker.poll(5000) and attacker.recv_multipart()[0] == welcome[1:]
    assert not any("subscriptions dropped" in record.getMessage() for record in caplog.records)


def test_a_welcome_longer_than_the_device_takes_is_not_forwarded_to_it(
    sockets: list[zmq.Socket[bytes]], address: str, device: Echo
) -> None:
    # the device's libzmq drops a connection that sends a longer subscription than its interface needs (MAXMSGSIZE):
    # that would be the bridge's one connection to its publisher, for every subscriber on B's side, again and again
    peer = dealer(sockets, address)
    peer.send(request(1, "hello", None, {"interface": None, "protocol": 1}))
    attacker = dealer(sockets, replies(peer, 1)[1]["b"]["signals"], zmq.XSUB)
    attacker.send(b"\x01\x01zidl-welcome:" + b"x" * 2000)
    with EchoClient.connect(address, timeout=5.0) as listener:
        arrived = threading.Event()
        listener.tick.connect(lambda n, label: arrived.set())
        device.tick.emit(1, "through")
        assert arrived.wait(5.0)
