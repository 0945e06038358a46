"""What a server accepts as a ``hello``: the protocol it speaks, and a description its own is compatible with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from runtime.errors import InterfaceMismatch
from runtime.protocol.error_bodies import describe_mismatch, describe_protocol
from runtime.protocol.names import VERSION
from runtime.schema.compat import check
from runtime.schema.interface import Interface


def hello_refusal(body: Any, server: Interface) -> dict[str, Any] | None:
    """Why a server refuses a ``hello`` request's ``body`` (an error body), or None when it accepts it.

    The body must be ``{"interface": <description> or null, "protocol": 1}``; a
    description the server's is not compatible with is refused with the
    differences (``mismatch``), so that no client talks past a mismatch.
    """
    if not (isinstance(body, Mapping) and set(body) == {"interface", "protocol"}):
        return describe_protocol('a hello\'s body is {"interface": <description> or null, "protocol": 1}')
    if body["protocol"] != VERSION:
        return describe_protocol(f"this server speaks protocol {VERSION}, not {body['protocol']!r}")
    if body["interface"] is None:
        return None
    try:
        client = Interface.from_dict(body["interface"])
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        return describe_protocol(f"a hello's interface is not a description ({exc!r})")
    try:
        check(client, server)
    except InterfaceMismatch as exc:
        return describe_mismatch(str(exc), exc.differences)
    return None
