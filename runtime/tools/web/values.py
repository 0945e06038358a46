"""What the web view sends for a device's values: JSON for everything but a top-level ``bytes`` value.

A result, item, property value or signal argument comes from the dynamic client as
Python values (enum members, models, tuples, ``bytes``, ``ndarray``). In JSON an enum
is its value and a model an object; ``bytes`` inside a larger value are a
``data:`` URL (which a page shows as an image when it is one); an ``ndarray`` is an
object with its ``dtype``, ``shape`` and C-order bytes in base64, from which a page
draws an HxW or HxWx3 ``uint8`` array. JSON has no NaN nor infinity: they are ``null``.
"""

from __future__ import annotations

import base64
import enum
import math
from typing import Any

import numpy as np
from pydantic import BaseModel

_MAGIC = (
    (b"\xff\xd8\xff", "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", "image/png"),
    (b"GIF87a", "image/gif"),
    (b"GIF89a", "image/gif"),
    (b"BM", "image/bmp"),
)


def media_type(data: bytes) -> str:
    """The media type of ``data``, from its first bytes: an image's, else ``application/octet-stream``."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((kind for magic, kind in _MAGIC if data.startswith(magic)), "application/octet-stream")


def data_url(data: bytes) -> str:
    return f"data:{media_type(data)};base64,{base64.b64encode(data).decode()}"


def to_json(value: Any) -> Any:
    """``value`` as JSON-ready Python: dicts, lists, strings, numbers, booleans and None."""
    if isinstance(value, BaseModel):
        return {name: to_json(getattr(value, name)) for name in type(value).model_fields}
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, bytes | bytearray | memoryview):
        return data_url(bytes(value))
    if isinstance(value, np.ndarray):
        contiguous = np.ascontiguousarray(value)
        return {
            "dtype": str(contiguous.dtype),
            "shape": list(contiguous.shape),
            "base64": base64.b64encode(contiguous.data).decode(),
        }
    if isinstance(value, np.generic):
        return to_json(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {str(key): to_json(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [to_json(item) for item in value]
    return value
