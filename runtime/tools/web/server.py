"""``WebView``: the web view's ASGI application, served by uvicorn on a socket of its own.

``serve()`` blocks until Ctrl-C or SIGTERM (``zidl web``); ``running()`` serves in
a background thread for the duration of a ``with`` block (tests, benchmarks, the
demo rig). The page and its scripts are package data (``static/``), served as
they are: no build step, nothing fetched from elsewhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import secrets
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from runtime import CurveClient, Interface
from runtime.tools.web import DEFAULT_BIND, http_api, sockets
from runtime.tools.web.book import DeviceBook
from runtime.tools.web.guard import LOOPBACK_NAMES, Guard
from runtime.tools.web.openapi import document

STATIC = Path(__file__).parent / "static"
STARTUP_TIMEOUT = 30.0
"""Seconds ``running()`` waits for the view to serve (its first list of the registry's devices included)."""


def split_bind(bind: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as host and port; ``ValueError`` for anything else."""
    host, colon, port = bind.rpartition(":")
    host = host.removeprefix("[").removesuffix("]")
    if not colon or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--bind takes HOST:PORT, such as 127.0.0.1:8000, not {bind!r}")
    return host, int(port)


def is_loopback(host: str) -> bool:
    if host in LOOPBACK_NAMES:
        return True
    with contextlib.suppress(ValueError):
        return ipaddress.ip_address(host).is_loopback
    return False


class WebView:
    """A registry's devices in a browser and over HTTP (``docs/web.md``).

    On an address other than the loopback a token is required; one is made when
    none is given (``token``, and in ``url``). ``curve`` is the view's own CurveZMQ
    key pair, with the registry's public key as its server key; devices found
    through the registry are reached with the same key pair.
    """

    def __init__(
        self,
        *,
        bind: str = DEFAULT_BIND,
        registry: str | None = None,
        token: str | None = None,
        read_only: bool = False,
        curve: CurveClient | None = None,
    ) -> None:
        self.host, self.port = split_bind(bind)
        if token is None and not is_loopback(self.host):
            token = secrets.token_urlsafe(24)
        self.token = token
        self.read_only = read_only
        self.registry = registry
        self.curve = curve

    @property
    def url(self) -> str:
        """The page's address (with the token, when there is one); the port is the bound one once serving."""
        host = socket.gethostname() if self.host in ("0.0.0.0", "::") else self.host
        host = f"[{host}]" if ":" in host else host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def app(self, ready: Callable[[], None] | None = None) -> Guard:
        """The ASGI application; ``ready`` is called once it has the registry's first list."""
        book = DeviceBook(registry=self.registry, curve=self.curve)

        @contextlib.asynccontextmanager
        async def lifespan(app: Starlette) -> AsyncIterator[None]:
            await book.start()
            if ready is not None:
                ready()
            yield
            await book.close()

        async def index(request: Request) -> Response:
            return FileResponse(STATIC / "index.html", headers={"Cache-Control": "no-store"})

        async def openapi(request: Request) -> Response:
            names = [record.name for record in book.records()]
            clients = await asyncio.gather(*(book.client(name) for name in names), return_exceptions=True)
            described: dict[str, Interface] = {
                name: client.interface
                for name, client in zip(names, clients, strict=True)
                if not isinstance(client, BaseException)
            }
            return JSONResponse(document(described))

        routes = [
            Route("/", index),
            Route("/api/openapi.json", openapi),
            *http_api.routes(book),
            *sockets.routes(book),
            Mount("/static", StaticFiles(directory=STATIC)),
        ]
        return Guard(Starlette(routes=routes, lifespan=lifespan), token=self.token, read_only=self.read_only)

    def serve(self, ready: Callable[[str], None] | None = None) -> None:
        """Serve until Ctrl-C or SIGTERM; ``ready(url)`` once serving."""
        listening = self._listen()
        server = uvicorn.Server(self._config(lambda: ready(self.url) if ready is not None else None))
        server.run(sockets=[listening])

    @contextlib.contextmanager
    def running(self) -> Iterator[str]:
        """Serve in a background thread for the duration of the block; yields ``url``."""
        listening = self._listen()
        started = threading.Event()
        server = uvicorn.Server(self._config(started.set))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[listening])), name="zidl-web")
        thread.start()
        try:
            while not started.wait(0.05):
                if not thread.is_alive():
                    raise RuntimeError(f"the web view on {self.host}:{self.port} did not start (see its log)")
            yield self.url
        finally:
            server.should_exit = True
            thread.join()
            listening.close()

    def _listen(self) -> socket.socket:
        """Bind and listen now: the port is known (``url``) and connections wait in the backlog until serving."""
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # IPPROTO_TCP named: asyncio sets TCP_NODELAY only on accepted sockets whose proto says TCP (else 40 ms a reply)
        listening = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # a response of up to 1 MiB (an image) leaves in one send, not a send per drained 16 KiB; Linux doubles
        # it to 2 MiB, still under what its autotuning lets a bulk connection reach
        listening.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        try:
            listening.bind((self.host, self.port))
            listening.listen(128)
        except OSError:
            listening.close()
            raise
        self.port = listening.getsockname()[1]
        return listening

    def _config(self, ready: Callable[[], None]) -> uvicorn.Config:
        return uvicorn.Config(
            self.app(ready),
            log_level="warning",
            access_log=False,
            lifespan="on",
            ws="websockets-sansio",
            timeout_graceful_shutdown=2,
        )
