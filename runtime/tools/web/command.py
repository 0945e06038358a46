"""`zidl web`: its arguments, and a one-line answer when the ``web`` extra is missing."""

from __future__ import annotations

import argparse
import importlib.util
from typing import Any

from runtime import CurveClient
from runtime.tools.web import DEFAULT_BIND


class MissingExtra(Exception):
    """The web view's libraries are not installed (reported as one line)."""


def _web(args: argparse.Namespace) -> int:
    if importlib.util.find_spec("starlette") is None or importlib.util.find_spec("uvicorn") is None:
        raise MissingExtra("zidl web needs the web extra: pip install 'zidl[web]'")
    from runtime.tools.web.server import WebView

    curve = None
    if args.server_key is not None or args.key is not None:
        curve = CurveClient(args.server_key, secret_key=args.key)
    view = WebView(bind=args.bind, registry=args.registry, token=args.token, read_only=args.read_only, curve=curve)

    def ready(url: str) -> None:
        mode = " (read-only)" if args.read_only else ""
        print(f"zidl web: serving the registry's devices at {url}{mode}; Ctrl-C stops", flush=True)

    view.serve(ready)
    return 0


def register(commands: Any) -> None:
    """Add `zidl web` to the `zidl` parser's sub-commands."""
    text = "serve the registry's devices to a browser, with an HTTP API (docs/web.md)"
    web: argparse.ArgumentParser = commands.add_parser("web", help=text, description=text)
    web.add_argument(
        "--bind",
        default=DEFAULT_BIND,
        metavar="HOST:PORT",
        help=f"address to serve on (default {DEFAULT_BIND}); any other than the loopback requires a token",
    )
    web.add_argument(
        "--registry", default=None, help="registry address (default: $ZIDL_REGISTRY, else tcp://127.0.0.1:5555)"
    )
    web.add_argument("--read-only", action="store_true", help="allow only reads and subscriptions (403 otherwise)")
    web.add_argument(
        "--token",
        default=None,
        help="require this token on every request (Authorization: Bearer TOKEN or ?token=TOKEN); "
        "off the loopback one is made and printed with the URL when none is given",
    )
    web.add_argument(
        "--server-key", default=None, metavar="KEY", help="CurveZMQ: the registry's public key (Z85 or .key file)"
    )
    web.add_argument(
        "--key",
        default=None,
        metavar="SECRET",
        help="CurveZMQ: the view's own secret key (Z85 or .key_secret file), used towards the registry and devices",
    )
    web.set_defaults(run=_web)
