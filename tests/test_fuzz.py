"""Hostile input: thousands of malformed messages to a server and to the registry, over real sockets.

A device with streams also gets hostile credit and cancel messages: negative, huge and
malformed amounts, unknown ids, another client's ids, a stream's own cancel crossing it.

The registry gets every batch twice: on its request socket and on its heartbeat socket.

Messages come from a seeded ``random.Random`` (the same every run), in batches sent
from a DEALER without pauses. After every batch: every message that carries an id
got an error reply with that id, every other message that can be answered got an
answer, a valid call still works, the serving threads are alive, and nothing was
logged at ERROR with a traceback. At the end, resident memory is within a loose
bound of where it started.
"""

from __future__ import annotations

import json
import logging
import random
import string
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import psutil
import pytest
import zmq
from fixtures.echo_device import FAST_HEARTBEAT, Echo
from fixtures.generated.echo import EchoClient
from fixtures.generated.streams import StreamerClient
from fixtures.stream_device import Streamer

from runtime import Limits
from runtime.registry import Registry, RegistryClient
from runtime.transport.addresses import connectable

SEED = 20240607
BATCHES = 20
BATCH = 550  # 20 x 550 = 11,000 messages each to the server and to both of the registry's sockets
LIMITS = Limits(max_frames=64, max_bytes=1 << 20)
LEAK_BOUND = 150 * 1024 * 1024  # resident bytes the run may add: generous, it only catches a real leak
REPLY_WAIT_MS = 10_000

ERR, REPLY, NONE = "err", "reply", "none"
"""What a message must get back: an error reply with its id, some reply, or nothing (a oneway call)."""


@dataclass
class Hostile:
    frames: list[bytes]
    expect: str
    id: int | None = None  # set when the reply is matched by id


# --- JSON-ish values of every type ---------------------------------------------------------------


def _junk(rng: random.Random, depth: int = 0) -> Any:
    choice = rng.randrange(12 if depth < 3 else 8)
    if choice == 0:
        return None
    if choice == 1:
        return rng.choice([True, False])
    if choice == 2:
        return rng.choice([0, -1, 1, 2**31, -(2**63), 2**64, 10**30, rng.randrange(-1000, 1000)])
    if choice == 3:
        return rng.choice([0.5, -1e308, 1e308, float("inf"), float("-inf"), float("nan"), rng.random()])
    if choice == 4:
        return "".join(rng.choice(string.printable) for _ in range(rng.randrange(12)))
    if choice == 5:
        return rng.choice(["", "$b", "$a", "$$b", "\x00", "\udcff"[:0] + "é", "x" * 300])
    if choice == 6:
        return {"$b": rng.choice([0, 1, 2, -1, 10**12, "1", None, [1]])}
    if choice == 7:
        return {"$a": [rng.choice([1, 0, 5, "1", None]), _dtype(rng), _shape(rng)]}
    if choice in (8, 9):
        return [_junk(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["a", "b", "$x", "$$y", "value", "", "$b", "$a"]): _junk(rng, depth + 1) for _ in range(3)}


def _dtype(rng: random.Random) -> Any:
    return rng.choice(
        [
            "<u2", "|u1", "<f8", "|b1", ">i4", "<c8", "<f16",  # fine by themselves
            "|O", "O", "|V8", "<U4", "|S4", "<M8[ns]", "<m8", "[('a', '<i4')]", "<i3", "<u0", "<f999",
            "object", "float128", "", "<", "x", 3, None, ["<i4"], {"names": ["a"], "formats": ["<i4"]},
        ]
    )  # fmt: skip


def _shape(rng: random.Random) -> Any:
    return rng.choice(
        [
            [2], [4], [0], [], [1, 2, 3], [-1], [-4, -1], [2**62, 2**62], [10**30], [1] * 33, [0] * 32,
            [2.0], ["2"], [None], [True], 5, None, "2", [[2]], [2**63 - 1],
        ]
    )  # fmt: skip


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def _dump(value: Any) -> bytes:
    return json.dumps(value, allow_nan=True).encode()


