"""The command-line options every example device takes: where it serves, and where and as what it registers."""

from __future__ import annotations

import argparse
from typing import Any


def device_parser(description: str, name: str) -> argparse.ArgumentParser:
    """A parser with ``--bind``, ``--signals-bind``, ``--name`` (default: ``name``), ``--registry``, ``--advertise``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument(
        "--bind",
        default="tcp://127.0.0.1:0",
        help="address to serve on (default tcp://127.0.0.1:0; tcp://*:5600 for others)",
    )
    parser.add_argument(
        "--signals-bind", default=None, metavar="ADDRESS", help="address to publish signals on (default: a free port)"
    )
    parser.add_argument("--name", default=name, help=f"name to register under (default {name})")
    parser.add_argument(
        "--registry", default=None, help="registry address (default $ZIDL_REGISTRY or tcp://127.0.0.1:5555)"
    )
    parser.add_argument(
        "--advertise", default=None, metavar="HOST", help="host or IP other computers reach this one at"
    )
    return parser


def serving(args: argparse.Namespace) -> dict[str, Any]:
    """The keywords of ``serve()`` the options give (the address is ``args.bind``)."""
    return {
        "registry": args.registry,
        "name": args.name,
        "advertise": args.advertise,
        "signals_bind": args.signals_bind,
    }
