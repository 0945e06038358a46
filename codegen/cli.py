"""The `zidl` command line: one sub-command a job, user mistakes as one line and exit 1."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from pydantic import ValidationError

from runtime import ZidlError
from runtime.tools import cli as device_cli

from .generate import generate
from .load import IdlErrors, load_interfaces
from .usage import UsageError

Command = Callable[[argparse.Namespace], int]


def _paths(args: argparse.Namespace) -> list[Path]:
    paths = [Path(p) for p in args.paths] or [Path("idl")]
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UsageError(f"no such file or folder: {', '.join(missing)}")
    return paths


def _generate(args: argparse.Namespace) -> int:
    written = generate(_paths(args), Path(args.output))
    for path in written:
        print(f"wrote {path}")
    if not written:
        print(f"{args.output} is up to date")
    return 0


def _check(args: argparse.Namespace) -> int:
    loaded = load_interfaces(_paths(args))
    for item in loaded:
        print(f"{item.path}: {item.interface.name} v{item.interface.version} ok")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zidl",
        description="Typed RPC for devices over ZeroMQ: generate code from IDL files and talk to devices.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)

    gen = commands.add_parser(
        "generate",
        help="generate Python modules from IDL files",
        description="Check IDL files and generate one typed module per file (nothing is written if any has an error).",
    )
    gen.add_argument("paths", nargs="*", metavar="PATH", help="IDL files or folders (default: idl/)")
    gen.add_argument("-o", "--output", default="generated", help="package folder to write (default: generated/)")
    gen.set_defaults(run=_generate)

    check = commands.add_parser(
        "check", help="check IDL files, write nothing", description="Check IDL files and report every mistake."
    )
    check.add_argument("paths", nargs="*", metavar="PATH", help="IDL files or folders (default: idl/)")
    check.set_defaults(run=_check)

    device_cli.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except IdlErrors as exc:
        for error in exc.errors:
            print(error, file=sys.stderr)
        count = len(exc.errors)
        print(f"zidl: {count} error{'s' if count != 1 else ''}, nothing written", file=sys.stderr)
        return 1
    except UsageError as exc:
        print(f"zidl: {exc}", file=sys.stderr)
        return 1
    except (ZidlError, ValidationError) as exc:
        print(f"zidl: {device_cli.describe_error(exc)}", file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:  # a key file that is missing or not a key, a folder that cannot be read
        print(f"zidl: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
