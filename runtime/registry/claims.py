"""What a ``register`` may ask for: its fields checked, its lease cut to the registry's, its name allowed to its key.

The registry sets the lease: a device may ask for a shorter ttl or heartbeat, and
gets the registry's when it asks for more. With Curve and allowed keys, a key
may register only the names its key files give it (``cam1.key``: ``cam1``) and the
``cam1-N`` the registry gives when ``cam1`` is held.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

from runtime.registry.book import Claim
from runtime.registry.dispatcher import Refused
from runtime.transport.addresses import TRANSPORTS
from runtime.transport.security import is_key

__all__ = ["Rules", "allowed_name", "candidates", "read_claim"]

MAX_NAME_LENGTH: Final = 100
_NAME_RE: Final = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.\-]*\Z")


@dataclass(frozen=True, slots=True)
class Rules:
    """The lease a registry gives at most, and the names each client key may register (None: any name)."""

    ttl: float
    heartbeat: float
    names: Mapping[str, frozenset[str]] | None = None


def read_claim(fields: dict[str, Any], rules: Rules, key: str | None) -> Claim:
    """The claim in a ``register`` from client key ``key`` (Curve's, or None); raises ``Refused``."""
    name = fields.get("name")
    if not isinstance(name, str) or len(name) > MAX_NAME_LENGTH or not _NAME_RE.match(name):
        raise Refused("bad-request", "'name' is letters, digits, '_', '.' and '-', at most 100 long")
    if rules.names is not None and not allowed_name(name, rules.names.get(key or "", frozenset())):
        raise Refused("not-allowed", f"this client's key may not register {name!r}: see docs/security.md")
    address = fields.get("address")
    if not isinstance(address, str) or not address.startswith(TRANSPORTS) or len(address) > 1024:
        raise Refused("bad-request", "'address' is a tcp://, ipc:// or inproc:// address")
    interface, version, hash_ = fields.get("interface"), fields.get("version"), fields.get("hash", "")
    if not isinstance(interface, str) or not interface or len(interface) > 200:
        raise Refused("bad-request", "'interface' is a non-empty string")
    if not isinstance(version, int) or isinstance(version, bool) or not 0 <= version < 2**31:
        raise Refused("bad-request", "'version' is an integer from 0 to 2**31 - 1")
    if not isinstance(hash_, str) or len(hash_) > 200:
        raise Refused("bad-request", "'hash' is a string")
    host = fields.get("host")
    if host is not None and (not isinstance(host, str) or not host or len(host) > 255 or "/" in host):
        raise Refused("bad-request", "'host' is a host name")
    public_key = fields.get("public_key")
    if public_key is not None and (not isinstance(public_key, str) or not is_key(public_key)):
        raise Refused("bad-request", "'public_key' is a Z85 Curve public key (40 characters)")
    if not isinstance(fields.get("takeover", False), bool):  # still read, and means a plain register
        raise Refused("bad-request", "'takeover' is true or false")
    lease = fields.get("lease")
    if lease is not None and (not isinstance(lease, str) or len(lease) > 64):
        raise Refused("bad-request", "'lease' is the lease a register reply gave")
    ttl = _seconds(fields, "ttl", rules.ttl)
    heartbeat = _seconds(fields, "heartbeat", min(rules.heartbeat, ttl / 3))
    if heartbeat >= ttl:
        raise Refused("bad-request", "'heartbeat' must be shorter than 'ttl'")
    ttl, heartbeat = min(ttl, rules.ttl), min(heartbeat, rules.heartbeat)  # never longer than the registry's
    return Claim(name, interface, version, hash_, address, host, public_key, lease, ttl, heartbeat)


def allowed_name(name: str, names: frozenset[str]) -> bool:
    """True when ``name`` is one of ``names``, or one of them followed by ``-N`` suffixes."""
    if name in names:
        return True
    for base in names:
        rest = name[len(base) :]
        if name.startswith(base) and rest[:1] == "-" and all(part.isdigit() for part in rest[1:].split("-")):
            return True
    return False


def candidates(name: str) -> Iterator[str]:
    """``name``, then ``name-1``, ``name-2``...: the names a register may be given, in order."""
    yield name
    n = 1
    while True:
        yield f"{name}-{n}"
        n += 1


def _seconds(fields: dict[str, Any], key: str, default: float) -> float:
    value = fields.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0.01 <= value <= 86400:
        raise Refused("bad-request", f"{key!r} is a number of seconds between 0.01 and 86400")
    return float(value)
