"""How long `zidl generate` takes: the bundled IDL, and 100 synthetic interfaces of 20 methods each.

    python bench/generate_bench.py

Each figure is the median of several runs of the whole command (load, check,
render, format, write) in this process; the aims are under 1 s and under 5 s.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from codegen.generate import generate

ROOT = Path(__file__).parent.parent


def synthetic_idl(index: int, methods: int = 20) -> str:
    lines = [
        f"interface: Device{index}",
        "version: 1",
        f"doc: Synthetic device number {index}.",
        "enums:",
        f"  Mode{index}: [idle, busy, fault]",
        "structs:",
        f"  Reading{index}:",
        "    fields: {value: float, unit: str, at: {type: int, ge: 0}}",
        "errors:",
        f"  Fault{index}: {{fields: {{code: int}}}}",
        "properties:",
        f"  mode: {{type: Mode{index}, default: idle, writable: true, notify: modeChanged}}",
        "signals:",
        f"  modeChanged: {{args: {{mode: Mode{index}}}}}",
        "methods:",
    ]
    for number in range(methods):
        lines += [
            f"  op{number}:",
            f"    doc: Operation {number}.",
            f'    args: {{a: int, b: {{type: float, default: 1.5, ge: 0.0}}, c: "list[Reading{index}]"}}',
            f"    returns: Reading{index}",
            f"    raises: [Fault{index}]",
        ]
    return "\n".join(lines) + "\n"


def timed(idl: Path, runs: int) -> tuple[float, float]:
    seconds = []
    for _ in range(runs):
        with tempfile.TemporaryDirectory() as out:
            began = time.perf_counter()
            generate([idl], Path(out))
            seconds.append(time.perf_counter() - began)
    return statistics.median(seconds), max(seconds) - min(seconds)


def main() -> None:
    bundled = timed(ROOT / "idl", runs=5)
    with tempfile.TemporaryDirectory() as folder:
        for index in range(100):
            (Path(folder) / f"device{index}.yaml").write_text(synthetic_idl(index))
        hundred = timed(Path(folder), runs=3)
    print(f"{'case':<40} {'median s':>9} {'spread s':>9} {'aim s':>6}")
    print(f"{'bundled IDL (3 files)':<40} {bundled[0]:9.3f} {bundled[1]:9.3f} {1.0:6.1f}")
    print(f"{'100 interfaces x 20 methods':<40} {hundred[0]:9.3f} {hundred[1]:9.3f} {5.0:6.1f}")


if __name__ == "__main__":
    main()
