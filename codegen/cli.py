"""`zidl generate` and `zidl check`, the code generator's commands on the `zidl` command line (``runtime.tools.cli``).

Their code, and what it needs (PyYAML, jinja2 and ruff: the ``codegen`` extra), is
imported when one of them runs: a device machine without the extra runs the device
commands, and is told in one line what to install for these two.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final

from .errors import IdlErrors
from .usage import UsageError

Command = Callable[[argparse.Namespace], int]

_EXTRA: Final = frozenset({"yaml", "jinja2", "ruff"})
"""The modules of the ``codegen`` extra."""


def _paths(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in args.paths] or [Path("idl")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return paths


def _generate(args: argparse.Namespace) -> int:
    from .generate import generate

    output = generate(_paths(args), Path(args.output), force=args.force)
    for path in output.written:
        print(f"wrote {path}")
    for path in output.removed:
        print(f"removed {path} (its IDL file is gone)")
    if not output.written and not output.removed:
        print(f"{args.output} is up to date")
    return 0


def _check(args: argparse.Namespace) -> int:
    from .load import load_interfaces

    loaded = load_interfaces(_paths(args))
    for item in loaded:
        print(f"{item.path}: {item.interface.name} v{item.interface.version} ok")
    return 0


def _reported(name: str, command: Command) -> Command:
    """``command`` with the IDL's mistakes and the user's reported on stderr (exit 1), and a missing extra named."""

    def run(args: argparse.Namespace) -> int:
        try:
            return command(args)
        except ModuleNotFoundError as exc:
            if (exc.name or "").partition(".")[0] not in _EXTRA:
                raise
            print(f"zidl: {name} needs the code generator ({exc}): pip install 'zidl[codegen]'", file=sys.stderr)
            return 1
        except IdlErrors as exc:
            for error in exc.errors:
                print(error, file=sys.stderr)
            count = len(exc.errors)
            print(f"zidl: {count} error{'s' if count != 1 else ''}, nothing written", file=sys.stderr)
            return 1
        except UsageError as exc:
            print(f"zidl: {exc}", file=sys.stderr)
            return 1

    return run


def register(commands: Any) -> None:
    """Add `generate` and `check` to the `zidl` parser's sub-commands."""
    gen = commands.add_parser(
        "generate",
        help="generate Python modules from IDL files",
        description=(
            "Check IDL files and generate one typed module per file (nothing is written if any has an error)."
            " Only files zidl wrote (their first line is its header) are overwritten, and its modules"
            " whose IDL file is gone are removed."
        ),
    )
    gen.add_argument("paths", nargs="*", metavar="PATH", help="IDL files or folders (default: idl/)")
    gen.add_argument("-o", "--output", default="generated", help="package folder to write (default: generated/)")
    gen.add_argument(
        "--force",
        action="store_true",
        help="overwrite files in the way that zidl did not write (by default they are refused)",
    )
    gen.set_defaults(run=_reported("generate", _generate))

    check = commands.add_parser(
        "check", help="check IDL files, write nothing", description="Check IDL files and report every mistake."
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="IDL files or folders (default: idl/)")
    check.set_defaults(run=_reported("check", _check))
