"""The README's snippets: the IDL-to-call example runs as written; every other Python snippet is a fragment marked
as one (``<!-- fragment: NAMES -->`` above it, naming what it assumes), and uses no name it neither imports, defines
nor assumes, and its imports import; every `zidl` command line in a shell snippet is one the command line takes."""

from __future__ import annotations

import ast
import os
import re
import shlex
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest
from ruff import find_ruff_bin

from runtime.tools.cli import build_parser, main

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
RUN_AS_WRITTEN = "`make generate` writes `generated/lamp.py`"
"""The text before the one Python snippet that runs as written (the test below runs it)."""


@dataclass(frozen=True)
class Snippet:
    line: int
    language: str
    body: str
    assumes: list[str] | None
    """The names a fragment assumes; None for a snippet that is not marked a fragment."""


def _snippets(text: str) -> list[Snippet]:
    pattern = re.compile(
        r"^(?:<!-- fragment:?(?P<assumes>[^>]*)-->\n)?```(?P<language>\w*)\n(?P<body>.*?)^```$", re.M | re.S
    )
    return [
        Snippet(
            text.count("\n", 0, match.start("body")) + 1,
            match["language"],
            match["body"],
            None if match["assumes"] is None else match["assumes"].split(),
        )
        for match in pattern.finditer(text)
    ]


SNIPPETS = _snippets(README)
FRAGMENTS = [snippet for snippet in SNIPPETS if snippet.language == "python" and snippet.assumes is not None]


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


def test_every_python_snippet_but_the_one_that_runs_is_a_marked_fragment() -> None:
    runs = README.index("```python", README.index(RUN_AS_WRITTEN))
    unmarked = [snippet.line for snippet in SNIPPETS if snippet.language == "python" and snippet.assumes is None]
    assert unmarked == [README.count("\n", 0, runs) + 2]
    assert len(FRAGMENTS) >= 4


@pytest.mark.parametrize("fragment", FRAGMENTS, ids=[f"README.md:{fragment.line}" for fragment in FRAGMENTS])
def test_a_fragment_uses_only_names_it_imports_defines_or_assumes(fragment: Snippet) -> None:
    """In a function of its own, so that its top-level ``await`` and ``async with`` are Python too."""
    assumed = "".join(f"{name} = ...\n" for name in fragment.assumes or [])
    source = f"{assumed}async def fragment() -> None:\n{textwrap.indent(fragment.body, '    ')}"
    result = subprocess.run(
        [find_ruff_bin(), "check", "--isolated", "--select", "F821,F822,F823", "--output-format", "concise", "-"],
        input=source,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, f"README.md:{fragment.line}: {result.stdout}{result.stderr}"


def test_the_fragments_imports_import(tmp_path: Path) -> None:
    """With `generated/` what `zidl generate idl/` writes, as the README says."""
    assert main(["generate", str(ROOT / "idl"), "-o", str(tmp_path / "generated")]) == 0
    imports = [
        ast.unparse(node)
        for fragment in FRAGMENTS
        for node in ast.walk(ast.parse(fragment.body))
        if isinstance(node, ast.Import | ast.ImportFrom)
    ]
    result = subprocess.run(
        [sys.executable, "-c", "\n".join(imports)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        check=False,
    )
    assert result.returncode == 0, result.stderr


COMMAND_LINES = [
    (snippet.line + index, words[1:])
    for snippet in SNIPPETS
    if snippet.language == "sh"
    for index, line in enumerate(snippet.body.splitlines())
    if (words := shlex.split(line, comments=True)) and Path(words[0]).name == "zidl"
]


@pytest.mark.parametrize("line, args", COMMAND_LINES, ids=[f"README.md:{line}" for line, _ in COMMAND_LINES])
def test_a_zidl_command_line_in_the_readme_is_one_zidl_takes(line: int, args: list[str]) -> None:
    try:
        build_parser().parse_args(args)
    except SystemExit as exc:
        pytest.fail(f"README.md:{line}: zidl {shlex.join(args)} is refused ({exc})")


def _section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    return README[start : README.index("\n## ", start + 1)]


def test_the_command_line_section_names_every_command_and_option() -> None:
    section = _section("Command line")
    commands = next(action for action in build_parser()._actions if action.dest == "command")
    assert isinstance(commands.choices, dict)
    missing = []
    for name, parser in commands.choices.items():
        if f"`zidl {name}" not in section:
            missing.append(f"zidl {name}")
        for action in parser._actions:
            named = [f"`{option}" in section or f"[{option}" in section for option in action.option_strings]
            if action.option_strings and "--help" not in action.option_strings and not any(named):
                missing.append(f"zidl {name} {action.option_strings[-1]}")
    assert missing == []
