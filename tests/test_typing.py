"""The generated code types a user's program: right uses pass mypy --strict, mistakes are caught."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).parent / "typing"
ROOT = Path(__file__).parent.parent


def _mypy(path: Path, cache: Path) -> list[tuple[int, str]]:
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--cache-dir", str(cache), "--no-error-summary", str(path)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        check=False,
    )
    found = re.findall(rf"^{re.escape(str(path))}:(\d+): error: .*\[([a-z-]+)\]$", result.stdout, re.MULTILINE)
    return sorted((int(line), code) for line, code in found)


def _expected(path: Path) -> list[tuple[int, str]]:
    lines = path.read_text().splitlines()
    return sorted(
        (number, match.group(1))
        for number, text in enumerate(lines, start=1)
        if (match := re.search(r"# error: ([a-z-]+)$", text))
    )


@pytest.mark.slow
def test_correct_usage_passes_mypy_strict(tmp_path: Path) -> None:
    path = (HERE / "usage_ok.py").relative_to(ROOT)
    assert _mypy(path, tmp_path) == []


@pytest.mark.slow
def test_mypy_reports_exactly_the_mistakes(tmp_path: Path) -> None:
    path = (HERE / "usage_bad.py").relative_to(ROOT)
    expected = _expected(HERE / "usage_bad.py")
    assert len(expected) == 10
    assert _mypy(path, tmp_path) == expected
