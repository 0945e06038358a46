"""An interface printed back as IDL (what `zidl describe` shows) loads into the same description."""

from __future__ import annotations

from pathlib import Path

import pytest

from codegen.idl_text import to_idl
from codegen.load import load_interfaces

ROOT = Path(__file__).parent.parent


@pytest.mark.parametrize("name", ["camera", "cnc", "controller"])
def test_printed_idl_loads_back_into_the_same_interface(name: str, tmp_path: Path) -> None:
    (original,) = load_interfaces([ROOT / "idl" / f"{name}.yaml"])
    printed = tmp_path / f"{name}.yaml"
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
