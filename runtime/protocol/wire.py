"""The wire format: one JSON header frame, then one frame per ``bytes`` or ``ndarray`` value.

``encode`` walks a value (enums become their value, pydantic models dicts of their
fields, tuples lists), puts it in the header under ``"b"`` and moves every binary
value to a frame of its own, leaving a reference in its place:

* ``{"$b": i}``                      bytes in frame ``i`` (1-based, after the header)
* ``{"$a": [i, dtype, shape]}``      an ndarray over frame ``i``

A user dict key that starts with ``$`` is written with one more ``$`` so it can
never be taken for a reference. ``decode`` checks the limits, parses the header,
and puts the values back: ``bytes`` with one copy, arrays over the received frame
with none (so they are read-only). The full format is in ``docs/protocol.md``.
"""

from __future__ import annotations

import enum
import json
import math
import re
from collections.abc import Callable, Sequence
from typing import Any, Final

import numpy as np
import zmq
from pydantic import BaseModel
from pydantic_core import from_json, to_json

from runtime.errors import ProtocolError
from runtime.protocol.limits import DEFAULT_LIMITS as DEFAULT_LIMITS
from runtime.protocol.limits import Limits as Limits
from runtime.protocol.limits import quote
from runtime.protocol.names import BODY, ID, MARKED, VERSION, V
from runtime.schema.ndarray import check_dtype
from runtime.schema.validation import Shape

_BYTES: Final = "$b"
_ARRAY: Final = "$a"
_DTYPE = re.compile(r"[<>|=]?[?biufc][0-9]{0,2}")
_MAX_DIMS: Final = 32
_SCALARS = (str, int, float, bool, type(None))
_NOT_JSON: Final = "NaN and infinities cannot travel: JSON has no such numbers"

Frame = bytes | memoryview | zmq.Frame
Writer = Callable[[dict[str, Any], Any], list[Any]]
"""How a message is written: ``encode``, or ``encode_plain`` or ``encode_binary`` where the declared type allows."""


