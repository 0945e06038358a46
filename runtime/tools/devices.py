"""The `zidl` commands that talk to devices: registry, ls, describe, call, get, set, watch; and keygen.

They need no generated code and no code generator: a device describes its
interface in the handshake (as grpcurl uses reflection), and the public dynamic
client (``Client.call``, ``get``, ``set``, ``signal``) validates arguments against
that description before they are sent. A DEVICE is a registered name or an address.
Whatever came from the network is printed through ``runtime.tools.terminal.printable``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import logging
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel

from runtime import (
    Client,
    CurveClient,
    CurveServer,
    DeviceNotFound,
    DeviceRecord,
    Registry,
    RegistryUnavailable,
    Stream,
    list_devices,
    watch,
    write_keypair,
)
from runtime.registry import lookup
from runtime.schema.idl_text import to_idl
from runtime.tools.terminal import printable, printable_lines
from runtime.transport.addresses import endpoint

CONNECT_TIMEOUT = 3.0
REGISTRY_TIMEOUT = 2.0
"""Seconds every command that needs the registry waits for it before it says none answered."""


class UsageError(Exception):
    """A mistake on the command line, reported as one line with no traceback."""


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _value(text: str) -> Any:
    """A command-line value: JSON when it parses as strict JSON (``NaN`` does not), else the string itself."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except ValueError:
        return text


def _assignments(items: list[str]) -> dict[str, Any]:
    args: dict[str, Any] = {}
    for item in items:
        name, equals, text = item.partition("=")
        if not equals or not name:
            raise UsageError(f"expected ARG=VALUE, not {item!r}")
        args[name] = _value(text)
    return args


def _curve(args: argparse.Namespace) -> CurveClient | None:
    """CurveZMQ towards the registry (a DEVICE given by name) or the device (given by address), if asked for."""
    if args.server_key is None and args.key is None:
        return None
    return CurveClient(args.server_key, secret_key=args.key)


def _connect(args: argparse.Namespace) -> Client:
    """The device named or addressed by DEVICE: an address has a ``://`` or a ``:`` (which no name has)."""
    if ":" in args.device:
        return Client.connect(endpoint(args.device), timeout=CONNECT_TIMEOUT, curve=_curve(args))
    try:  # the registry asked first on its own, so that it fails within the same time for every command
        lookup(args.device, registry=args.registry, timeout=REGISTRY_TIMEOUT, curve=_curve(args))
    except DeviceNotFound as exc:
        names = [device.name for device in list_devices(registry=args.registry, curve=_curve(args))]
        close = difflib.get_close_matches(args.device, names, n=1)
        if close:
            raise DeviceNotFound(f"{exc}; did you mean '{close[0]}'?") from None
        registered = f"the registered devices: {', '.join(sorted(names))}" if names else "no device is registered"
        raise DeviceNotFound(f"{exc} ({registered})") from None
    return Client.lookup(args.device, registry=args.registry, timeout=CONNECT_TIMEOUT, curve=_curve(args))


def _plain(value: Any, output: Path | None = None) -> Any:
    """A JSON-friendly form of a result: bytes and arrays summarised (or bytes saved to ``output``)."""
    if isinstance(value, BaseModel):
        return {name: _plain(getattr(value, name), output) for name in type(value).model_fields}
    if isinstance(value, bytes | bytearray | memoryview):
        if output is not None:
            output.write_bytes(value)
            return f"<{len(value)} bytes written to {output}>"
        return f"<{len(value)} bytes>"
    if isinstance(value, np.ndarray):
        return f"<ndarray dtype={value.dtype} shape={tuple(value.shape)}>"
    if isinstance(value, dict):
        return {key: _plain(item, output) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item, output) for item in value]
    if hasattr(value, "value") and hasattr(value, "name"):  # an enum member
        return value.value
    return value


def _show(value: Any, *, as_json: bool, output: Path | None = None) -> None:
    plain = _plain(value, output)
    if as_json or not isinstance(plain, str):
        print(json.dumps(plain, indent=None if as_json else 2, allow_nan=False))  # ASCII: nothing to escape
    else:
        print(printable(plain))


def _keygen(args: argparse.Namespace) -> int:
    try:
        public, secret = write_keypair(args.output, args.name)
    except OSError as exc:  # FileExistsError included: never overwrite a key
        raise UsageError(str(exc)) from None
    print(f"public key: {public} (give it to the peers that must accept this one)")
    print(f"secret key: {secret} (keep it private)")
    return 0


def _registry_cmd(args: argparse.Namespace) -> int:
    curve = None
    if args.secret_key is None and (args.allowed is not None or args.allow_any_key):
        raise UsageError("--allowed and --allow-any-key go with --secret-key (Curve is off without it)")
    if args.secret_key is not None:
        if (args.allowed is None) == (not args.allow_any_key):
            raise UsageError(
                "with --secret-key, give --allowed DIR (a key from NAME.key may register NAME), "
                "or --allow-any-key to let any key register any name"
            )
        try:
            curve = CurveServer(args.secret_key, allowed=args.allowed, allow_any=args.allow_any_key)
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if not (args.ttl > 0 and args.max_devices > 0):
        raise UsageError("--ttl and --max-devices must be positive")
    events, heartbeats = (None if bind is None else endpoint(bind) for bind in (args.events_bind, args.heartbeats_bind))
    registry = Registry(
        ttl=args.ttl, curve=curve, max_devices=args.max_devices, events_bind=events, heartbeats_bind=heartbeats
    )
    _say_what_it_does()
    registry.serve(endpoint(args.bind))
    return 0


