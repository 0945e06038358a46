"""The web view (``zidl web``): a registry's devices in a browser, and an HTTP API for every other tool.

Built on the public dynamic client (``runtime.AsyncClient``) and the registry's
watcher, so it serves any device from the description it gives in its handshake,
with no generated code. ``runtime.tools.web.server.WebView`` is the view; it needs
the ``web`` extra (Starlette, uvicorn, websockets), which this package's ``command``
(the `zidl web` parser) does not import until the view runs.
"""

DEFAULT_BIND = "127.0.0.1:8000"
"""Where `zidl web` serves unless told otherwise: the loopback, where no token is needed."""
