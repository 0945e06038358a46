"""Load IDL files: find them, read them, follow their imports, check them, describe them.

``load_interfaces`` is the codegen's entry point. It reports every mistake of a run
at once, across all files, as one ``IdlErrors``; a file whose imports could not be
read is not checked further, since every name it takes from them would look unknown.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from runtime.schema import Interface

from .check import check_file
from .errors import IdlError, IdlErrors
from .idl_model import ParsedFile, parse_idl
from .interface import build_interface
from .reserved import PYTHON_KEYWORDS
from .yaml_loader import load_yaml

__all__ = ["IdlError", "IdlErrors", "LoadedInterface", "load_interfaces"]

_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class LoadedInterface:
    """One checked IDL file: its path as given, its module name, its description and the modules it imports."""

    path: Path
    module: str
    interface: Interface
    imports: tuple[str, ...]


def _expand(paths: Sequence[Path], errors: list[IdlError]) -> list[Path]:
    """The IDL files named: a folder stands for its ``*.yaml`` and ``*.yml`` files, sorted."""
    files: list[Path] = []
    for path in paths:
        if path.is_dir():
            found = sorted(item for item in path.iterdir() if item.suffix in _SUFFIXES and item.is_file())
            if not found:
                errors.append(IdlError(path, None, "no .yaml or .yml files in this folder"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            errors.append(IdlError(path, None, "no such file or folder"))
    return files


def _import_path(importer: Path, name: str) -> Path | None:
    for suffix in _SUFFIXES:
        candidate = importer.parent / f"{name}{suffix}"
        if candidate.is_file():
            return candidate
    return None


class _Loader:
    def __init__(self) -> None:
        self.errors: list[IdlError] = []
        self.files: dict[Path, ParsedFile] = {}  # by resolved path, in the order found
        self.failed: set[Path] = set()
        self.imports: dict[Path, list[Path]] = {}  # resolved importer -> resolved imports, in order

    def read(self, path: Path) -> None:
        """Parse ``path`` and, recursively, the files it imports."""
        key = path.resolve()
        if key in self.files or key in self.failed:
            return
        module = path.stem
        if not module.isidentifier() or module in PYTHON_KEYWORDS:
            self.errors.append(
                IdlError(path, None, f"'{module}' cannot name a Python module; rename the file, e.g. to my_device.yaml")
            )
        try:
            tree = load_yaml(path.read_text(encoding="utf-8"), path)
            parsed = ParsedFile(path, module, tree, parse_idl(tree, path))
        except IdlErrors as exc:
            self.errors.extend(exc.errors)
            self.failed.add(key)
            return
        except (OSError, UnicodeDecodeError) as exc:
            self.errors.append(IdlError(path, None, f"cannot read the file: {exc}"))
            self.failed.add(key)
            return
        self.files[key] = parsed
        self.imports[key] = []
        for index, name in enumerate(parsed.idl.imports):
            self.follow(parsed, key, index, name)

    def follow(self, importer: ParsedFile, key: Path, index: int, name: str) -> None:
        line = importer.tree.line_of(("imports", index))
        target = _import_path(importer.path, name)
        if target is None:
            folder = importer.path.parent
            known = [item.stem for item in folder.iterdir() if item.suffix in _SUFFIXES] if folder.is_dir() else []
            close = difflib.get_close_matches(name, known, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else ""
            message = f"import '{name}' not found: there is no {name}.yaml next to {importer.path.name}{hint}"
            self.errors.append(IdlError(importer.path, line, message))
            return
        if target.resolve() in self.imports[key]:
            self.errors.append(IdlError(importer.path, line, f"'{name}' is imported twice"))
            return
        self.imports[key].append(target.resolve())
        self.read(target)

    def cycles(self) -> set[Path]:
        """Report each import cycle once, at the import that closes it; return the files on cycles."""
        on_cycle: set[Path] = set()
        done: set[Path] = set()

        def visit(key: Path, stack: list[Path]) -> None:
            if key in done:
                return
            stack.append(key)
            for index, target in enumerate(self.imports.get(key, [])):
                if target in stack:
                    loop = stack[stack.index(target) :]
                    on_cycle.update(loop)
                    names = " -> ".join(self.files[item].module for item in [*loop, target])
                    importer = self.files[key]
                    line = importer.tree.line_of(("imports", index))
                    message = f"import cycle {names}; move what they share into a file that both import"
                    self.errors.append(IdlError(importer.path, line, message))
                else:
                    visit(target, stack)
            stack.pop()
            done.add(key)

        for key in self.files:
            visit(key, [])
        return on_cycle

    def closure(self, key: Path) -> Iterator[Path]:
        """The files ``key`` imports, directly or not, depth first, each once (imports must be acyclic)."""
        seen: dict[Path, None] = {}

        def visit(item: Path) -> None:
            for target in self.imports.get(item, []):
                if target not in seen:
                    visit(target)
                    seen.setdefault(target)

        visit(key)
        return iter(seen)

    def check(self, on_cycle: set[Path]) -> None:
        modules: dict[str, ParsedFile] = {}
        for key, parsed in self.files.items():
            other = modules.setdefault(parsed.module, parsed)
            if other is not parsed:
                message = f"module '{parsed.module}' would be generated from both {other.path} and this file"
                self.errors.append(IdlError(parsed.path, None, message + "; rename one"))
            if key in on_cycle:
                continue
            imported = list(self.closure(key))
            if any(item in self.failed or item in on_cycle for item in imported):
                continue
            self.errors.extend(check_file(parsed, [self.files[item] for item in imported]))

    def describe(self) -> list[LoadedInterface]:
        interfaces: dict[Path, Interface] = {}

        def build(key: Path) -> Interface:
            if key not in interfaces:
                imports = [build(item) for item in self.imports[key]]
                interfaces[key] = build_interface(self.files[key].idl, imports)
            return interfaces[key]

        return [
            LoadedInterface(
                path=parsed.path,
                module=parsed.module,
                interface=build(key),
                imports=tuple(self.files[item].module for item in self.imports[key]),
            )
            for key, parsed in self.files.items()
        ]


def load_interfaces(paths: Sequence[Path]) -> list[LoadedInterface]:
    """Load, check and describe the IDL files under ``paths`` (files or folders) and the files they import.

    The result keeps the order the files were found in: the paths as given (a
    folder's files sorted by name), then imported files not named. Raises
    ``IdlErrors`` with every mistake found when there is any.
    """
    loader = _Loader()
    for path in _expand(paths, loader.errors):
        loader.read(path)
    loader.check(loader.cycles())
    if loader.errors:
        raise IdlErrors(loader.errors)
    return loader.describe()
