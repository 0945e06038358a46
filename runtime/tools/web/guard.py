"""Who may use the web view, checked before any route runs: the token, read-only, the Host and the Origin.

- With a token, every request and WebSocket carries it: ``Authorization: Bearer
  TOKEN`` or ``?token=TOKEN`` (401 otherwise).
- Read-only allows reads and subscriptions: a ``PUT`` or ``POST``, and a stream
  method's WebSocket (a call), get a 403.
- A WebSocket, and any request that is not a ``GET``, whose ``Origin`` is another
  site's is refused (403): a page elsewhere cannot drive the rig through the
  browser of someone who has the view open.
- Without a token (bound to the loopback), the ``Host`` must be a loopback name:
  a site whose DNS name is made to point at 127.0.0.1 (DNS rebinding) is refused.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any
from urllib.parse import parse_qs, urlsplit

from starlette.datastructures import Headers
from starlette.responses import JSONResponse

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

LOOPBACK_NAMES = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})


def _host_name(host: str) -> str:
    return urlsplit(f"//{host}").hostname or ""


def _is_call_socket(path: str) -> bool:
    parts = path.strip("/").split("/")
    return len(parts) == 5 and parts[:2] == ["api", "devices"] and parts[3] == "methods"


class Guard:
    """The ASGI middleware that applies the rules above, then hands the request to ``app``."""

    def __init__(self, app: App, *, token: str | None, read_only: bool) -> None:
        self.app = app
        self.token = token
        self.read_only = read_only

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
            return
        status, kind, message = refusal
        response = JSONResponse({"error": {"type": kind, "message": message}}, status_code=status)
        if status == 401:
            response.headers["WWW-Authenticate"] = "Bearer"
        if scope["type"] == "websocket":
            await receive()  # the websocket.connect message, then the denial as an HTTP response
            await send({"type": "websocket.http.response.start", "status": status, "headers": response.raw_headers})
            await send({"type": "websocket.http.response.body", "body": response.body})
            return
        await response(scope, receive, send)

    def _refusal(self, scope: Scope) -> tuple[int, str, str] | None:
        headers = Headers(scope=scope)
        websocket = scope["type"] == "websocket"
        method = "GET" if websocket else scope["method"]
        if self.token is None and _host_name(headers.get("host", "")) not in LOOPBACK_NAMES:
            return 403, "Forbidden", "this view serves the loopback only; a name other than localhost needs --token"
        if self.token is not None and not _authorised(scope, headers, self.token):
            return 401, "Unauthorized", "a token is needed: Authorization: Bearer TOKEN, or ?token=TOKEN"
        origin = headers.get("origin")
        if (websocket or method not in ("GET", "HEAD")) and origin is not None:
            scheme = "https" if scope.get("scheme") in ("https", "wss") else "http"
            if origin != f"{scheme}://{headers.get('host', '')}":
                return 403, "Forbidden", f"requests from the page of another site ({origin}) are refused"
        if self.read_only and (
            method in ("PUT", "POST", "DELETE", "PATCH") or (websocket and _is_call_socket(scope["path"]))
        ):
            return 403, "ReadOnly", "this view is read-only: it reads properties and follows signals, and calls nothing"
        return None


def _authorised(scope: Scope, headers: Headers, token: str) -> bool:
    scheme, _, credentials = headers.get("authorization", "").partition(" ")
    if scheme.lower() == "bearer":
        given = credentials.strip()
    else:
        given = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("token", [""])[0]
    return hmac.compare_digest(given.encode(), token.encode())
