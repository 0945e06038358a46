"""The demo rig: a registry, two cameras, a stage and a scan controller, each its own process.

    python examples/demo.py            # run one scan of 36 positions, print a summary, stop everything
    python examples/demo.py --rig      # start the rig and the web view, and leave them running until Ctrl-C
    python examples/demo.py --rig --bind '*'   # the same, reachable from other hosts (unauthenticated!)

The devices bind the loopback unless ``--bind`` names another host. Bound to every
interface (``*``), they register this host's IP address (or ``--advertise``), which
other hosts can reach, rather than a host name they may not resolve. The registry is
``--registry``, else ``$ZIDL_REGISTRY``; the rig starts one there unless one answers.

Every process it starts is stopped on success, on error and on Ctrl-C. The progress
bar is drawn from the scan's stream (`run_scan` yields after each position). Ctrl-C
cancels the scan on the controller, which stops the stage where it is and records in
the dataset's `scan.json` that the scan is incomplete and how far it got; then every
process is stopped, the controller first. The rig's processes run in a session of
their own, so that Ctrl-C reaches the demo alone and it stops them in that order.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tqdm import tqdm
from zidl_devices.controller import ControllerClient, ScanSummary

from runtime import RegistryUnavailable, ZidlError, list_devices
from runtime.transport.addresses import WILDCARD_HOSTS, endpoint, split_tcp, tcp

HERE = Path(__file__).parent
ROOT = HERE.parent
DEVICES = ("cam1", "cam2", "stage", "controller")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class Rig:
    """The rig's processes: started together, stopped together."""

    def __init__(
        self,
        registry: str,
        *,
        camera_options: Sequence[str] = (),
        quiet: bool = True,
        host: str = "127.0.0.1",
        advertise: str | None = None,
        web: str | None = None,
    ) -> None:
        self.registry = registry
        self.camera_options = list(camera_options)
        self.quiet = quiet
        self.web = web
        """Where `zidl web` serves the rig (HOST:PORT), or None for no web view."""
        self.host = host
        """Where the rig's processes bind: the loopback, an address of this host's, or ``*`` for every interface."""
        self.device_options = ["--bind", tcp(host, "0")]
        if host in WILDCARD_HOSTS:
            self.device_options += ["--advertise", advertise or reachable_ip(registry)]
        self.processes: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def web_url(self) -> str:
        return f"http://{self.web}/"

    def _start(self, name: str, *command: str) -> None:
        env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{HERE}", "ZIDL_REGISTRY": self.registry}
        output = subprocess.DEVNULL if self.quiet else None
        self.processes[name] = subprocess.Popen(
            [sys.executable, *command], env=env, stdout=output, stderr=output, start_new_session=True
        )

    def start(self) -> None:
        """The registry, unless one answers at its address already, and the devices."""
        try:
            list_devices(registry=self.registry, timeout=0.5)
        except RegistryUnavailable:
            port = (split_tcp(self.registry) or ("", "5555"))[1]
            self._start("registry", "-m", "runtime.tools.cli", "registry", "--bind", tcp(self.host, port))
        devices = self.device_options
        self._start("stage", str(HERE / "dummy_cnc.py"), "--name", "stage", *devices)
        for name in ("cam1", "cam2"):
            self._start(name, str(HERE / "dummy_camera.py"), "--name", name, *devices, *self.camera_options)
        self._start("controller", str(HERE / "scan_controller.py"), "--name", "controller", *devices)
        if self.web is not None:
            self._start("web", "-m", "runtime.tools.cli", "web", "--bind", self.web, "--registry", self.registry)

    def wait_ready(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for process in self.processes.values():
                if process.poll() is not None:
                    raise RuntimeError(f"{' '.join(map(str, process.args))} exited with status {process.returncode}")
            try:
                names = {device.name for device in list_devices(registry=self.registry, timeout=1.0)}
            except ZidlError:
                names = set()
            if names >= set(DEVICES) and self._web_sees(DEVICES):
                return
            time.sleep(0.2)
        raise RuntimeError(f"the rig did not come up within {timeout:.0f} s")

    def _web_sees(self, names: Sequence[str]) -> bool:
        if self.web is None:
            return True
        try:
            direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # the loopback, never a proxy
            with direct.open(self.web_url + "api/devices", timeout=1.0) as response:
                listed = {device["name"] for device in json.load(response)}
        except OSError:
            return False
        return listed >= set(names)

    def __enter__(self) -> Rig:
        """Start the rig and wait until every device is registered; stopped on leaving, or if it fails to start."""
        try:
            self.start()
            self.wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> None:
        """The web view and the controller first (the controller finishes a cancelled scan with the stage and cameras
        still up), then the rest."""
        first = [self.processes[name] for name in ("web", "controller") if name in self.processes]
        rest = [process for process in reversed(self.processes.values()) if process not in first]
        for group in (first, rest):
            for process in group:
                if process.poll() is None:
                    process.send_signal(signal.SIGTERM)
            for process in group:
                try:
                    process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()


def reachable_ip(registry: str) -> str:
    """This host's IP address as other hosts reach it: the source address of its route to the registry, or for a
    registry on this host of its default route (a UDP socket's connect picks the route and sends nothing)."""
    host = (split_tcp(registry) or ("",))[0].strip("[]")
    local = not host or host.startswith("127.") or host in ("localhost", "::1")
    towards = "198.51.100.1" if local else host  # an address of RFC 5737's, never reached: only its route counts
    try:
        with socket.socket(socket.AF_INET6 if ":" in towards else socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.connect((towards, 9))
            ip: str = probe.getsockname()[0]
    except OSError as exc:
        raise RuntimeError(
            f"no route from this host to find the address others reach it at ({exc}): give --advertise"
        ) from exc
    return ip


def scan(registry: str, output: Path, positions: int, dataset: str | None = None) -> ScanSummary:
    """Run one scan through the controller, drawing a progress bar from its stream; Ctrl-C cancels it."""
    with ControllerClient.lookup("controller", registry=registry) as controller:
        cameras_seen = threading.Event()
        controller.cameraNamesChanged.connect(lambda names: cameras_seen.set() if len(names) >= 2 else None)
        if len(controller.camera_names) < 2 and not cameras_seen.wait(timeout=10.0):
            raise RuntimeError(f"the controller sees only {controller.camera_names} after 10 s")
        controller.set_db_url(str(output.resolve()))
        controller.set_dataset_name(dataset or time.strftime("scan-%Y%m%d-%H%M%S"))
        controller.set_config({"positions": positions})
        with (
            tqdm(total=positions, desc="  scanning", unit="pos", leave=True, dynamic_ncols=True) as bar,
            controller.run_scan() as steps,
        ):
            try:
                for step in steps:
                    bar.set_postfix(images=step.images, refresh=False)
                    bar.update(step.done - bar.n)
            except KeyboardInterrupt:
                bar.write(
                    f"  cancelled after {bar.n} of {positions} positions; the scan's scan.json says how far it got"
                )
                raise
            return steps.result()


def report(summary: ScanSummary) -> None:
    megabytes = summary.total_bytes / 1e6
    print(f"  dataset    {summary.dataset}")
    print(f"  images     {summary.images}")
    print(f"  bytes      {summary.total_bytes:,} ({megabytes:.1f} MB)")
    print(f"  seconds    {summary.seconds:.2f}")
    print(f"  MB/s       {megabytes / summary.seconds:.1f}")
    print("  spent      " + ", ".join(f"{phase} {seconds:.2f} s" for phase, seconds in summary.phases.items()))
    for camera, count in sorted(summary.per_camera.items()):
        print(f"  {camera:<10} {count} images")
    if summary.failed_cameras:
        print(f"  failed     {', '.join(summary.failed_cameras)}")


def main() -> int:
    parser = argparse.ArgumentParser(description="Run the demo rig.")
    parser.add_argument("--rig", action="store_true", help="start the rig and leave it running until Ctrl-C")
    parser.add_argument(
        "--registry",
        default=None,
        help="registry address (default: $ZIDL_REGISTRY, else a free port; with --rig tcp://127.0.0.1:5555)",
    )
    parser.add_argument(
        "--bind",
        default="127.0.0.1",
        metavar="HOST",
        help="the host the rig binds (default 127.0.0.1; '*' for every interface: other hosts can reach it)",
    )
    parser.add_argument(
        "--advertise", default=None, metavar="IP", help="with --bind '*': the address to register (default: found)"
    )
    parser.add_argument("--positions", type=int, default=36, help="stops round the circle (default 36)")
    parser.add_argument("--output", type=Path, default=ROOT / "demo-output", help="dataset root (default demo-output/)")
    parser.add_argument(
        "--web", default="127.0.0.1:8000", metavar="HOST:PORT", help="with --rig: where the web view serves"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # SIGTERM stops the rig as Ctrl-C does
    chosen = args.registry or os.environ.get("ZIDL_REGISTRY")
    registry = endpoint(chosen) if chosen else f"tcp://127.0.0.1:{5555 if args.rig else free_port()}"
    try:
        print(f"starting the rig (registry {registry}, devices bound on {args.bind})")
        with Rig(
            registry, quiet=not args.rig, host=args.bind, advertise=args.advertise, web=args.web if args.rig else None
        ) as rig:
            print(f"  {len(rig.processes)} processes up: {', '.join(rig.processes)}")
            if args.rig:
                print(f"  the web view: {rig.web_url}")
                print(f"the rig runs until Ctrl-C; try: ZIDL_REGISTRY={registry} zidl ls")
                threading.Event().wait()
            report(scan(registry, args.output, args.positions))
        print("stopped every process")
        return 0
    except KeyboardInterrupt:
        print("interrupted: the scan was cancelled; every process stopped")
        return 130
    except (RuntimeError, ValueError, ZidlError) as exc:
        print(f"demo: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
