"""Every message kind and header field of the protocol, named once (``docs/protocol.md``, ``docs/registry.md``).

The header of a device message and of a registry message is a JSON object; these
are its keys and the values of its kind ``k``. Nothing outside ``runtime.protocol``
spells them.
"""

from __future__ import annotations

from typing import Final

VERSION: Final = 1
"""The one protocol version, the ``v`` of every header (devices and the registry alike)."""

# --- header fields ------------------------------------------------------------------------------

V: Final = "v"
"""The protocol version."""
ID: Final = "id"
"""The request id chosen by the caller; the reply carries it back."""
KIND: Final = "k"
"""What the message is: one of the kinds below."""
NAME: Final = "n"
"""The method, property or signal a device message is about."""
TIMEOUT: Final = "t"
"""Seconds the caller of a request will wait; absent: no limit."""
BODY: Final = "b"
"""The body: arguments, a value, a result, an error object, or a signal's arguments."""
SEQUENCE: Final = "s"
"""A signal's per-signal sequence number; a stream item's number in its stream (1, 2, 3…)."""
CREDITS: Final = "c"
"""How many more items a stream's reader will take: the first window in a ``stream`` request, more in a ``credit``."""
MARKED: Final = "x"
"""Present (``1``) when the body holds frame references or escaped keys."""

# --- device requests, replies and signals ----------------------------------------------------

HELLO: Final = "hello"
CALL: Final = "call"
GET: Final = "get"
SET: Final = "set"
OK: Final = "ok"
ERR: Final = "err"
SIGNAL: Final = "sig"
WELCOME: Final = "welcome"

# --- streams and cancellation ------------------------------------------------------------------

STREAM: Final = "stream"
"""A request that opens a stream: its items come as ``item`` messages, then one ``ok`` or ``err``."""
ITEM: Final = "item"
"""One item of a stream, from the device, sent only while the reader has granted credit."""
CREDIT: Final = "credit"
"""From a stream's reader: it will take ``c`` more items. No reply."""
CANCEL: Final = "cancel"
"""From a caller: stop its call or stream ``id``. Answered by the call's ``err`` of kind ``cancelled``, if in flight."""

# --- the registry ------------------------------------------------------------------------------

REGISTER: Final = "register"
UNREGISTER: Final = "unregister"
HEARTBEAT: Final = "heartbeat"
LIST: Final = "list"
LOOKUP: Final = "lookup"
INFO: Final = "info"
PING: Final = "ping"
"""Answered by the registry and by every device: how the registry asks whether a name's holder is alive."""

SUCCEEDED: Final = "ok"
"""A registry reply's ``true`` or ``false``."""
ERROR: Final = "error"
"""A failed registry reply's error code."""
MESSAGE: Final = "message"
"""A failed registry reply's explanation."""
EPOCH: Final = "epoch"
"""Which run of a registry an event or listing comes from."""
SEQ: Final = "seq"
"""A registry event's number within its epoch."""

ADDED: Final = "added"
REMOVED: Final = "removed"
BEAT: Final = "beat"