def _is_strict_json(value: Any) -> bool:
    """Whether ``value`` is strict JSON: no NaN and no infinity in it."""
    try:
        json.dumps(value, allow_nan=False)
    except ValueError:
        return False
    return True


# --- the server's hostile messages -----------------------------------------------------------------

METHODS = ["echo", "add", "blob", "array", "fast", "fail", "refuse", "unsendable"]  # not sleep (it would block)
PROPERTIES = ["mode", "level", "count"]
PRIVATE = [
    "_stop", "__class__", "__dict__", "__init__", "_zidl_engine", "_zidl_lock", "_zidl_emit", "_zidl_setup",
    "set_mode", "set_level", "serve", "stop", "running", "address", "tick", "__getattr__", "sleep_", "",
]  # fmt: skip
FIELDS = ["v", "id", "k", "n", "t", "b", "x", "s"]


class ServerFuzz:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 1_000_000

    def take_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def header(self, **fields: Any) -> dict[str, Any]:
        return {"v": 1, "id": self.take_id(), **fields}

    def message(self) -> Hostile:
        makers: list[Callable[[], Hostile]] = [
            self.random_frames,
            self.not_json,
            self.truncated,
            self.nested,
            self.wrong_field_type,
            self.unknown_kind,
            self.private_name,
            self.bad_arguments,
            self.bad_array,
            self.bad_bytes_reference,
            self.wrong_frame_count,
            self.too_large,
            self.bad_oneway,
            self.huge_numbers,
            self.wrong_version,
            self.not_strict_json,
        ]
        return self.rng.choice(makers)()

    def random_frames(self) -> Hostile:
        rng = self.rng
        frames = [rng.randbytes(rng.randrange(0, 64)) for _ in range(rng.randrange(1, 5))]
        frames[0] = b"\xff" + frames[0]  # never valid UTF-8, so never a header by chance
        return Hostile(frames, REPLY)

    def not_json(self) -> Hostile:
        rng = self.rng
        text = rng.choice([b"", b"{", b"nul", b"{'v': 1}", b"\xc3\x28", b"\xed\xa0\x80", b"1", b'"x"', b"[]", b"null"])
        return Hostile([text + rng.randbytes(rng.randrange(3))], REPLY)

    def truncated(self) -> Hostile:
        full = _dump(self.header(k="call", n="add", b={"a": 1, "b": 2}))
        return Hostile([full[: self.rng.randrange(1, len(full) - 1)]], REPLY)

    def nested(self) -> Hostile:
        rng = self.rng
        shallow = rng.random() < 0.5  # parses, but deeper than a result can be sent back
        depth = rng.choice([300, 600]) if shallow else rng.choice([1500, 5000, 100_000])
        request_id = self.take_id() if shallow else None  # a header nested deeper cannot be read for its id
        where = rng.randrange(4)
        if where == 0:
            return Hostile([_nested(depth).encode()], REPLY)
        if where == 1:  # deep body of a call to echo, which would send it back
            text = f'{{"v":1,"id":{request_id},"k":"call","n":"echo","b":{{"value":{_nested(depth)}}}}}'
            return Hostile([text.encode()], REPLY, request_id)
        if where == 2:  # deep body with references switched on: the decoder walks it
            text = f'{{"v":1,"id":{request_id},"k":"call","n":"echo","x":1,"b":{{"value":{_nested(depth)}}}}}'
            return Hostile([text.encode()], REPLY, request_id)
        deep = "{" + '"a":{' * depth + "}" * depth + "}"
        text = f'{{"v":1,"id":{request_id},"k":"set","n":"mode","b":{deep}}}'
        return Hostile([text.encode()], ERR if shallow else REPLY, request_id)

    def wrong_field_type(self) -> Hostile:
        rng = self.rng
        request_id = self.take_id()
        header: dict[str, Any] = {"v": 1, "id": request_id, "k": rng.choice(["call", "get", "set", "hello"])}
        header["n"] = rng.choice(METHODS) if header["k"] == "call" else rng.choice(PROPERTIES)
        header["b"] = {"a": 1} if header["k"] == "call" else None
        field = rng.choice(FIELDS)
        header[field] = _junk(rng)
        if field == "id":
            return Hostile([_dump(header)], REPLY)
        if field == "v" and not _is_strict_json(header["v"]):
            return Hostile([_dump(header)], REPLY)  # NaN before the id: not JSON, and no id can be read in front of it
        return Hostile([_dump(header)], REPLY, request_id)

    def unknown_kind(self) -> Hostile:
        kind = self.rng.choice(["stop", "shutdown", "exit", "kill", "sig", "ok", "err", "welcome", "CALL", "", "ping"])
        header = self.header(k=kind, n=self.rng.choice(METHODS + PRIVATE))
        return Hostile([_dump(header)], ERR, header["id"])

    def private_name(self) -> Hostile:
        kind = self.rng.choice(["call", "get", "set"])
        header = self.header(k=kind, n=self.rng.choice(PRIVATE), b={} if kind == "call" else None)
        return Hostile([_dump(header)], ERR, header["id"])

    def bad_arguments(self) -> Hostile:
        rng = self.rng
        case = rng.randrange(6)
        if case == 0:
            header = self.header(k="call", n="add", b={"a": rng.choice(["x", None, [], {}, 1.5, "1e999"])})
        elif case == 1:
            header = self.header(k="call", n="add", b={"a": 1, "nope": 2})
        elif case == 2:  # not null: a call with a null body has no arguments
            header = self.header(k="call", n=rng.choice(METHODS), b=rng.choice([[1], "x", 3, True]))
        elif case == 3:
            header = self.header(k="set", n="level", b=rng.choice([11, -1, "x", 1.5, None, [], 7]))
        elif case == 4:
            header = self.header(k="set", n="mode", b=rng.choice(["nope", 1, None, {"x": 1}]))
        else:
            header = self.header(k="set", n="count", b=1)  # read-only
        return Hostile([_dump(header)], ERR, header["id"])

    def bad_array(self) -> Hostile:
        rng = self.rng
        frame = rng.randbytes(rng.choice([0, 1, 3, 8, 16, 100]))
        header = self.header(k="call", n="array", x=1, b={"value": {"$a": [1, _dtype(rng), _shape(rng)]}})
        return Hostile([_dump(header), frame], REPLY, header["id"])

    def bad_bytes_reference(self) -> Hostile:
        header = self.header(k="call", n="echo", x=1, b={"value": {"$b": self.rng.choice([0, 2, -1, 10**12, "1"])}})
        return Hostile([_dump(header), b"data"], ERR, header["id"])

    def wrong_frame_count(self) -> Hostile:
        rng = self.rng
        header = self.header(k="call", n="array", x=1, b={"value": {"$a": [2, "<u2", [2]]}})
        count = rng.choice([1, 2, 65, 200])  # frame 2 missing, or more than the 64 frames allowed
        return Hostile([_dump(header)] + [b"\0\0\0\0"] * (count - 1), ERR, header["id"])

    def too_large(self) -> Hostile:
        header = self.header(k="call", n="echo", x=1, b={"value": {"$b": 1}})
        return Hostile([_dump(header), bytes(LIMITS.max_bytes + 1)], ERR, header["id"])

    def huge_numbers(self) -> Hostile:
        rng = self.rng
        case = rng.randrange(3)
        if case == 0:  # an empty array of dimensions numpy cannot build
            shape = rng.choice([[10**30, 0], [2**62, 2**62, 0], [0, 2**64], [2**63, 0]])
            header = self.header(k="call", n="array", x=1, b={"value": {"$a": [1, "<u2", shape]}})
            return Hostile([_dump(header), b""], ERR, header["id"])
        if case == 1:  # a deadline beyond any clock: no limit
            header = self.header(k="call", n="add", t=rng.choice([10**999, 1e308, 2**64, 10**20]), b={"a": 1})
            return Hostile([_dump(header)], REPLY, header["id"])
        header = self.header(k="call", n="echo", b={"value": rng.choice([10**30, -(2**70), 2**64])})
        return Hostile([_dump(header)], REPLY, header["id"])

    def wrong_version(self) -> Hostile:
        header = {"v": self.rng.choice([0, 2, 99, "1", None, [1], {"v": 1}, -1]), "id": self.take_id(), "k": "get"}
        header["n"] = "mode"
        return Hostile([_dump(header)], ERR, header["id"])

    def not_strict_json(self) -> Hostile:
        # NaN and infinities are not JSON: refused, the id read from the header's start
        value = self.rng.choice(["NaN", "Infinity", "-Infinity", "[1, NaN]", '{"x": Infinity}'])
        kind, name = self.rng.choice([("set", "level"), ("set", "mode"), ("call", "echo"), ("call", "sleep")])
        request_id = self.take_id()
        body = f'{{"value": {value}}}' if name == "echo" else f'{{"seconds": {value}}}' if kind == "call" else value
        text = f'{{"v": 1, "id": {request_id}, "k": "{kind}", "n": "{name}", "b": {body}}}'
        return Hostile([text.encode()], ERR, request_id)

    def bad_oneway(self) -> Hostile:
        # a oneway method with bad arguments: nothing to reply to, nothing may break
        header = self.header(k="call", n="burst", b={"n": self.rng.choice(["x", None, -(10**30), [1]])})
        return Hostile([_dump(header)], NONE)


