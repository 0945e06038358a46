"""A synthetic plant on a turntable, rendered with numpy for the dummy camera.

The scene is a pot with a stem and a ring of leaves; the camera looks at it from
the stage's position, so the view turns as the stage goes round. Each image is a
pure function of (position, camera name, size): the same inputs give the same
pixels, and any two positions give different images.
"""

from __future__ import annotations

import math
import zlib

import numpy as np
import numpy.typing as npt

Image = npt.NDArray[np.uint8]

_LEAVES = 9
_GOLDEN_ANGLE = math.pi * (3 - math.sqrt(5))


def render(width: int, height: int, x: float, y: float, z: float, camera: str = "") -> Image:
    """An RGB image (height x width x 3, uint8) of the plant seen from stage position (x, y, z)."""
    view = math.atan2(y, x) + (zlib.crc32(camera.encode()) % 360) * math.pi / 180
    rows = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None]
    cols = np.linspace(-0.5 * width / height, 0.5 * width / height, width, dtype=np.float32)[None, :]

    sky = np.stack([0.55 + 0.25 * rows[:, 0], 0.62 + 0.18 * rows[:, 0], 0.75 - 0.20 * rows[:, 0]], axis=-1)
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[...] = (sky * 255).astype(np.uint8)[:, None, :]
    image[int(0.82 * height) :] = _rgb((0.45, 0.36, 0.28))

    def region(col0: float, col1: float, row0: float, row1: float) -> tuple[slice, slice]:
        """The pixels of a box given in scene units, so each shape is computed only where it can be."""
        c0, c1 = np.searchsorted(cols[0], [col0, col1])
        r0, r1 = np.searchsorted(rows[:, 0], [row0, row1])
        return slice(int(r0), int(r1)), slice(int(c0), int(c1))

    box = region(-0.2, 0.2, 0.70, 0.92)
    r, c = rows[box[0]], cols[:, box[1]]
    _paint(image[box], (np.abs(c) < 0.16 - 0.05 * (r - 0.70) / 0.2) & (r > 0.70), (0.62, 0.30, 0.18))

    growth = 0.45 + 0.1 * math.tanh(z / 50.0)
    box = region(-0.05, 0.05, 0.70 - growth, 0.72)
    r, c = rows[box[0]], cols[:, box[1]]
    _paint(image[box], np.abs(c - 0.01 * np.sin(r * 12 + view)) < 0.012, (0.20, 0.45, 0.15))

    for leaf in range(_LEAVES):
        angle = leaf * _GOLDEN_ANGLE + view
        depth = math.cos(angle)
        length = 0.10 + 0.012 * leaf
        base_row = 0.70 - growth * (leaf + 1) / (_LEAVES + 1)
        tip_col = math.sin(angle) * length * 1.6
        centre_col, centre_row = tip_col / 2, base_row - 0.02
        half = max(abs(tip_col) / 2, 0.02)
        box = region(
            centre_col - half - 0.05, centre_col + half + 0.05, centre_row - half - 0.05, centre_row + half + 0.05
        )
        r, c = rows[box[0]], cols[:, box[1]]
        along = (c - centre_col) * math.cos(0.3) + (r - centre_row) * math.sin(0.3)
        across = -(c - centre_col) * math.sin(0.3) + (r - centre_row) * math.cos(0.3)
        mask = (along / half) ** 2 + (across / (0.025 + 0.01 * abs(depth))) ** 2 < 1.0
        shade = 0.55 + 0.35 * (depth + 1) / 2
        _paint(image[box], mask, (0.15 * shade, 0.65 * shade, 0.20 * shade))

    return image


def _rgb(colour: tuple[float, float, float]) -> tuple[int, int, int]:
    red, green, blue = (round(255 * channel) for channel in colour)
    return red, green, blue


def _paint(image: Image, mask: npt.NDArray[np.bool_], colour: tuple[float, float, float]) -> None:
    image[mask] = _rgb(colour)
