"""What the web view costs, against a zidl client measured in the same run, as ratios.

* a property read (``gain``): p50 through the view (``GET .../properties/gain``) beside the
  dynamic client's ``get``; the figure is the difference (aim: at most 1 ms);
* a method returning 1 MiB of ``bytes``: MB/s through the view (the raw body, fetched by
  curl, which times each request itself) over the client's (aim: at least 0.5x);
* the dummy camera's preview at its lores size (410x308 JPEG at 30 fps asked): frames a
  second read from the view's WebSocket beside a zidl client reading the same stream
  (aim: at least 25 fps).

The registry and devices run in one process, the view in another, the readers here (HTTP
through the standard library's ``http.client``, one kept-alive connection). Rounds of
direct and gateway reads alternate, so a busy machine weighs on both alike; a figure is
the median of the rounds' own differences or ratios.
Run: ``.venv/bin/python bench/web_bench.py``.
"""

from __future__ import annotations

import http.client
import json
import multiprocessing
import statistics
import subprocess
import sys
import time
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.sync.client import connect

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "examples"))

from runtime import Client, Registry  # noqa: E402

MIB = 1024 * 1024
READS = 4000
BYTES_CALLS = 240
PREVIEW_SECONDS = 3.0
ROUNDS = 8


def _devices(ready: Any) -> None:
    from dummy_camera import DummyCamera

    from bench.servers import Bench

    with (
        Registry().running("tcp://127.0.0.1:0") as registry,
        Bench().running("tcp://127.0.0.1:0", registry=registry, name="bench"),
        DummyCamera(name="cam").running("tcp://127.0.0.1:0", registry=registry, name="cam"),
    ):
        ready.put(registry)
        ready.get()


def _view(registry: str, ready: Any) -> None:
    from runtime.tools.web.server import WebView

    with WebView(bind="127.0.0.1:0", registry=registry).running() as url:
        ready.put(url)
        ready.get()


def _start(target: Any, *args: Any) -> tuple[BaseProcess, Any, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    process = ctx.Process(target=target, args=(*args, queue))
    process.start()
    return process, queue, queue.get(timeout=60)


def _timed(action: Any, count: int) -> list[float]:
    times = []
    for _ in range(count):
        start = time.perf_counter()
        action()
        times.append(time.perf_counter() - start)
    return times


def _curl_times(url: str, count: int) -> list[float]:
    """Seconds each of ``count`` POSTs took in one curl process (one kept-alive connection), as curl times them."""
    request = ["-sS", "--fail", "-o", "/dev/null", "-w", "%{time_total} ", "--json", json.dumps({"size": MIB}), url]
    command = ["curl", *request]
    for _ in range(count - 1):
        command += ["--next", *request]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise RuntimeError(f"curl failed: {done.stderr.strip()}")
    return [float(seconds) for seconds in done.stdout.split()]


def _fps_direct(camera: Client) -> float:
    with camera.call("preview", fps=30.0) as frames:
        next(iter(frames))
        start, count = time.perf_counter(), 0
        for _ in frames:
            count += 1
            if time.perf_counter() - start >= PREVIEW_SECONDS:
                break
    return count / (time.perf_counter() - start)


def _fps_view(url: str) -> float:
    with connect(url.replace("http://", "ws://") + "api/devices/cam/methods/preview", max_queue=None) as socket:
        socket.send('{"fps": 30}')
        assert isinstance(socket.recv(timeout=10), bytes)
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < PREVIEW_SECONDS:
            assert isinstance(socket.recv(timeout=10), bytes)
            count += 1
    return count / (time.perf_counter() - start)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def main() -> None:
    devices, devices_queue, registry = _start(_devices)
    view, view_queue, url = _start(_view, registry)
    reads: list[tuple[float, float]] = []
    """Per round: the p50 of the client's reads and of the view's, in seconds."""
    rates: list[tuple[float, float]] = []
    """Per round: the median MB/s of the client's 1 MiB calls and of the view's."""
    frames: list[tuple[float, float]] = []
    try:
        where = urlsplit(url)
        connection = http.client.HTTPConnection(where.hostname or "127.0.0.1", where.port, timeout=30)
        with Client.lookup("bench", registry=registry) as bench, Client.lookup("cam", registry=registry) as camera:

            def read_view() -> None:
                connection.request("GET", "/api/devices/bench/properties/gain")
                response = connection.getresponse()
                assert response.status == 200
                response.read()

            for round_ in range(ROUNDS + 1):
                direct = _median(_timed(lambda: bench.get("gain"), READS // ROUNDS))
                through = _median(_timed(read_view, READS // ROUNDS))
                calls = _timed(lambda: bench.call("make_bytes", size=MIB), BYTES_CALLS // ROUNDS)
                fetched = _curl_times(url + "api/devices/bench/methods/make_bytes", BYTES_CALLS // ROUNDS)
                if round_ > 0:  # the first round warms up
                    reads.append((direct, through))
                    rates.append((MIB / _median(calls) / 1e6, MIB / _median(fetched) / 1e6))
            for _ in range(2):
                frames.append((_fps_direct(camera), _fps_view(url)))
        connection.close()
    finally:
        for queue in (view_queue, devices_queue):
            queue.put("stop")
        for process in (view, devices):
            process.join(30)
    overhead = [(through - direct) * 1e3 for direct, through in reads]
    ratios = [through / direct for direct, through in rates]

    def columns(pairs: list[tuple[float, float]], scale: float = 1.0) -> tuple[float, float]:
        return _median([a for a, _ in pairs]) * scale, _median([b for _, b in pairs]) * scale

    spread = f"(rounds: {min(ratios):.2f}x to {max(ratios):.2f}x)"
    print(f"{'':34}{'zidl client':>12}{'web view':>10}{'':>4}figure, the median of {ROUNDS} rounds in turns")
    direct_p50, view_p50 = columns(reads, 1e3)
    print(f"{'property read p50 (ms)':34}{direct_p50:12.3f}{view_p50:10.3f}    +{_median(overhead):.3f} ms")
    direct_rate, view_rate = columns(rates)
    print(f"{'bytes 1 MiB (MB/s)':34}{direct_rate:12.0f}{view_rate:10.0f}    {_median(ratios):.2f}x {spread}")
    direct_frames, view_frames = columns(frames)
    print(f"{'preview 410x308 at 30 fps (fps)':34}{direct_frames:12.1f}{view_frames:10.1f}    {view_frames:.1f} fps")


if __name__ == "__main__":
    main()
