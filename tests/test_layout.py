"""The runtime's shape: wings whose arrows point down, small modules, and underscores that mean private."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).parent.parent
WINGS_BELOW = {
    "errors": set(),
    "schema": {"errors"},
    "transport": {"errors"},
    "protocol": {"errors", "schema"},
    "registry": {"errors", "schema", "transport", "protocol"},
    "client": {"errors", "schema", "transport", "protocol", "registry"},
    "server": {"errors", "schema", "transport", "protocol", "registry"},
    "bridge": {"errors", "schema", "transport", "protocol", "registry", "server"},
}
"""What each wing may import (besides itself); the tools and ``runtime/__init__.py`` sit on top of them all."""


def _modules(*folders: str) -> dict[str, Path]:
    found = {}
    for folder in folders:
        for path in (ROOT / folder).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
            found[name] = path
    return found


def _imports(path: Path) -> Iterator[tuple[str, list[str]]]:
    """Every absolute import in ``path``, at any depth (imports inside functions too): module, names."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            yield node.module, [alias.name for alias in node.names]
        elif isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []


def test_no_import_cycle_in_the_runtime_or_the_generator() -> None:
    modules = _modules("runtime", "codegen")
    graph = {name: set() for name in modules}
    for name, path in modules.items():
        for module, names in _imports(path):
            targets = [f"{module}.{each}" for each in names if f"{module}.{each}" in modules] or [module]
            graph[name].update(target for target in targets if target in modules and target != name)
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, "import cycle: " + " -> ".join([*visiting[visiting.index(name) :], name])
        if name in done:
            return
        visiting.append(name)
        for target in sorted(graph[name]):
            if target != "runtime":  # the public surface re-exports; a module importing it is a tool on top
                visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


def test_each_wing_imports_only_the_wings_below_it() -> None:
    for name, path in _modules("runtime").items():
        parts = name.split(".")
        wing = parts[1] if len(parts) > 1 else None
        if wing not in WINGS_BELOW:
            continue
        for module, _ in _imports(path):
            if module.startswith("runtime."):
                target = module.split(".")[1]
                assert target == wing or target in WINGS_BELOW[wing], f"{name} imports {module}: an arrow up"


def test_no_runtime_module_is_longer_than_400_lines() -> None:
    long = {name: n for name, path in _modules("runtime").items() if (n := len(path.read_text().splitlines())) > 400}
    assert long == {}


def test_nothing_outside_the_runtime_imports_its_private_names() -> None:
    for name, path in _modules("codegen", "generated", "examples", "bench", "tests").items():
        for module, names in _imports(path):
            if module == "runtime" or module.startswith("runtime."):
                private = [part for part in [*module.split("."), *names] if part.startswith("_")]
                assert not private, f"{name} imports {private} from {module}"