def _say_what_it_does() -> None:
    """The registry's log, from where it serves on, to stderr: its INFO lines are what an operator wants to see."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("zidl: %(message)s"))
    logger = logging.getLogger("runtime.registry.server")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _ls(args: argparse.Namespace) -> int:
    devices = list_devices(registry=args.registry, interface=args.interface, curve=_curve(args))
    if args.json:
        print(json.dumps([_record(device) for device in devices], indent=2, allow_nan=False))
        return 0
    table = [("NAME", "INTERFACE", "VERSION", "ADDRESS", "LAST HEARTBEAT")] + [
        (d.name, d.interface, str(d.version), d.address, f"{d.last_heartbeat:.1f} s ago") for d in devices
    ]
    rows = [tuple(printable(cell) for cell in row) for row in table]  # a stranger's registration is printed
    widths = [max(len(row[column]) for row in rows) for column in range(5)]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _record(device: DeviceRecord) -> dict[str, Any]:
    return {
        "name": device.name,
        "interface": device.interface,
        "version": device.version,
        "address": device.address,
        "last_heartbeat": device.last_heartbeat,
    }


def _describe(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        print(printable_lines(to_idl(client.interface)), end="")
    return 0


def _call(args: argparse.Namespace) -> int:
    """Call a method; a stream's items are printed as they come. Ctrl-C cancels the call on the device (the client
    tells it before the ``KeyboardInterrupt`` goes on), and ``main`` exits 130."""
    arguments = _assignments(args.args)
    with _connect(args) as client:
        if args.timeout is None:
            result = client.call(args.method, **arguments)
        else:
            result = client.call(args.method, timeout=args.timeout, **arguments)
        method = client.interface.find_method(args.method)
        if isinstance(result, Stream):
            with result:
                _items(result, as_json=args.json, folder=args.output)
                result = result.result()
        if method is not None and not method.oneway and method.return_type != "none":
            _show(result, as_json=args.json, output=None if method.stream else args.output)
    return 0


_SUFFIXES = ((b"\xff\xd8\xff", ".jpg"), (b"\x89PNG\r\n\x1a\n", ".png"))


def _items(stream: Stream[Any, Any], *, as_json: bool, folder: Path | None) -> None:
    """Print each item on a line of its own as it comes; with ``folder``, save ``bytes`` items as numbered files."""
    if folder is not None:
        folder.mkdir(parents=True, exist_ok=True)
    for number, item in enumerate(stream, start=1):
        if folder is not None and isinstance(item, bytes):
            suffix = next((suffix for magic, suffix in _SUFFIXES if item.startswith(magic)), ".bin")
            path = folder / f"{number:06d}{suffix}"
            path.write_bytes(item)
            plain: Any = f"<{len(item)} bytes written to {path}>"
        else:
            plain = _plain(item)
        line = json.dumps(plain, allow_nan=False) if as_json or not isinstance(plain, str) else printable(plain)
        print(line, flush=True)


def _get(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        _show(client.get(args.property), as_json=args.json)
    return 0


def _set(args: argparse.Namespace) -> int:
    with _connect(args) as client:
        client.set(args.property, _value(args.value))
    return 0


def _watch(args: argparse.Namespace) -> int:
    stop = threading.Event()
    if args.device is None:

        def on_change(change: str, device: DeviceRecord) -> None:
            stamp = time.strftime("%H:%M:%S")
            where = f"{device.interface} v{device.version} {device.address}"
            print(printable(f"{stamp} {change:<7} {device.name} {where}"), flush=True)

        watcher = watch(on_change, registry=args.registry, timeout=REGISTRY_TIMEOUT, curve=_curve(args))
        try:
            if not watcher.ready.wait(REGISTRY_TIMEOUT):  # as `zidl ls` fails, rather than wait for ever
                raise RegistryUnavailable(f"no registry answered at {watcher.url} within {REGISTRY_TIMEOUT:g} s")
            stop.wait()
        finally:
            watcher.close()
        return 0
    with _connect(args) as client:
        names = args.signals or [signal.name for signal in client.interface.signals]
        signals = [client.signal(name) for name in names]  # every name checked before any is watched

        def printer(name: str) -> Any:
            def show(*values: Any) -> None:
                rendered = " ".join(json.dumps(_plain(value), allow_nan=False) for value in values)
                print(printable(f"{time.strftime('%H:%M:%S')} {name} {rendered}"), flush=True)

            return show

        for signal in signals:
            signal.connect(printer(signal.name))
        print(printable(f"watching {', '.join(names)} on {args.device}; Ctrl-C stops"), file=sys.stderr)
        stop.wait()
    return 0


def register(commands: Any) -> None:
    """Add the device commands to the `zidl` parser's sub-commands."""

    def device_command(name: str, help_text: str) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = commands.add_parser(name, help=help_text, description=help_text)
        parser.add_argument(
            "--registry", default=None, help="registry address (default: $ZIDL_REGISTRY, else tcp://127.0.0.1:5555)"
        )
        parser.add_argument(
            "--server-key",
            default=None,
            metavar="KEY",
            help="CurveZMQ: the public key (Z85 or .key file) of the registry, or of the device given by address",
        )
        parser.add_argument(
            "--key", default=None, metavar="SECRET", help="CurveZMQ: your own secret key (Z85 or .key_secret file)"
        )
        return parser

    keygen = commands.add_parser(
        "keygen",
        help="write a CurveZMQ key pair",
        description="Write a CurveZMQ key pair as ZeroMQ certificates: DIR/NAME.key (public, to share) and "
        "DIR/NAME.key_secret (both keys, mode 0600, to keep). Existing files are never overwritten.",
    )
    keygen.add_argument("-o", "--output", type=Path, default=Path("."), help="folder to write to (default: .)")
    keygen.add_argument("--name", default="zidl", help="file name without extension (default: zidl)")
    keygen.set_defaults(run=_keygen)

    registry = commands.add_parser("registry", help="run a device registry", description="Run a device registry.")
    registry.add_argument(
        "--bind",
        default="tcp://127.0.0.1:5555",
        help="address to serve requests on (default tcp://127.0.0.1:5555; tcp://*:5555 for other hosts)",
    )
    registry.add_argument(
        "--events-bind",
        default=None,
        metavar="ADDRESS",
        help="address of the change events (PUB) for `watch` (default: a free port on --bind's host)",
    )
    registry.add_argument(
        "--heartbeats-bind",
        default=None,
        metavar="ADDRESS",
        help="address the devices' heartbeats go to (default: a free port on --bind's host)",
    )
    registry.add_argument(
        "--ttl", type=float, default=3.0, help="the longest lease: seconds a device stays registered unheard"
    )
    registry.add_argument("--max-devices", type=int, default=10_000, help="devices registered at most (default 10000)")
    registry.add_argument(
        "--secret-key", default=None, metavar="SECRET", help="CurveZMQ: the registry's secret key (.key_secret file)"
    )
    registry.add_argument(
        "--allowed",
        default=None,
        metavar="DIR",
        help="CurveZMQ: folder of allowed client public keys; a key from NAME.key may register NAME (and NAME-N)",
    )
    registry.add_argument(
        "--allow-any-key", action="store_true", help="CurveZMQ without --allowed: any key may register any name"
    )
    registry.set_defaults(run=_registry_cmd)

    ls = device_command("ls", "list the registered devices")
    ls.add_argument("--interface", default=None, help="only devices of this interface")
    ls.add_argument("--json", action="store_true", help="print a JSON list")
    ls.set_defaults(run=_ls)

    describe = device_command("describe", "print a device's interface as an IDL file")
    describe.add_argument("device", metavar="DEVICE", help="a registered name or an address")
    describe.set_defaults(run=_describe)

    call = device_command(
        "call", "call a method of a device; a stream's items are printed as they come, Ctrl-C cancels on the device"
    )
    call.add_argument("device", metavar="DEVICE", help="a registered name or an address")
    call.add_argument("method", metavar="METHOD")
    call.add_argument(
        "args", nargs="*", metavar="ARG=VALUE", help="arguments; a VALUE is JSON if it parses, else a string"
    )
    call.add_argument(
        "-o",
        "--output",
        type=Path,
        default=None,
        help="write a bytes result to this file; of a stream, save its bytes items as numbered files in this folder",
    )
    call.add_argument("--json", action="store_true", help="print the result as JSON (a stream: a JSON line an item)")
    call.add_argument(
        "--timeout", type=float, default=None, help="seconds to wait (of a stream: for each item; default: its own)"
    )
    call.set_defaults(run=_call)

    get = device_command("get", "read a property of a device")
    get.add_argument("device", metavar="DEVICE", help="a registered name or an address")
    get.add_argument("property", metavar="PROPERTY")
    get.add_argument("--json", action="store_true", help="print the value as JSON")
    get.set_defaults(run=_get)

    set_ = device_command("set", "write a property of a device")
    set_.add_argument("device", metavar="DEVICE", help="a registered name or an address")
    set_.add_argument("property", metavar="PROPERTY")
    set_.add_argument("value", metavar="VALUE", help="JSON if it parses, else a string")
    set_.set_defaults(run=_set)

    watch_ = device_command("watch", "print a device's signals, or devices coming and going, until Ctrl-C")
    watch_.add_argument("device", metavar="DEVICE", nargs="?", default=None, help="a registered name or an address")
    watch_.add_argument("signals", metavar="SIGNAL", nargs="*", help="signals to print (default: all)")
    watch_.set_defaults(run=_watch)
