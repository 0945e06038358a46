"""`zidl generate`: load and check IDL files, render their modules, format, write.

Nothing is written unless every file checks and renders; a module whose text is
unchanged is not rewritten, so `make generate` on a clean tree touches nothing.
"""

from __future__ import annotations

import subprocess
import tempfile
from collections.abc import Sequence
from pathlib import Path

from ruff import find_ruff_bin

from .load import LoadedInterface, load_interfaces
from .render import render_module, render_package

# The formatter's settings are part of the output: change them and every module changes.
_RUFF_FORMAT = ["format", "--isolated", "--quiet", "--line-length", "120", "--target-version", "py311"]


def render_all(loaded: Sequence[LoadedInterface]) -> dict[str, str]:
    """Every generated file's name and formatted text, `__init__.py` included."""
    by_module = {item.module: item for item in loaded}
    sources = {
        f"{item.module}.py": render_module(
            item.interface,
            item.path.name,
            {name: by_module[name].interface for name in item.imports},
        )
        for item in loaded
    }
    sources["__init__.py"] = render_package([(item.module, item.interface) for item in loaded])
    return _formatted(sources)


def _formatted(sources: dict[str, str]) -> dict[str, str]:
    """Run the pinned ruff formatter over the rendered modules in one go."""
    with tempfile.TemporaryDirectory(prefix="zidl-") as scratch:
        folder = Path(scratch)
        for name, text in sources.items():
            (folder / name).write_text(text, encoding="utf-8")
        result = subprocess.run(
            [find_ruff_bin(), *_RUFF_FORMAT, str(folder)], capture_output=True, text=True, check=False
        )
        if result.returncode != 0:
            raise RuntimeError(f"formatting the generated code failed (a zidl bug):\n{result.stderr}")
        return {name: (folder / name).read_text(encoding="utf-8") for name in sources}


def generate(paths: Sequence[Path], output: Path) -> list[Path]:
    """Generate modules for the IDL files under ``paths`` into ``output``; return the files written."""
    files = render_all(load_interfaces(paths))
    output.mkdir(parents=True, exist_ok=True)
    (output / "py.typed").touch()
    written = []
    for name, text in sorted(files.items()):
        target = output / name
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    return written
