"""A registry, a device and a client on three hosts of their own (SPEC "Addresses across hosts").

The hosts are network namespaces made here with ``ip netns add``; each has one veth
link to a fourth namespace holding a Linux bridge (the "switch"), and one address
in 10.213.0.0/24 that exists only inside these namespaces. The processes run in
them with ``ip netns exec``. The device binds a wildcard (``tcp://*:0``) and must be
registered under its own host's address (or under the host name it advertises),
and a client on the third host must find it by name and call it.

Needs root and a working ``ip netns``; skipped otherwise. Everything made here
(namespaces, links, processes, the client's hosts file) is removed afterwards.
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import os
import shutil
import signal
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from zidl_devices.cnc import CncServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures"
SUBNET = "10.213.0"
REGISTRY_IP = f"{SUBNET}.1"
DEVICE_IP = f"{SUBNET}.2"
CLIENT_IP = f"{SUBNET}.3"
REGISTRY_URL = f"tcp://{REGISTRY_IP}:5555"
ADVERTISED_HOST = "stage-host.zidl-test"  # known only to the client host's own /etc/hosts
CLIENT_TIMEOUT = 10.0  # seconds the client waits for the device to be registered
PROCESS_TIMEOUT = 15.0  # seconds the client process may take in all

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="network namespaces need Linux")


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


def _must(*args: str) -> None:
    """Run ``ip ARGS``: skip the module where the kernel lacks a device type; fail on anything else."""
    done = _ip(*args)
    if done.returncode == 0:
        return
    command = f"`ip {' '.join(args)}` failed: {done.stderr.strip() or done.returncode}"
    if any(phrase in done.stderr for phrase in _UNSUPPORTED):
        pytest.skip(command)
    raise RuntimeError(command)


_UNSUPPORTED = ("Unknown device type", "not supported", "Operation not permitted")


def _stop(process: subprocess.Popen[Any]) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


def _remove_namespace(name: str) -> None:
    """Kill whatever still runs in namespace ``name`` (only processes this test started), then delete it."""
    pids = _ip("netns", "pids", name).stdout.split()
    for pid in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid), signal.SIGKILL)
    _ip("netns", "del", name)  # its veth ends go with it, and so do their peers


@dataclass
class Hosts:
    """The three hosts' namespace names and a way to start a process on one of them."""

    registry: str
    device: str
    client: str
    logs: Path
    log_files: list[Path] = field(default_factory=list)

    def spawn(
        self, namespace: str, args: list[str], log: str, finalizer: Callable[[Callable[[], object]], None]
    ) -> subprocess.Popen[bytes]:
        """Start ``python ARGS`` on ``namespace``, output to ``logs/LOG``; ``finalizer`` registers its end."""
        path = self.logs / log
        self.log_files.append(path)
        with path.open("wb") as out:
            process = subprocess.Popen(
                ["ip", "netns", "exec", namespace, sys.executable, *args],
                cwd=ROOT,
                env=_env(),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        finalizer(lambda: _stop(process))
        return process

    def report(self) -> str:
        """Every log so far, for an assertion message."""
        parts = []
        for path in self.log_files:
            text = path.read_text(errors="replace") if path.exists() else "(missing)"
            parts.append(f"--- {path.name} ---\n{text[-3000:]}")
        return "\n".join(parts)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH", "")) if p)
    env.pop("ZIDL_REGISTRY", None)
    env["PYTHONUNBUFFERED"] = "1"
    return env


@pytest.fixture(scope="module")
def hosts(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Hosts:
    """Three hosts on one switch, with the registry running on the first."""
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make network namespaces with")
    prefix = f"zidl3h-{os.getpid()}"
    switch = f"{prefix}-sw"
    rig = Hosts(f"{prefix}-reg", f"{prefix}-dev", f"{prefix}-cli", tmp_path_factory.mktemp("three_hosts"))

    # The probe: the first namespace. Whatever is made is registered for removal at once.
    probe = _ip("netns", "add", switch)
    if probe.returncode != 0:
        pytest.skip(f"`ip netns add` is not allowed here: {probe.stderr.strip()}")
    request.addfinalizer(lambda: _remove_namespace(switch))
    _must("-n", switch, "link", "add", "br0", "type", "bridge")
    _must("-n", switch, "link", "set", "br0", "up")
    for namespace, address, port in (
        (rig.registry, REGISTRY_IP, "to-registry"),
        (rig.device, DEVICE_IP, "to-device"),
        (rig.client, CLIENT_IP, "to-client"),
    ):
        _must("netns", "add", namespace)
        request.addfinalizer(functools.partial(_remove_namespace, namespace))
        # The veth pair is made inside the switch with its far end straight in the host's
        # namespace, so no link name ever exists in (or clashes with) the machine's own.
        _must("-n", switch, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", namespace)
        _must("-n", switch, "link", "set", port, "master", "br0", "up")
        _must("-n", namespace, "addr", "add", f"{address}/24", "dev", "eth0")
        _must("-n", namespace, "link", "set", "eth0", "up")
        _must("-n", namespace, "link", "set", "lo", "up")

    # `ip netns exec NS` mounts /etc/netns/NS/hosts over /etc/hosts for that process only:
    # the client host alone knows the name the advertising device registers under.
    etc = Path("/etc/netns") / rig.client
    made_parent = not etc.parent.exists()
    etc.mkdir(parents=True, exist_ok=True)
    request.addfinalizer(functools.partial(_remove_etc, etc, made_parent))
    (etc / "hosts").write_text(f"127.0.0.1 localhost\n{DEVICE_IP} {ADVERTISED_HOST}\n")

    rig.spawn(
        rig.registry,
        ["-m", "runtime.tools.cli", "registry", "--bind", REGISTRY_URL],
        "registry.log",
        request.addfinalizer,
    )
    return rig


def _remove_etc(etc: Path, made_parent: bool) -> None:
    shutil.rmtree(etc, ignore_errors=True)
    if made_parent:
        with contextlib.suppress(OSError):
            etc.parent.rmdir()  # the /etc/netns made here, unless a parallel run still uses it


def _call_from_client_host(
    hosts: Hosts, name: str, registry: str = REGISTRY_URL, *extra: str, timeout: float = CLIENT_TIMEOUT
) -> dict[str, Any]:
    """Run the client on the client host: it waits for ``name``, looks it up, calls it; its JSON report."""
    args = [str(FIXTURES / "three_hosts_client.py"), "--registry", registry, "--name", name, *extra]
    process = subprocess.Popen(
        ["ip", "netns", "exec", hosts.client, sys.executable, "-P", *args, "--timeout", str(timeout)],
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        out, err = process.communicate(timeout=timeout + PROCESS_TIMEOUT - CLIENT_TIMEOUT)
    finally:
        _stop(process)
    lines = out.strip().splitlines()
    assert lines, f"the client printed nothing (exit {process.returncode}):\n{err}\n{hosts.report()}"
    report: dict[str, Any] = json.loads(lines[-1])
    assert process.returncode == 0 and "error" not in report, f"client: {report}\n{err}\n{hosts.report()}"
    return report


def _split(address: str) -> tuple[str, int]:
    assert address.startswith("tcp://"), address
    host, _, port = address.removeprefix("tcp://").rpartition(":")
    return host, int(port)


def _start_device(hosts: Hosts, request: pytest.FixtureRequest, name: str, *extra: str) -> None:
    args = [str(FIXTURES / "three_hosts_device.py"), "--registry", REGISTRY_URL, "--name", name, *extra]
    hosts.spawn(hosts.device, args, f"device-{name}.log", request.addfinalizer)


def test_wildcard_device_is_registered_under_its_hosts_address(hosts: Hosts, request: pytest.FixtureRequest) -> None:
    _start_device(hosts, request, "stage", "--bind", "tcp://*:0")
    report = _call_from_client_host(hosts, "stage")

    host, port = _split(report["registered"])
    assert host not in ("*", "0.0.0.0", "[::]", "::", "127.0.0.1", "localhost"), report
    assert host == DEVICE_IP, f"registered as {report['registered']}, not under the device host's {DEVICE_IP}"
    assert port > 0
    assert report["connected"] == report["registered"]
    assert report["position"] == {"x": 12.5, "y": -3.0, "z": 4.0}


def test_advertised_host_name_is_registered_as_given(hosts: Hosts, request: pytest.FixtureRequest) -> None:
    if "advertise" not in inspect.signature(CncServer.serve).parameters:
        pytest.skip("Server.serve() has no advertise= keyword yet")
    _start_device(hosts, request, "stage-adv", "--advertise", ADVERTISED_HOST)
    report = _call_from_client_host(hosts, "stage-adv")

    host, port = _split(report["registered"])
    assert host == ADVERTISED_HOST, f"registered as {report['registered']}, not under {ADVERTISED_HOST}"
    assert port > 0
    assert report["connected"] == report["registered"]  # the client reached it by that name
    assert report["position"] == {"x": 12.5, "y": -3.0, "z": 4.0}


# --- two networks joined by a bridge (issue 16) ---------------------------------------------------

NET_A, NET_B = "10.214.0", "10.215.0"
A_HOST, A_BRIDGE, B_HOST, B_BRIDGE = f"{NET_A}.1", f"{NET_A}.2", f"{NET_B}.1", f"{NET_B}.2"
REGISTRY_A, REGISTRY_B = f"tcp://{A_HOST}:5555", f"tcp://{B_HOST}:5555"
BRIDGED_TIMEOUT = 20.0  # seconds the client waits for the camera in B: three processes start before it is there


@pytest.fixture(scope="module")
def two_networks(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Hosts:
    """Network A (registry A and the camera on one host) and network B (registry B and the client on one host),
    each on a switch of its own, and a bridge host on both; nothing routes from one network to the other.

    In the ``Hosts`` returned, ``registry`` is network A's host, ``device`` the bridge host, ``client`` network B's.
    """
    if os.geteuid() != 0:
        pytest.skip("making network namespaces needs root")
    if shutil.which("ip") is None:
        pytest.skip("no `ip` command (iproute2) to make network namespaces with")
    prefix = f"zidl2n-{os.getpid()}"
    rig = Hosts(f"{prefix}-a", f"{prefix}-br", f"{prefix}-b", tmp_path_factory.mktemp("two_networks"))
    switches = {"a": f"{prefix}-swa", "b": f"{prefix}-swb"}
    probe = _ip("netns", "add", switches["a"])
    if probe.returncode != 0:
        pytest.skip(f"`ip netns add` is not allowed here: {probe.stderr.strip()}")
    request.addfinalizer(lambda: _remove_namespace(switches["a"]))
    _must("netns", "add", switches["b"])
    request.addfinalizer(lambda: _remove_namespace(switches["b"]))
    for switch in switches.values():
        _must("-n", switch, "link", "add", "br0", "type", "bridge")
        _must("-n", switch, "link", "set", "br0", "up")
    for namespace in (rig.registry, rig.device, rig.client):
        _must("netns", "add", namespace)
        request.addfinalizer(functools.partial(_remove_namespace, namespace))
        _must("-n", namespace, "link", "set", "lo", "up")
    for namespace, switch, port, link, address in (
        (rig.registry, switches["a"], "to-a", "eth0", A_HOST),
        (rig.device, switches["a"], "to-bridge", "eth0", A_BRIDGE),
        (rig.device, switches["b"], "to-bridge", "eth1", B_BRIDGE),
        (rig.client, switches["b"], "to-b", "eth0", B_HOST),
    ):
        _must("-n", switch, "link", "add", port, "type", "veth", "peer", "name", link, "netns", namespace)
        _must("-n", switch, "link", "set", port, "master", "br0", "up")
        _must("-n", namespace, "addr", "add", f"{address}/24", "dev", link)
        _must("-n", namespace, "link", "set", link, "up")
    for namespace, url, log in (
        (rig.registry, REGISTRY_A, "registry-a.log"),
        (rig.client, REGISTRY_B, "registry-b.log"),
    ):
        rig.spawn(namespace, ["-m", "runtime.tools.cli", "registry", "--bind", url], log, request.addfinalizer)
    return rig


def test_a_client_on_network_b_gets_an_image_from_a_camera_on_network_a_through_the_bridge(
    two_networks: Hosts, request: pytest.FixtureRequest
) -> None:
    hosts = two_networks
    unreachable = subprocess.run(
        [
            "ip",
            "netns",
            "exec",
            hosts.client,
            sys.executable,
            "-c",
            f"import socket; socket.create_connection(('{A_HOST}', 5555), 1)",
        ],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    assert unreachable.returncode != 0, "network B reaches network A without the bridge"
    camera = [str(FIXTURES / "two_networks_camera.py"), "--registry", REGISTRY_A, "--name", "cam1"]
    hosts.spawn(hosts.registry, camera, "camera.log", request.addfinalizer)
    bridge = ["-m", "runtime.tools.cli", "bridge", "--registry", REGISTRY_A, "--to", REGISTRY_B, "--bind", "tcp://*:0"]
    hosts.spawn(hosts.device, bridge, "bridge.log", request.addfinalizer)
    report = _call_from_client_host(hosts, "cam1", REGISTRY_B, "--camera", timeout=BRIDGED_TIMEOUT)
    host, port = _split(report["registered"])
    assert host == B_BRIDGE and port > 0, f"registered in B as {report['registered']}, not at the bridge's {B_BRIDGE}"
    assert report["connected"] == report["registered"]
    assert report["size"] == 4 + 256 * 4096 and report["head"] == "ffd8ffe0"