# --- the registry's hostile messages --------------------------------------------------------------

REGISTER = {"k": "register", "name": "cam", "interface": "Camera", "version": 1, "hash": "h"}


class RegistryFuzz:
    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.next_id = 1_000_000

    def message(self) -> Hostile:
        rng = self.rng
        self.next_id += 1
        request_id = self.next_id
        case = rng.randrange(15)
        if case == 0:
            return Hostile([b"\xff" + rng.randbytes(rng.randrange(40)) for _ in range(rng.randrange(1, 4))], REPLY)
        if case == 1:
            return Hostile([_nested(rng.choice([900, 5000, 60_000])).encode()], REPLY)
        if case == 2:
            full = _dump({"v": 1, "id": request_id, **REGISTER, "address": "tcp://127.0.0.1:1"})
            return Hostile([full[: rng.randrange(1, len(full) - 1)]], REPLY)
        if case == 3:
            kind = rng.choice(["stop", "shutdown", "explode", "", "added", "beat", "HEARTBEAT"])
            return Hostile([_dump({"v": 1, "id": request_id, "k": kind})], ERR, request_id)
        if case == 4:  # a register with one field of a wrong type
            message: dict[str, Any] = {"v": 1, "id": request_id, **REGISTER, "address": "tcp://127.0.0.1:1"}
            field = rng.choice(["name", "interface", "version", "hash", "address", "host", "takeover", "ttl"])
            message[field] = rng.choice([None, 1.5, [], {}, True, "a b/c", "", "x" * 2000, -1, 10**30, "http://x"])
            return Hostile([_dump(message)], REPLY, request_id)
        if case == 5:
            lease = rng.choice([None, 1, [], {}, "nope", "x" * 1000])
            kind = rng.choice(["heartbeat", "unregister"])
            return Hostile([_dump({"v": 1, "id": request_id, "k": kind, "lease": lease})], ERR, request_id)
        if case == 6:
            message = {"v": 1, "id": request_id, "k": rng.choice(["lookup", "list"])}
            message[rng.choice(["name", "interface"])] = _junk(rng)
            return Hostile([_dump(message)], REPLY, request_id)
        if case == 7:  # a wrong version is refused with the id (True and 1.0 equal 1: a listing)
            return Hostile([_dump({"v": _junk(rng), "id": request_id, "k": "list"})], REPLY, request_id)
        if case == 8:
            return Hostile([b'{"v":1,"id":%d,"k":"lookup","name":"%s"}' % (request_id, b"x" * 70_000)], REPLY)
        if case == 9:
            message = {"v": 1, "id": _junk(rng), "k": rng.choice(["ping", "info", "list"]), "extra": _junk(rng)}
            return Hostile([_dump(message)], REPLY)
        if case == 11:  # ids past 64 bits
            huge = rng.choice([10**30, -(2**63), 2**64, 10**300]) + request_id
            message = {"v": 1, "id": huge, "k": rng.choice(["ping", "info", "lookup", "list", "heartbeat"])}
            return Hostile([_dump(message)], REPLY, huge)
        if case == 12:  # numbers no field takes, written as the wire has them
            number = rng.choice([b"1e999", b"-1e999", b"NaN", b"Infinity", b"1" + b"0" * 5000, b"-0", b"4294967296"])
            field = rng.choice([b"ttl", b"heartbeat", b"version"])
            claim = _dump({"v": 1, "id": request_id, **REGISTER, "address": "tcp://127.0.0.1:1"})
            return Hostile([claim[:-1] + b',"' + field + b'":' + number + b"}"], REPLY, request_id)
        if case == 13:  # a wrong version, and the id still comes back
            v = rng.choice([2, 0, -1, "1", None, 1e300, [1], {"v": 1}, "v"])
            return Hostile([_dump({"v": v, "id": request_id, "k": "ping"})], ERR, request_id)
        if case == 14:  # a would-be thief: takeover, a forged lease, a lease of its own length
            message = {"v": 1, "id": request_id, **REGISTER, "address": f"tcp://127.0.0.1:{rng.randrange(1, 60)}"}
            message[rng.choice(["takeover", "lease", "ttl"])] = rng.choice([True, "forged" * 4, 86400])
            return Hostile([_dump(message)], REPLY, request_id)
        # a valid register for a name that is probably held: the registry pings the holders, which never answer
        address = f"tcp://127.0.0.1:{rng.randrange(1, 60)}"
        name = rng.choice(["cam", "cam-1", "cam-2"])
        message = {"v": 1, "id": request_id, **REGISTER, "name": name, "address": address}
        return Hostile([_dump(message)], REPLY, request_id)


