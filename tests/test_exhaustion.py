# ruff: noqa: F811  (pytest fixtures are imported by name and used as parameters)
"""Greedy peers against a device, over real sockets: nothing they send exhausts it (issue 14, the device's share).

Each attack runs at a size that takes seconds. Every request with an id is answered
with that id; the bound is met; a legitimate client reads a property (and makes a
``concurrent`` call) every few milliseconds throughout, with a 99th percentile under
100 ms; and once the attacker leaves, the device's own records of it (``Server.usage``)
are gone.
"""

from __future__ import annotations

import json
import os
import threading
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

import pytest
import zmq
from fixtures.echo_device import Echo
from fixtures.generated.echo import EchoClient
from fixtures.raw_peers import dealer as _dealer
from fixtures.raw_peers import eventually as _eventually
from fixtures.raw_peers import replies as _replies
from fixtures.raw_peers import request as _request
from fixtures.raw_peers import sockets  # noqa: F401
from fixtures.stream_device import Streamer

from runtime import Limits, Usage
from runtime.protocol.messages import welcome_requested, welcome_topic
from runtime.server.publisher import Publisher, Subscription

PACE = 0.002
"""Seconds between two reads of the legitimate client."""
READS = 50
"""Reads the legitimate client makes, at least, while an attack runs."""
P99 = 0.1
"""The bound on their 99th percentile, on a machine that is not loaded."""
CALM_READS = 20
"""Reads timed before the attack starts: on a loaded machine the bound is ``LOADED`` times their slowest."""
LOADED = 4


class Held(Echo):
    """Echo whose ``sleep`` of a negative time (serial), and ``fast`` (concurrent) when ``hold_fast``, last until the
    test releases them: calls that keep the serial queue, or the pool, busy; ``ran`` lists the sleeps that ran, and
    ``fast_started`` counts the ``fast`` calls that started."""

    def __init__(self, hold_fast: bool = False) -> None:
        super().__init__()
        self.release = threading.Event()
        self.hold_fast = hold_fast
        self.ran: list[float] = []
        self.fast_started = threading.Semaphore(0)

    def sleep(self, seconds: float) -> float:
        self.ran.append(seconds)
        self.sleeping.set()
        if seconds < 0:
            self.release.wait(10)
        else:
            time.sleep(seconds)
        return seconds

    def fast(self) -> str:
        self.fast_started.release()
        if self.hold_fast:
            self.release.wait(10)
        return "fast"


class Reads:
    """A legitimate client that reads a property (a ``concurrent`` call every tenth time) every ``PACE`` seconds, in a
    thread of its own, timing each; ``check`` asserts none failed and their 99th percentile.

    The first ``CALM_READS`` are made before ``with`` returns, so before the attack: what the machine gives a read
    without it. An attack that stalls the device (it used to, for seconds) fails the check on any machine.
    """

    def __init__(self, address: str) -> None:
        self.client = EchoClient.connect(address, timeout=5.0)
        self.latencies: list[float] = []
        self.calm: list[float] = []
        self.failures: list[BaseException] = []
        self._stop = threading.Event()
        self._calm = threading.Event()
        self._thread = threading.Thread(target=self._run, name="legitimate-reads", daemon=True)

    def _run(self) -> None:
        n = 0
        while not self._stop.is_set():
            start = time.monotonic()
            try:
                if n % 10 == 9:
                    assert self.client.fast() == "fast"
                else:
                    self.client.mode  # noqa: B018 - a property read is a request
            except BaseException as exc:
                self.failures.append(exc)
                self._calm.set()
                return
            (self.calm if n < CALM_READS else self.latencies).append(time.monotonic() - start)
            n += 1
            if n == CALM_READS:
                self._calm.set()
            self._stop.wait(PACE)

    def __enter__(self) -> Reads:
        self._thread.start()
        assert self._calm.wait(10), "the legitimate client could not read"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)
        self.client.close()

    def enough(self) -> bool:
        return len(self.latencies) >= READS or bool(self.failures)

    def check(self) -> None:
        assert not self.failures, self.failures[0]
        assert len(self.latencies) >= READS, f"only {len(self.latencies)} reads during the attack"
        ordered = sorted(self.latencies)
        p99 = ordered[int(0.99 * (len(ordered) - 1))]
        bound = max(P99, LOADED * max(self.calm))
        assert p99 < bound, (
            f"reads took {p99 * 1000:.0f} ms at the 99th percentile (max {ordered[-1] * 1000:.0f} ms), "
            f"{max(self.calm) * 1000:.0f} ms at most before the attack"
        )


