"""The README's IDL-to-call example works as written."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from runtime.tools.cli import main

ROOT = Path(__file__).parent.parent


def _block_after(text: str, marker: str, language: str) -> str:
    start = text.index(marker)
    match = re.compile(rf"```{language}\n(.*?)```", re.DOTALL).search(text, start)
    assert match is not None, f"no {language} block after {marker!r}"
    return match.group(1)


WHOLE_LINES = """
import builtins, runpy, sys, threading

lock = threading.Lock()
plain_print = builtins.print

def print_whole_lines(*values, **options):
    with lock:  # the signal thread's callback and the main thread print at once
        plain_print(*values, **options)

builtins.print = print_whole_lines
runpy.run_path(sys.argv[1], run_name="__main__")
"""
"""Runs a script with ``print`` taking a lock, so that lines printed by two threads never mix."""


def test_readme_example_generates_and_runs(tmp_path: Path) -> None:
    readme = (ROOT / "README.md").read_text()
    idl = tmp_path / "idl"
    idl.mkdir()
    (idl / "lamp.yaml").write_text(_block_after(readme, "`idl/lamp.yaml`:", "yaml"))
    assert main(["generate", str(idl), "-o", str(tmp_path / "generated")]) == 0
    script = tmp_path / "example.py"
    script.write_text(_block_after(readme, "`make generate` writes `generated/lamp.py`", "python"))
    result = subprocess.run(
        [sys.executable, "-c", WHOLE_LINES, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}"},
        check=False,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    assert "3" in printed
    assert "0.8" in printed, "the brightnessChanged callback printed the new value"
    assert "Input should be greater than or equal to 1" in result.stdout
