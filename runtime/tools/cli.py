"""The `zidl` command line: one sub-command a job, a user's mistake as one line and exit status 1.

The device commands (``runtime.tools.devices``) need only the runtime; `generate`
and `check` come from the code generator (``codegen.cli``), whose own dependencies
are imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import enum
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from runtime.errors import RemoteError, ZidlError
from runtime.tools import bridging, devices
from runtime.tools.terminal import printable
from runtime.tools.web import command as web

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zidl",
        description="Typed RPC for devices over ZeroMQ: generate code from IDL files and talk to devices.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", dest="command", required=True)
    from codegen.cli import register  # the code generator's commands: light until one of them runs

    register(commands)
    devices.register(commands)
    bridging.register(commands)
    web.register(commands)
    return parser


def describe_error(exc: ZidlError | ValidationError, args: argparse.Namespace) -> str:
    """One line for an error a device command met, naming what the user typed."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(_problem(error) for error in exc.errors())
        what = "value" if args.command == "set" else "argument"
        return f"{_subject(args)}: invalid {what}: {problems}"
    if isinstance(exc, RemoteError):  # declared or not, the remote exception's type comes first
        text = f"{exc.type}: {exc.message.splitlines()[0]}" if exc.message else exc.type  # one line: the first
        fields = ", ".join(f"{name}={_shown(value)}" for name, value in exc.fields.items())
        return f"{_subject(args)}: {text}" + (f" ({fields})" if fields else "")
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def _shown(value: Any) -> str:
    return repr(value.value if isinstance(value, enum.Enum) else value)


def _subject(args: argparse.Namespace) -> str:
    """What the user typed a failure is about: ``DEVICE METHOD`` or ``DEVICE PROPERTY``."""
    return " ".join(
        str(part) for part in (args.device, getattr(args, "method", None), getattr(args, "property", None)) if part
    )


def _problem(error: ErrorDetails) -> str:
    """One of pydantic's errors: where (an argument's or a field's name), what, and the input it was given."""
    where = ".".join(str(part) for part in error["loc"])
    given = f" (got {error['input']!r})" if "input" in error and not isinstance(error["input"], dict) else ""
    return f"{where + ': ' if where else ''}{error['msg']}{given}"


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except (devices.UsageError, web.MissingExtra) as exc:
        print(printable(f"zidl: {exc}"), file=sys.stderr)
        return 1
    except (ZidlError, ValidationError) as exc:  # a remote error's message is the device's own text
        print(printable(f"zidl: {describe_error(exc, args)}"), file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:  # a key file that is missing or not a key, a folder that cannot be read
        print(printable(f"zidl: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