def _usage(device: Echo) -> Usage:
    usage = device.usage
    assert usage is not None
    return usage


def _attack_while_reading(reads: Reads, attack: Callable[[int], None], rounds: int = 400) -> int:
    """Run ``attack(round)`` again and again until the legitimate client has made its reads; the rounds run."""
    done = 0
    while done < rounds and not reads.enough():
        attack(done)
        done += 1
    return done


def test_messages_of_too_many_frames_are_refused_with_their_id_as_they_arrive(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    device = Echo()
    with device.running("tcp://127.0.0.1:0") as address:
        attacker = _dealer(sockets, address)
        frames = [b"x"] * 20_000  # 20 times the limit; libzmq hands them over one by one, the device keeps none

        def attack(n: int) -> None:
            attacker.send_multipart([_request(n, "call", "echo", {"value": 1}), *frames])
            reply = _replies(attacker, 1)[n]
            assert reply["k"] == "err"
            assert "20001 frames, more than the limit of 1024" in reply["b"]["message"]

        tracemalloc.start()
        try:
            attacker.send_multipart([_request(-1, "call", "echo", {"value": 1}), *[b"x"] * 200_000])
            tracemalloc.reset_peak()  # what the attacker's own list took aside
            assert _replies(attacker, 1)[-1]["k"] == "err"
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert peak < 4 << 20, f"{peak} bytes allocated at once to refuse 200,000 frames"  # a list of them: 20 MB
        with Reads(address) as reads:
            rounds = _attack_while_reading(reads, attack)
        reads.check()
        usage = _usage(device)
        assert usage.refused == rounds + 1
        assert (usage.calls, usage.callers, usage.backlog) == (0, 0, 0)


def test_a_header_over_its_limit_is_refused_unread_with_its_id_and_never_echoed(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    device = Echo()
    with device.running("tcp://127.0.0.1:0") as address:
        attacker = _dealer(sockets, address)
        before, after = _request(0, "call", "echo", {"value": "x" * (8 << 20)}).split(b'"id": 0', 1)

        def attack(n: int) -> None:  # the 8 MiB header made once: encoding it each time held this process's GIL
            attacker.send(b"".join((before, b'"id": %d' % n, after)))
            assert attacker.poll(10_000)
            head, *rest = attacker.recv_multipart()
            reply = json.loads(head)
            assert (reply["id"], reply["k"], rest) == (n, "err", [])
            assert reply["b"]["message"].startswith("header has 83886")  # 8 MiB and the rest of the header
            assert len(head) < 300

        with Reads(address) as reads:
            rounds = _attack_while_reading(reads, attack)
        reads.check()
        attacker.send(_request(1, "call", "x" * 900_000, {}))  # under the limit: parsed, refused, quoted short
        attacker.send(b'{"v": 1, "id": 2, "k": "call", "n": "echo", "b": {"value": NaN}}')  # not JSON: no NaN
        answers = _replies(attacker, 2)
        assert answers[1]["b"]["message"].startswith("Echo has no method 'xxxx")
        assert len(json.dumps(answers[1])) < 300
        assert "not JSON" in answers[2]["b"]["message"]
        assert _usage(device).refused == rounds


@pytest.mark.parametrize(
    ("limits", "body", "fits"),
    [
        (Limits(max_backlog=20), {"a": 1}, (10, 5)),  # the first takes half of 20, the second half of what is left
        (Limits(max_backlog_bytes=1 << 20), {"a": 1, "b": 2, "pad": "x" * (64 << 10)}, (8, 4)),  # of 16 that fit
    ],
    ids=["calls", "bytes"],
)
def test_the_serial_backlog_is_bounded_in_calls_and_in_bytes_and_shared_between_connections(
    sockets: list[zmq.Socket[bytes]], limits: Limits, body: dict[str, Any], fits: tuple[int, int]
) -> None:
    device = Held()
    with device.running("tcp://127.0.0.1:0", limits=limits) as address:
        try:
            attacker, other = _dealer(sockets, address), _dealer(sockets, address)
            attacker.send(_request(0, "call", "sleep", {"seconds": -1.0}))
            assert device.sleeping.wait(5)
            for peer, share in zip((attacker, other), fits, strict=True):
                for n in range(1, 101):
                    peer.send(_request(n, "call", "echo", {"value": body}))
                refused = _replies(peer, 100 - share)
                assert sorted(refused) == list(range(share + 1, 101))  # the first ones wait, the later ones are told
                assert all("full queue of calls" in reply["b"]["message"] for reply in refused.values())
            usage = _usage(device)
            assert (usage.backlog, usage.refused) == (sum(fits), 200 - sum(fits))
            assert usage.backlog_bytes <= limits.max_backlog_bytes
            with Reads(address) as reads:
                _eventually(reads.enough)
            reads.check()
            device.release.set()
            for peer, first, share in ((attacker, 0, fits[0]), (other, 1, fits[1])):
                answered = _replies(peer, share + 1 - first)
                assert sorted(answered) == list(range(first, share + 1))
                assert all(reply["k"] == "ok" for reply in answered.values())
            _eventually(lambda: (_usage(device).backlog, _usage(device).calls) == (0, 0))
            assert _usage(device).backlog_bytes == 0
        finally:
            device.release.set()


def test_calls_waiting_for_the_pool_are_bounded_and_shared_between_connections(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    device = Held(hold_fast=True)
    with device.running("tcp://127.0.0.1:0", limits=Limits(max_backlog=10)) as address:
        try:
            attacker, other = _dealer(sockets, address), _dealer(sockets, address)
            for n in range(4):  # four run in the pool
                attacker.send(_request(n, "call", "fast", {}))
            assert all(device.fast_started.acquire(timeout=5) for _ in range(4))
            for n in range(4, 50):  # five wait (half of ten), the rest are told
                attacker.send(_request(n, "call", "fast", {}))
            refused = _replies(attacker, 41)
            assert all("full queue of calls" in reply["b"]["message"] for reply in refused.values())
            for n in range(10):  # three wait (half of the five left, and one), the rest are told
                other.send(_request(n, "call", "fast", {}))
            assert sorted(_replies(other, 7)) == list(range(3, 10))
            assert (_usage(device).pool_waiting, _usage(device).refused) == (8, 48)
            device.release.set()
            assert all(reply["b"] == "fast" for reply in _replies(attacker, 9).values())
            answered = _replies(other, 3)
            assert sorted(answered) == [0, 1, 2]
            assert all(reply["b"] == "fast" for reply in answered.values())
            _eventually(lambda: (_usage(device).pool_waiting, _usage(device).calls) == (0, 0))
        finally:
            device.release.set()


def test_the_waiting_calls_of_a_caller_that_left_never_run(sockets: list[zmq.Socket[bytes]]) -> None:
    device = Held()
    with device.running("tcp://127.0.0.1:0") as address:
        try:
            attacker = _dealer(sockets, address)
            attacker.send(_request(0, "call", "sleep", {"seconds": -1.0}))
            assert device.sleeping.wait(5)
            for n in range(1, 6):
                attacker.send(_request(n, "call", "sleep", {"seconds": 0.2}))
            _eventually(lambda: _usage(device).backlog == 5)
            attacker.close(linger=0)  # it leaves, its calls waiting
            with EchoClient.connect(address) as other:  # a round trip: the device has seen the connection go
                assert other.mode.value == "idle"
            device.release.set()  # its reply finds the caller gone: the calls still waiting are dropped
            _eventually(lambda: (_usage(device).backlog, _usage(device).calls, _usage(device).callers) == (0, 0, 0))
            assert device.ran in ([-1.0], [-1.0, 0.2])  # the next may have started as the reply went
        finally:
            device.release.set()


def test_calls_in_progress_are_bounded_per_connection_and_other_connections_go_on(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    device = Held()
    with device.running("tcp://127.0.0.1:0", limits=Limits(max_calls_per_caller=10)) as address:
        try:
            attacker, other = _dealer(sockets, address), _dealer(sockets, address)
            attacker.send(_request(0, "call", "sleep", {"seconds": -1.0}))
            assert device.sleeping.wait(5)
            for n in range(1, 31):
                attacker.send(_request(n, "call", "add", {"a": n}))
            refused = _replies(attacker, 21)
            assert sorted(refused) == list(range(10, 31))
            assert all("10 calls in progress" in reply["b"]["message"] for reply in refused.values())
            other.send(_request(1, "call", "add", {"a": 1}))  # queued too: its connection has its own quota
            with Reads(address) as reads:
                _eventually(reads.enough)
            reads.check()
            usage = _usage(device)
            assert (usage.calls, usage.callers, usage.refused) == (11, 2, 21)
            device.release.set()
            assert sorted(_replies(attacker, 10)) == list(range(10))
            assert _replies(other, 1)[1]["b"] == 2
            _eventually(lambda: (_usage(device).calls, _usage(device).callers) == (0, 0))
        finally:
            device.release.set()


def test_replies_nobody_reads_are_bounded_in_bytes_shared_and_let_go_when_the_reader_leaves(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    limits = Limits(max_unread_bytes=9 << 19, max_unread_bytes_total=13 << 19)  # 4.5 and 6.5 MiB
    device = Echo()
    with device.running("tcp://127.0.0.1:0", limits=limits) as address:
        # sockets that never read: libzmq takes one reply off the network, the kernel a little more
        greedy = [_dealer(sockets, address, RCVHWM=1, RCVBUF=4096) for _ in range(2)]
        with Reads(address) as reads:
            for sock in greedy:
                for n in range(40):
                    sock.send(_request(n, "call", "blob", {"size": 1 << 20}))
            _eventually(lambda: _usage(device).dropped_replies > 0)
            _eventually(reads.enough)
        reads.check()
        _eventually(lambda: _usage(device).calls == 0)  # every call ran; what could not be queued was dropped
        usage = _usage(device)
        assert 0 < usage.unread_bytes <= limits.max_unread_bytes_total
        assert usage.dropped_replies >= 60  # of 80 replies of 1 MiB: 6.5 MiB at most unread, a few in the kernel
        reply = 1 << 20 | 1 << 10  # a blob of 1 MiB and its header
        assert usage.unread_bytes <= 5 * reply  # each held no more than was free: 3 and 2, so 1.5 MiB stay free
        for sock in greedy:
            sock.close(linger=0)  # the attacker leaves
        _eventually(lambda: _usage(device).unread_bytes == 0)


def test_only_a_signal_topic_is_ever_applied_however_many_topics_a_subscriber_sends(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    device = Echo()
    with device.running("tcp://127.0.0.1:0") as address:
        hello = _dealer(sockets, address)
        hello.send(_request(1, "hello", None, {"interface": None, "protocol": 1}))
        signals = _replies(hello, 1)[1]["b"]["signals"]
        attacker: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.XSUB)  # sends what it likes, all of it
        attacker.setsockopt(zmq.LINGER, 0)
        attacker.setsockopt(zmq.SNDHWM, 0)
        sockets.append(attacker)
        attacker.connect(signals)
        own = b"\x01zidl-welcome:" + os.urandom(8).hex().encode()
        with Reads(address) as reads:
            attacker.send_multipart([b"\x01", b"\x01tick\0", b"\x01\x01zidl-welcome:"])  # everything, a signal
            for _ in range(100_000):  # 3.3 MB of random topics, none the interface's
                attacker.send(b"\x01" + os.urandom(16).hex().encode())
            attacker.send(b"\x01" + own)  # answered once every subscription before it was read
            while attacker.poll(10_000) and attacker.recv_multipart()[0] != own:
                pass  # the welcome it asked for with the bare prefix
            _eventually(reads.enough)
        reads.check()
        assert _usage(device).subscriptions == 1  # the attacker's "tick"
        got: list[tuple[int, str]] = []
        arrived = threading.Event()

        def on_tick(n: int, label: str) -> None:
            got.append((n, label))
            if len(got) == 5:
                arrived.set()

        with EchoClient.connect(address) as listener:
            listener.tick.connect(on_tick)
            assert _usage(device).subscriptions == 2
            for n in range(5):
                device.tick.emit(n, "each once")
            assert arrived.wait(5)
            listener.add(1)  # a round trip, after which no emission is in flight
            assert got == [(n, "each once") for n in range(5)]
            seen = [json.loads(attacker.recv_multipart()[1])["s"] for _ in range(5)]
            assert seen == [1, 2, 3, 4, 5] and not attacker.poll(100)  # once each: "" and the prefix not applied
            attacker.close(linger=0)  # the attacker leaves
            _eventually(lambda: _usage(device).subscriptions == 1)
        _eventually(lambda: _usage(device).subscriptions == 0)


class ScriptedPublisherSocket:
    """What a ``Publisher`` reads, batch by batch (each ends as an empty queue does, with ``zmq.Again``), and the
    subscriptions it applies."""

    def __init__(self, *batches: list[bytes]) -> None:
        self.batches = [list(batch) for batch in batches]
        self.applied: list[tuple[int, bytes]] = []

    def recv(self, flags: int = 0) -> bytes:
        if self.batches and self.batches[0]:
            return self.batches[0].pop(0)
        if self.batches:
            self.batches.pop(0)
        raise zmq.Again()

    def setsockopt(self, option: int, value: bytes) -> None:
        self.applied.append((option, value))


def test_subscriptions_read_after_a_message_that_is_not_one_are_dropped_not_given_to_another_subscriber() -> None:
    # libzmq queues an XSUB's plain message with no subscriber of its own, so until the queue is read empty each
    # later subscription would apply to the subscriber of the one after it (shown against libzmq 4.3.5)
    tick = b"tick\0"

    def judge(message: bytes) -> Subscription | None:
        token = welcome_requested(message)
        if token is not None:
            return Subscription(token, True, [token, b"welcome"])
        return Subscription(tick, message[:1] == b"\x01") if message[1:] == tick else None

    welcome = b"\x01" + welcome_topic()
    sock = ScriptedPublisherSocket(
        [b"\x01" + tick, b"\x05not a subscription", b"\x01" + tick, welcome, b"\x00" + tick],
        [b"\x01" + tick],
    )
    publisher = Publisher(sock, judge)  # type: ignore[arg-type]
    publisher.read()
    assert sock.applied == [(zmq.SUBSCRIBE, tick)]  # the first only; the welcome not answered (it would raise here)
    assert publisher.subscriptions == 0  # the unsubscription still counts (its subscriber goes on receiving)
    publisher.read()
    assert sock.applied == [(zmq.SUBSCRIBE, tick)] * 2  # the queue was read empty: in step again
    assert publisher.subscriptions == 1
    publisher.close()


def _open_stream(sock: zmq.Socket[bytes], request_id: int, name: str) -> None:
    sock.send(_request(request_id, "stream", name, {}, c=1))


def test_streams_open_at_once_are_bounded_on_the_device_and_shared_between_connections(
    sockets: list[zmq.Socket[bytes]],
) -> None:
    device = Streamer()
    limits = Limits(max_concurrent_streams=4, max_calls_per_caller=2)
    with device.running("tcp://127.0.0.1:0", limits=limits) as address:
        first, second, third = _dealer(sockets, address), _dealer(sockets, address), _dealer(sockets, address)
        for request_id in (1, 2, 3):
            _open_stream(first, request_id, "ticks")
        items = _replies(first, 3)  # two first items, one refusal: each a thread, and the connection's quota is 2
        assert (items[1]["k"], items[2]["k"], items[3]["k"]) == ("item", "item", "err")
        assert "2 calls in progress" in items[3]["b"]["message"]
        for request_id in (1, 2):
            _open_stream(second, request_id, "ticks")
        opened = _replies(second, 2)  # one of the two threads left: a connection holds no more than is free
        assert opened[1]["k"] == "item"
        assert opened[2]["k"] == "err" and "share of the device's 4 concurrent streams" in opened[2]["b"]["message"]
        for request_id in (1, 2):
            _open_stream(third, request_id, "ticks")
        opened = _replies(third, 2)  # the device's last thread, then its bound
        assert (opened[1]["k"], opened[2]["k"]) == ("item", "err")
        assert _usage(device).calls == 4
        first.close(linger=0)  # its connection drops: its two streams are cancelled, their generators closed
        _eventually(lambda: _usage(device).calls == 2)
        assert all(run.closed.wait(5.0) for run in device.runs["ticks"][:2])
        _open_stream(second, 3, "ticks")
        assert _replies(second, 1)[3]["k"] == "item"  # room again