# --- the harness ------------------------------------------------------------------------------------


class Escapes(logging.Handler):
    """What escaped: records logged at ERROR with a traceback, and exceptions that ended a thread."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.problems: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info:
            self.problems.append(f"logged: {record.getMessage()}: {record.exc_info[1]!r}")

    def thread_died(self, args: threading.ExceptHookArgs) -> None:
        self.problems.append(f"thread {args.thread.name if args.thread else '?'} died: {args.exc_value!r}")


@pytest.fixture
def escapes() -> Iterator[Escapes]:
    handler = Escapes()
    root = logging.getLogger("runtime")
    root.addHandler(handler)
    previous, threading.excepthook = threading.excepthook, handler.thread_died
    try:
        yield handler
    finally:
        threading.excepthook = previous
        root.removeHandler(handler)


def _dealer(address: str) -> zmq.Socket[bytes]:
    sock: zmq.Socket[bytes] = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, 0)
    sock.setsockopt(zmq.RCVHWM, 0)
    sock.connect(address)
    return sock


def _send_batch(sock: zmq.Socket[bytes], batch: list[Hostile], reply_id: Callable[[bytes], tuple[Any, bool]]) -> None:
    """Send ``batch``, then read replies until every message that must be answered is."""
    for message in batch:
        sock.send_multipart(message.frames)
    wanted = {m.id: m for m in batch if m.id is not None and m.expect != NONE}
    anonymous = sum(1 for m in batch if m.id is None and m.expect != NONE)
    while wanted or anonymous > 0:
        assert sock.poll(REPLY_WAIT_MS), f"no reply: {len(wanted)} by id and {anonymous} others outstanding"
        request_id, is_error = reply_id(sock.recv_multipart()[0])
        message = wanted.pop(request_id, None) if isinstance(request_id, int) else None
        if message is None:
            anonymous -= 1
            continue
        assert is_error or message.expect == REPLY, f"not an error reply to {message.frames[0][:200]!r}"


def _server_reply(frame: bytes) -> tuple[Any, bool]:
    header = json.loads(frame)
    assert header["k"] in ("ok", "err")
    return header.get("id"), header["k"] == "err"


def _strict(constant: str) -> Any:
    raise AssertionError(f"the registry sent {constant}: not JSON")


def _registry_reply(frame: bytes) -> tuple[Any, bool]:
    reply = json.loads(frame, parse_constant=_strict)  # strict JSON: no NaN or Infinity
    assert isinstance(reply["ok"], bool)
    return reply.get("id"), reply["ok"] is False


def test_server_survives_ten_thousand_hostile_messages(escapes: Escapes) -> None:
    process = psutil.Process()
    rng = random.Random(SEED)
    fuzz = ServerFuzz(rng)
    echo = Echo()
    with echo.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT, limits=LIMITS) as address:
        hostile = _dealer(address)
        client = EchoClient.connect(address, heartbeat=FAST_HEARTBEAT)
        try:
            assert client.add(1) == 2
            before = process.memory_info().rss
            for batch_number in range(BATCHES):
                _send_batch(hostile, [fuzz.message() for _ in range(BATCH)], _server_reply)
                assert client.add(batch_number) == batch_number + 1, "a valid call failed after a batch"
                assert client.mode == echo.mode, "a property read failed after a batch"
                assert not escapes.problems, escapes.problems[:3]
            grown = process.memory_info().rss - before
            assert grown < LEAK_BOUND, f"resident memory grew by {grown / 2**20:.0f} MiB"
        finally:
            client.close()
            hostile.close(linger=0)


def test_registry_survives_ten_thousand_hostile_messages(escapes: Escapes) -> None:
    process = psutil.Process()
    rng = random.Random(SEED)
    fuzz = RegistryFuzz(rng)
    registry = Registry(ttl=1.0, probe_timeout=0.2)
    with registry.running("tcp://127.0.0.1:0") as address, RegistryClient(address, timeout=5.0) as good:
        hostile = _dealer(address)
        hostile_beats = _dealer(connectable(good.request("info")["heartbeats"]))
        try:
            good.request("register", **REGISTER, address="tcp://127.0.0.1:9")
            before = process.memory_info().rss
            for _ in range(BATCHES):
                batch = [fuzz.message() for _ in range(BATCH)]
                _send_batch(hostile, batch, _registry_reply)
                _send_batch(hostile_beats, batch, _registry_reply)  # there, all but a heartbeat are refused
                assert good.request("ping")["ok"] is True, "a valid request failed after a batch"
                assert "devices" in good.request("list"), "a listing failed after a batch"
                assert not escapes.problems, escapes.problems[:3]
            grown = process.memory_info().rss - before
            assert grown < LEAK_BOUND, f"resident memory grew by {grown / 2**20:.0f} MiB"
        finally:
            hostile.close(linger=0)
            hostile_beats.close(linger=0)


# --- hostile credit and cancel messages, to a device with streams ------------------------------------

CREDITS = [0, -1, -(2**63), 10**30, 2**64, 1.5, "8", None, True, [], {}, float("inf")]


def _stream_chaos(rng: random.Random, next_id: Callable[[], int]) -> tuple[list[list[bytes]], set[int], set[int]]:
    """A batch of hostile messages: the frames, the ids that must get an error, the ids that must end (any reply)."""
    frames: list[list[bytes]] = []
    errors: set[int] = set()
    ends: set[int] = set()
    for _ in range(200):
        case = rng.randrange(7)
        if case == 0:  # a cancel of something it never sent, or of another client's ids (1, 2, 3...)
            frames.append([_dump({"v": 1, "id": rng.choice([_junk(rng), rng.randrange(1, 50)]), "k": "cancel"})])
        elif case == 1:  # credit for nothing, or of every hostile amount
            message = {"v": 1, "id": rng.choice([_junk(rng), rng.randrange(1, 50)]), "k": "credit"}
            message["c"] = rng.choice([*CREDITS, _junk(rng)])
            frames.append([_dump(message)])
        elif case == 2:  # a stream opened with a hostile first credit
            request_id = next_id()
            credits = rng.choice(CREDITS)
            message = {"v": 1, "id": request_id, "k": "stream", "n": "count", "c": credits, "b": {"n": 3}}
            frames.append([_dump(message)])
            (ends if type(credits) is int and credits > 0 else errors).add(request_id)
        elif case == 3:  # a stream with huge credit (capped by the device), then its cancel, then more credit
            request_id = next_id()
            frames.append([_dump({"v": 1, "id": request_id, "k": "stream", "n": "ticks", "c": 10**9, "b": {}})])
            frames.append([_dump({"v": 1, "id": request_id, "k": "cancel"})])
            frames.append([_dump({"v": 1, "id": request_id, "k": "credit", "c": 10**9})])
            ends.add(request_id)
        elif case == 4:  # a call, cancelled at once: its one reply is its result or the word that it was cancelled
            request_id = next_id()
            frames.append([_dump({"v": 1, "id": request_id, "k": "call", "n": "echo", "b": {"value": 1}})])
            frames.append([_dump({"v": 1, "id": request_id, "k": "cancel"})])
            ends.add(request_id)
        elif case == 5:  # a stream request that names a plain method, or a call that names a stream
            request_id = next_id()
            kind, name = rng.choice([("stream", "echo"), ("call", "ticks"), ("stream", "nope"), ("stream", None)])
            frames.append([_dump({"v": 1, "id": request_id, "k": kind, "n": name, "c": 8, "b": {"value": 1}})])
            errors.add(request_id)
        else:  # cancel and credit with a body, a name, an id nested deep
            message = {"v": 1, "id": [[[1]]], "k": rng.choice(["cancel", "credit"]), "n": "ticks", "b": _junk(rng)}
            frames.append([_dump(message)])
    return frames, errors, ends


def test_hostile_credit_and_cancel_messages_never_break_a_device(escapes: Escapes) -> None:
    rng = random.Random(SEED)
    ids = iter(range(1_000_000, 2_000_000))
    streamer = Streamer()
    with streamer.running("tcp://127.0.0.1:0", heartbeat=FAST_HEARTBEAT, limits=LIMITS) as address:
        hostile = _dealer(address)
        try:
            with StreamerClient.connect(address, heartbeat=FAST_HEARTBEAT) as good:
                for _ in range(5):
                    frames, errors, ends = _stream_chaos(rng, lambda: next(ids))
                    with good.ticks() as ticks:  # a stream of the good client goes on throughout
                        assert next(ticks) == 0
                        for message in frames:
                            hostile.send_multipart(message)
                        while errors or ends:
                            assert hostile.poll(REPLY_WAIT_MS), f"{len(errors)} errors, {len(ends)} ends outstanding"
                            header = json.loads(hostile.recv_multipart()[0])
                            if header["k"] == "item":
                                continue
                            assert header["id"] not in errors or header["k"] == "err"
                            errors.discard(header["id"])
                            ends.discard(header["id"])
                        assert [next(ticks) for _ in range(20)] == list(range(1, 21))
                    assert list(good.count(50)) == list(range(50))
                    assert not escapes.problems, escapes.problems[:3]
        finally:
            hostile.close(linger=0)
