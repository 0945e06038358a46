"""What installing zidl gives: a device machine needs only the runtime's dependencies; generated code type-checks
anywhere on the disk."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent

pytestmark = pytest.mark.slow

DEVICE_MACHINE = """
import importlib.util

import runtime
from fixtures.echo_device import Echo
from fixtures.generated.echo import EchoClient

extras = [name for name in ("jinja2", "yaml", "ruff", "simplejpeg", "PIL") if importlib.util.find_spec(name)]
assert not extras, f"installed without extras, yet these import: {extras}"
with Echo().running("tcp://127.0.0.1:0") as address:
    with EchoClient.connect(address) as echo:
        print("typed", echo.add(2, 3))
    with runtime.Client.connect(address) as device:
        print("dynamic", device.call("add", a=4, b=5))
    print(address, flush=True)
    input()  # the test describes the device from another process, then lets this one stop
"""


@pytest.fixture(scope="module")
def device_venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtual environment with zidl installed from this checkout without any extra."""
    venv = tmp_path_factory.mktemp("device") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run(
        [str(venv / "bin" / "pip"), "install", "--quiet", "--disable-pip-version-check", str(ROOT)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    return venv


def test_runtime_serves_and_calls_with_only_its_own_dependencies(device_venv: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "tests")}
    zidl = str(device_venv / "bin" / "zidl")
    with subprocess.Popen(
        [str(device_venv / "bin" / "python"), "-c", DEVICE_MACHINE],
        cwd=tmp_path,
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    ) as device:
        try:
            assert device.stdout is not None and device.stdin is not None
            assert device.stdout.readline().split() == ["typed", "5"]
            assert device.stdout.readline().split() == ["dynamic", "9"]
            address = device.stdout.readline().strip()
            described = subprocess.run([zidl, "describe", address], capture_output=True, text=True, timeout=60)
            assert described.returncode == 0, described.stderr
            assert described.stdout.startswith("interface: Echo\n")
            device.stdin.write("\n")
            device.stdin.flush()
            assert device.wait(timeout=60) == 0, device.stderr.read() if device.stderr else ""
        finally:
            device.kill()


def test_generate_without_the_codegen_extra_says_what_to_install(device_venv: Path, tmp_path: Path) -> None:
    shutil.copy(ROOT / "idl" / "camera.yaml", tmp_path / "camera.yaml")
    result = subprocess.run(
        [str(device_venv / "bin" / "zidl"), "generate", "camera.yaml", "-o", "out"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "zidl[codegen]" in result.stderr
    assert not (tmp_path / "out").exists()


def test_web_without_the_web_extra_says_what_to_install_and_the_page_is_installed(device_venv: Path) -> None:
    result = subprocess.run([str(device_venv / "bin" / "zidl"), "web"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "zidl[web]" in result.stderr
    pages = sorted(path.name for path in device_venv.glob("lib/python*/site-packages/runtime/tools/web/static/*"))
    assert pages == ["app.js", "index.html", "style.css"]


def test_a_package_generated_outside_the_repository_passes_mypy_strict(tmp_path: Path) -> None:
    """With the environment `make install` made, as a user's project elsewhere on the disk would use it."""
    project = tmp_path / "rig"
    (project / "idl").mkdir(parents=True)
    shutil.copy(ROOT / "idl" / "camera.yaml", project / "idl" / "camera.yaml")
    (project / "mypkg").mkdir()
    (project / "mypkg" / "__init__.py").write_text("")
    zidl = Path(sys.executable).parent / "zidl"
    subprocess.run([str(zidl), "generate", "idl", "-o", "mypkg/devices"], cwd=project, check=True, timeout=120)
    (project / "mypkg" / "use.py").write_text(
        textwrap.dedent(
            """\
            from runtime import CallTimeout

            from mypkg.devices.camera import CameraClient, CameraMode


            def snap(address: str) -> bytes:
                with CameraClient.connect(address) as camera:
                    camera.mode = CameraMode.still
                    try:
                        return camera.get_image(lores=True).image
                    except CallTimeout:
                        return b""
            """
        )
    )
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "mypkg"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


NEWCOMER_SCRIPT = """
import sys
from pathlib import Path

# the project's folder after the installed packages, where an installed project's own path entry comes
sys.path.append(str(Path(__file__).resolve().parents[1]))

from generated.lamp import LampClient, LampServer
from zidl_devices.camera import CameraClient  # the bundled devices' modules, under a name of their own


class Lamp(LampServer):
    pass


with Lamp().running("tcp://127.0.0.1:0") as address, LampClient.connect(address) as lamp:
    lamp.on = True
    print("on" if lamp.on else "off", CameraClient.__module__)
"""


@pytest.mark.parametrize("environment", ["make install", "pip install zidl"])
def test_a_users_own_generated_package_is_not_shadowed_by_zidls(
    environment: str, device_venv: Path, tmp_path: Path
) -> None:
    """A fresh project generates into its own `generated/` and a script of its imports it (issue 15)."""
    project = tmp_path / "project"
    (project / "idl").mkdir(parents=True)
    (project / "idl" / "lamp.yaml").write_text(
        "interface: Lamp\nversion: 1\nproperties:\n  on: {type: bool, default: false, writable: true}\n"
    )
    zidl = Path(sys.executable).parent / "zidl"
    subprocess.run([str(zidl), "generate", "idl"], cwd=project, check=True, capture_output=True, timeout=120)
    (project / "scripts").mkdir()
    (project / "scripts" / "run.py").write_text(NEWCOMER_SCRIPT)
    python = sys.executable if environment == "make install" else str(device_venv / "bin" / "python")
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    result = subprocess.run(
        [python, "scripts/run.py"], cwd=project, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.stdout.split() == ["on", "zidl_devices.camera"], result.stderr
