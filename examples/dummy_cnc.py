"""A dummy three-axis stage: moves take time in proportion to distance and report along the way.

A move whose caller cancels it (or goes away) stops where the stage is.

python examples/dummy_cnc.py --name stage --registry tcp://127.0.0.1:5555
"""

from __future__ import annotations

import logging
import math
import threading
import time

from device_options import device_parser, serving
from zidl_devices.cnc import CncServer, OutOfReach, Position

from runtime import current_call

log = logging.getLogger("dummy_cnc")

REACH_MM = 180.0
"""How far from the centre the carriage can go, in the x-y plane."""


class DummyCnc(CncServer):
    def __init__(self, *, speed: float = 400.0, report_hz: float = 20.0) -> None:
        super().__init__()
        self.speed = speed
        self.report_interval = 1.0 / report_hz
        self._position = Position(x=0.0, y=0.0, z=0.0)
        self._lock = threading.Lock()

    def home(self) -> None:
        self._travel(0.0, 0.0, 0.0)

    def get_position(self) -> Position:
        with self._lock:
            return self._position.model_copy()

    def moveto(self, x: float, y: float, z: float = 0.0) -> None:
        radius = math.hypot(x, y)
        if radius > REACH_MM:
            raise OutOfReach(
                f"({x}, {y}) is {radius:.1f} mm from the centre; the stage reaches {REACH_MM} mm",
                axis="xy",
                value=radius,
                low=0.0,
                high=REACH_MM,
            )
        self._travel(x, y, z)

    def _travel(self, x: float, y: float, z: float) -> None:
        start = self.get_position()
        distance = math.dist((start.x, start.y, start.z), (x, y, z))
        duration = distance / self.speed
        began = time.monotonic()
        call = current_call()
        while (elapsed := time.monotonic() - began) < duration:
            fraction = elapsed / duration
            here = (
                start.x + (x - start.x) * fraction,
                start.y + (y - start.y) * fraction,
                start.z + (z - start.z) * fraction,
            )
            self._arrive(*here)
            if call.cancelled:
                log.info("move to (%.1f, %.1f, %.1f) cancelled: stopped at (%.1f, %.1f, %.1f)", x, y, z, *here)
                return
            time.sleep(min(self.report_interval, duration - elapsed))
        self._arrive(x, y, z)

    def _arrive(self, x: float, y: float, z: float) -> None:
        with self._lock:
            self._position = Position(x=x, y=y, z=z)
        self.positionChanged.emit(x, y, z)


def main() -> None:
    parser = device_parser("A dummy motion stage.", "stage")
    parser.add_argument("--speed", type=float, default=400.0, help="mm per second (default 400)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    DummyCnc(speed=args.speed).serve(args.bind, **serving(args))


if __name__ == "__main__":
    main()
