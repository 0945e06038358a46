"""The `zidl` command line: one sub-command a job, a user's mistake as one line and exit status 1.

The device commands (``runtime.tools.devices``) need only the runtime; `generate`
and `check` come from the code generator (``codegen.cli``), whose own dependencies
are imported only when one of them runs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from pydantic import ValidationError

from runtime.errors import ZidlError
from runtime.tools import bridging, devices
from runtime.tools.terminal import printable
from runtime.tools.web import command as web

Command = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="zidl",
        description="Typed RPC for devices over ZeroMQ: generate code from IDL files and talk to devices.",
    )
    commands = parser.add_subparsers(title="commands", metavar="COMMAND", required=True)
    from codegen.cli import register  # the code generator's commands: light until one of them runs

    register(commands)
    devices.register(commands)
    bridging.register(commands)
    web.register(commands)
    return parser


def describe_error(exc: ZidlError | ValidationError) -> str:
    """One line for an error a device command met."""
    if isinstance(exc, ValidationError):
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc']) or 'value'}: {error['msg']}" for error in exc.errors()
        )
        return f"invalid value: {problems}"
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except (devices.UsageError, web.MissingExtra) as exc:
        print(printable(f"zidl: {exc}"), file=sys.stderr)
        return 1
    except (ZidlError, ValidationError) as exc:  # a remote error's message is the device's own text
        print(printable(f"zidl: {describe_error(exc)}"), file=sys.stderr)
        return 1
    except (ValueError, OSError) as exc:  # a key file that is missing or not a key, a folder that cannot be read
        print(printable(f"zidl: {exc}"), file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
