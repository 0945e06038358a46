"""`zidl bridge`: serve the devices of one registry to the clients of another, from a host on both networks."""

from __future__ import annotations

import argparse
from typing import Any

from runtime import Bridge, CurveClient, CurveServer
from runtime.tools.devices import UsageError


def _bridge(args: argparse.Namespace) -> int:
    if args.key is None and (args.allowed is not None or args.allow_any_key):
        raise UsageError("--allowed and --allow-any-key go with --key, the bridge's own secret key")
    if args.allowed is not None and args.allow_any_key:
        raise UsageError("give --allowed DIR or --allow-any-key, not both")
    try:
        curve = None
        if args.allowed is not None or args.allow_any_key:
            curve = CurveServer(args.key, allowed=args.allowed, allow_any=args.allow_any_key)
        registry_curve = None
        if args.key is not None or args.server_key is not None:
            registry_curve = CurveClient(args.server_key, secret_key=args.key)
        to_curve = None
        if args.to_server_key is not None:
            to_curve = CurveClient(args.to_server_key, secret_key=args.key)
        bridge = Bridge(
            args.registry,
            args.to,
            bind=args.bind,
            only=args.only,
            curve=curve,
            registry_curve=registry_curve,
            to_curve=to_curve,
        )
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    bridge.serve()
    return 0


def register(commands: Any) -> None:
    """Add `zidl bridge` to the `zidl` parser's sub-commands."""
    text = (
        "Register every device of registry A (or those named) in registry B under the same name, at an address "
        "of this host, and pass everything through: calls, properties, signals, streams. Runs until Ctrl-C."
    )
    bridge: argparse.ArgumentParser = commands.add_parser(
        "bridge", help="serve registry A's devices to B's side", description=text
    )
    bridge.add_argument(
        "--registry",
        default=None,
        metavar="A",
        help="the devices' registry (default: $ZIDL_REGISTRY, else tcp://127.0.0.1:5555)",
    )
    bridge.add_argument("--to", required=True, metavar="B", help="the registry of the other network's clients")
    bridge.add_argument(
        "--bind",
        default="tcp://*:0",
        metavar="ADDRESS",
        help="where B's side reaches the devices: tcp://HOST:0, each device on free ports of HOST (default tcp://*:0)",
    )
    bridge.add_argument("--only", nargs="+", default=None, metavar="NAME", help="bridge only these devices")
    bridge.add_argument(
        "--key",
        default=None,
        metavar="SECRET",
        help="CurveZMQ: the bridge's own secret key (.key_secret file), both sides",
    )
    bridge.add_argument(
        "--server-key", default=None, metavar="KEY", help="CurveZMQ: registry A's public key (Z85 or .key file)"
    )
    bridge.add_argument(
        "--to-server-key", default=None, metavar="KEY", help="CurveZMQ: registry B's public key (Z85 or .key file)"
    )
    bridge.add_argument(
        "--allowed", default=None, metavar="DIR", help="CurveZMQ on B's side: folder of the public keys of B's clients"
    )
    bridge.add_argument(
        "--allow-any-key", action="store_true", help="CurveZMQ on B's side without --allowed: any client key"
    )
    bridge.set_defaults(run=_bridge)