class _Encoder:
    __slots__ = ("frames", "marked")

    def __init__(self) -> None:
        self.frames: list[Any] = []
        self.marked = False

    def walk(self, value: Any) -> Any:
        kind = type(value)
        if kind in _SCALARS:
            if kind is float and value - value != 0.0:  # NaN or an infinity: no JSON number
                raise ValueError(_NOT_JSON)
            return value
        if kind is dict:
            return {self.key(key): self.walk(item) for key, item in value.items()}
        if kind is list:
            return [self.walk(item) for item in value]
        if kind is bytes:
            return self.binary(value)
        if kind is np.ndarray:
            return self.array(value)
        if isinstance(value, enum.Enum):
            return self.walk(value.value)
        if isinstance(value, BaseModel):
            return {self.key(name): self.walk(getattr(value, name)) for name in type(value).model_fields}
        if isinstance(value, dict):
            return {self.key(key): self.walk(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [self.walk(item) for item in value]
        if isinstance(value, bytes | bytearray | memoryview):
            return self.binary(value)
        if isinstance(value, np.ndarray):
            return self.array(value)
        if isinstance(value, np.generic):
            return self.walk(value.item())
        if isinstance(value, str | int | float):  # subclasses of the scalars
            if isinstance(value, float) and value - value != 0.0:
                raise ValueError(_NOT_JSON)
            return value
        raise TypeError(f"a value of type {kind.__name__} cannot be sent")

    def binary(self, value: bytes | bytearray | memoryview) -> Any:
        self.frames.append(value)
        self.marked = True
        return {_BYTES: len(self.frames)}

    def key(self, key: Any) -> str:
        if not isinstance(key, str):
            raise TypeError(f"dict keys must be strings to be sent, not {type(key).__name__}")
        if key.startswith("$"):
            self.marked = True
            return "$" + key
        return key

    def array(self, array: np.ndarray[Any, Any]) -> Any:
        try:
            check_dtype(array.dtype)
        except ValueError as exc:
            raise TypeError(str(exc)) from None
        shape = list(array.shape)
        if not array.flags.c_contiguous:
            array = np.ascontiguousarray(array)
        data: Any = array.reshape(-1).view(np.uint8) if array.size else b""
        self.frames.append(data)
        self.marked = True
        return {_ARRAY: [len(self.frames), array.dtype.str, shape]}


NO_BODY: Final = object()


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON: {_NOT_JSON}")


_dumps = json.JSONEncoder(separators=(",", ":"), allow_nan=False).encode
_loads = json.JSONDecoder(parse_constant=_no_constant).decode


def dump_json(value: Any) -> bytes:
    """``value`` as UTF-8 JSON: plain JSON types only, and only finite floats.

    pydantic-core writes it; what it refuses (nesting deeper than it goes, a string
    with a lone surrogate) goes to ``json``, which sends it as before. pydantic-core
    cannot refuse NaN and the infinities, so its callers see to them: ``encode`` checks
    every float as it walks a value, and what ``encode_plain`` writes was validated
    against a declared type, whose floats are finite (``runtime.schema.validation``).
    """
    try:
        return to_json(value, inf_nan_mode="constants")
    except ValueError:
        return _dumps(value).encode()


def _load_json(raw: bytes) -> Any:
    """The JSON value in ``raw``; raises what ``json`` raises on a bad one, and refuses NaN and infinities.

    pydantic-core parses it; what it refuses (bad JSON, but also nesting deeper than
    200 or a lone surrogate escape, which ``json`` takes) is handed to ``json``, whose
    verdict and message stand, so both sides accept exactly what they did.
    """
    try:
        return from_json(raw, cache_strings=False, allow_inf_nan=False)
    except ValueError:
        return _loads(raw.decode())


def encode(header: dict[str, Any], body: Any = NO_BODY) -> list[Any]:
    """The frames of a message: ``header`` as JSON (with ``body`` under ``"b"``), then the binary values.

    Raises ``TypeError`` when ``body`` holds a value that cannot travel.
    """
    if body is NO_BODY:
        return [dump_json(header)]
    encoder = _Encoder()
    try:
        header[BODY] = encoder.walk(body)
        if encoder.marked:
            header[MARKED] = 1
        head = dump_json(header)
    except ValueError as exc:  # circular references, NaN or an infinity
        raise TypeError(str(exc)) from None
    except RecursionError:  # a value nested deeper than the stack allows (a hostile echo, say)
        raise TypeError("the value is nested too deeply to send") from None
    return [head, *encoder.frames]


def encode_plain(header: dict[str, Any], body: Any) -> list[Any]:
    """``encode`` for a body known, from its declared and validated type, to hold only JSON's own types (and
    finite floats).

    Such a body needs no walk: it is written as it is, in one pass in pydantic-core,
    unless a key starting with ``$`` (which must be escaped) may be in it, which
    the written text shows; then, like anything ``dump_json`` refuses, it takes ``encode``.
    """
    header[BODY] = body
    try:
        head = dump_json(header)
    except (ValueError, RecursionError):
        return encode(header, body)
    if b'"$' in head:
        return encode(header, body)
    return [head]


def encode_binary(header: dict[str, Any], body: bytes | np.ndarray[Any, Any]) -> list[Any]:
    """``encode`` for a body declared as one ``bytes`` or ``ndarray`` value (an image, say): no walk."""
    encoder = _Encoder()
    header[BODY] = encoder.array(body) if isinstance(body, np.ndarray) else encoder.binary(body)
    header[MARKED] = 1
    return [dump_json(header), *encoder.frames]


WRITERS: Final[dict[Shape, Writer]] = {"plain": encode_plain, "binary": encode_binary, "any": encode}
"""How a body of each shape is written."""


def check_limits(frames: Sequence[Frame], limits: Limits) -> int:
    """The bytes of a message; raises ``ProtocolError`` when it has too many frames or bytes, or too large a header."""
    if len(frames) > limits.max_frames:
        raise ProtocolError(f"message has {len(frames)} frames, more than the limit of {limits.max_frames}")
    total = len(frames[0]) if len(frames) == 1 else sum(map(len, frames))
    if total > limits.max_bytes:
        raise ProtocolError(f"message has {total} bytes, more than the limit of {limits.max_bytes}")
    if frames and len(frames[0]) > limits.max_header_bytes:
        raise ProtocolError(too_large_header(len(frames[0]), limits))
    return total


def too_large_header(size: int, limits: Limits) -> str:
    """Why a header of ``size`` bytes is refused unread."""
    return f"header has {size} bytes, more than the limit of {limits.max_header_bytes} (send large values as bytes)"


_SALVAGE_BYTES: Final = 64 * 1024
_ID_PREFIX: Final = re.compile(
    rf'\{{\s*"{V}"\s*:\s*{VERSION}\s*,\s*"{ID}"\s*:\s*(-?[0-9]{{1,19}}|"[^"\\]{{0,128}}")\s*[,}}]'.encode()
)
"""A header's opening as every zidl sender writes it, version then id: where the id of a header too large or
too broken to parse is found."""


def request_id_of(frame: Frame) -> Any:
    """The ``id`` in the header of a message refused before its header was read (too large, too many frames).

    Answering with the id lets the caller fail at once instead of waiting for its timeout.
    A small header is parsed; a large or unreadable one gives the id at its start, if
    it opens as zidl's own headers do; else None.
    """
    if len(frame) <= _SALVAGE_BYTES:
        try:
            return read_header(frame).get(ID)
        except ProtocolError:
            pass
    start = bytes(frame.buffer[:256] if isinstance(frame, zmq.Frame) else frame[:256])
    found = _ID_PREFIX.match(start)
    return None if found is None else json.loads(found.group(1))


def read_header(frame: Frame) -> dict[str, Any]:
    """Parse the header frame into a JSON object, its version not yet checked; raises ``ProtocolError``."""
    raw = frame if type(frame) is bytes else frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)
    try:
        header = _load_json(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(f"header is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("header is nested too deeply") from None
    if not isinstance(header, dict):
        raise ProtocolError("header is not a JSON object")
    return header


def check_version(header: dict[str, Any]) -> None:
    """Raise ``ProtocolError`` unless the header speaks this protocol's version."""
    if header.get(V) != VERSION:
        raise ProtocolError(f"protocol version {quote(header.get(V))} is not supported (this side speaks {VERSION})")


def decode_header(frame: Frame) -> dict[str, Any]:
    """Parse and check the header frame (protocol version, request id)."""
    header = read_header(frame)
    check_version(header)
    return header


def decode_body(header: dict[str, Any], frames: Sequence[Frame]) -> Any:
    """The body of a message whose header is decoded, with binary values rebuilt from ``frames[1:]``."""
    body = header.get(BODY)
    if header.get(MARKED):
        try:
            return _Decoder(frames).walk(body)
        except RecursionError:
            raise ProtocolError("body is nested too deeply") from None
    return body


def decode(frames: Sequence[Frame], limits: Limits = DEFAULT_LIMITS) -> tuple[dict[str, Any], Any]:
    """Check limits, parse the header and rebuild the body; raises ``ProtocolError`` on a bad message."""
    if not frames:
        raise ProtocolError("empty message")
    size = len(frames[0])
    if len(frames) > 1 or size > limits.max_header_bytes or size > limits.max_bytes:  # else nothing to check
        check_limits(frames, limits)
    header = decode_header(frames[0])
    return header, decode_body(header, frames)


class _Decoder:
    __slots__ = ("frames",)

    def __init__(self, frames: Sequence[Frame]) -> None:
        self.frames = frames

    def frame(self, index: Any) -> Frame:
        if type(index) is not int or not 1 <= index < len(self.frames):
            raise ProtocolError(
                f"reference to frame {quote(index)}, but the message has {len(self.frames) - 1} data frames"
            )
        return self.frames[index]

    def walk(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.walk(item) for item in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            if _BYTES in value:
                frame = self.frame(value[_BYTES])
                return frame.bytes if isinstance(frame, zmq.Frame) else bytes(frame)
            if _ARRAY in value:
                return self.array(value[_ARRAY])
        out = {}
        for key, item in value.items():
            if key.startswith("$"):
                if not key.startswith("$$"):
                    raise ProtocolError(f"unexpected key {quote(key)}")
                key = key[1:]
            out[key] = self.walk(item)
        return out

    def array(self, ref: Any) -> np.ndarray[Any, Any]:
        if not (isinstance(ref, list) and len(ref) == 3 and isinstance(ref[1], str) and isinstance(ref[2], list)):
            raise ProtocolError(f"malformed array reference {quote(ref)}")
        index, dtype_text, shape = ref
        if not _DTYPE.fullmatch(dtype_text):
            raise ProtocolError(f"dtype {quote(dtype_text)} cannot travel: only numeric and bool dtypes can")
        try:
            dtype = np.dtype(dtype_text)
            check_dtype(dtype)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"bad dtype {quote(dtype_text)}: {exc}") from None
        if len(shape) > _MAX_DIMS or not all(type(n) is int and n >= 0 for n in shape):
            raise ProtocolError(f"bad array shape {quote(shape)}")
        frame = self.frame(index)
        buffer: Any = frame.buffer if isinstance(frame, zmq.Frame) else frame
        expected = dtype.itemsize * math.prod(shape)
        if len(buffer) != expected:
            shown = f"{dtype_text} {quote(shape)}"
            raise ProtocolError(f"array frame has {len(buffer)} bytes, but {shown} needs {expected}")
        try:
            return np.frombuffer(buffer, dtype=dtype).reshape(shape)
        except (ValueError, OverflowError):  # an empty array of dimensions numpy cannot index: [10**30, 0]
            raise ProtocolError(f"array shape {quote(shape)} is larger than numpy allows") from None
