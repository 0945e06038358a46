"""An interface printed back as IDL (what `zidl describe` shows) loads into the same description."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.load import load_interfaces
from codegen.yaml_loader import load_yaml
from runtime.schema.idl_text import to_idl, yaml_text

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize(
    "path", ["idl/camera.yaml", "idl/cnc.yaml", "idl/controller.yaml", "tests/fixtures/idl/streams.yaml"]
)
def test_printed_idl_loads_back_into_the_same_interface(path: str, tmp_path: Path) -> None:
    (original,) = load_interfaces([ROOT / path])
    printed = tmp_path / Path(path).name
    printed.write_text(to_idl(original.interface))
    (reloaded,) = load_interfaces([printed])
    assert reloaded.interface == original.interface
    assert reloaded.interface.hash == original.interface.hash


def test_printed_idl_inlines_imported_declarations(tmp_path: Path) -> None:
    (tmp_path / "common.yaml").write_text("interface: Common\nversion: 1\nenums:\n  Colour: [red, green]\n")
    (tmp_path / "lamp.yaml").write_text(
        "interface: Lamp\nversion: 1\nimports: [common]\nproperties:\n  colour: {type: Colour, default: red}\n"
    )
    lamp = next(item for item in load_interfaces([tmp_path]) if item.module == "lamp")
    alone = tmp_path / "alone"
    alone.mkdir()
    (alone / "lamp.yaml").write_text(to_idl(lamp.interface))
    (reloaded,) = load_interfaces([alone / "lamp.yaml"])
    assert reloaded.interface.to_dict() == lamp.interface.to_dict()


TRICKY = [
    "",
    " leading",
    "trailing ",
    "true",
    "False",
    "null",
    "~",
    "1",
    "-2",
    "1.0",
    "1e3",
    ".inf",
    "0x1f",
    "0o17",
    "yes",
    "a: b",
    "a:b",
    "ends:",
    "a #comment",
    "#hash",
    "- dash",
    "[list]",
    "{map}",
    "x, y",
    "'quoted'",
    '"double"',
    "back\\slash",
    "line\nbreak",
    "tab\there",
    "del\x7f",
    "nel\x85",
    "ls\u2028ps\u2029",
    "bom\ufeff",
    "caf\u00e9",
    "emoji \U0001f600",
    "*alias",
    "&anchor",
    "!tag",
    "%directive",
    "@at",
    "`tick",
    "? key",
    "| pipe",
    "> fold",
    "---",
    "...",
    "tuple[int, int]",
]


@pytest.mark.parametrize("text", TRICKY)
def test_printed_strings_read_back_as_themselves(text: str) -> None:
    value = {"name": text, text or "empty": [text, {text or "k": text}], "nested": {"doc": text}}
    printed = yaml_text(value)
    assert load_yaml(printed, Path("x.yaml")).plain() == value, printed


def test_printed_values_read_back_as_the_same_values() -> None:
    value = {
        "numbers": [0, -1, 10**20, 1.0, -0.5, 1e-05, 1.5e300, float("inf"), float("-inf")],
        "others": [None, True, False, [], {}, [[1, "a"], {"k": [2]}]],
        "empty": {},
        "deep": {"a": {"b": {"c": None}}},
    }
    assert load_yaml(yaml_text(value), Path("x.yaml")).plain() == value
