"""The one set of address rules: what a bound endpoint's wildcard host becomes for the peers that connect to it.

A server binds ``tcp://*:PORT`` (or ``0.0.0.0``, ``[::]``...); a peer cannot connect
there, so each place an endpoint is handed on replaces the wildcard host: with the
loopback for a local peer (``connectable``), with the host a client reached the
server at (``substitute_host``), or with what the registry sees of a device
(``effective_address``). ``ipc://`` and ``inproc://`` endpoints pass unchanged.
What a person types is read by ``endpoint``: ``HOST:PORT`` is a TCP address.
"""

from __future__ import annotations

import re
from typing import Final

TRANSPORTS: Final = ("tcp://", "ipc://", "inproc://")
WILDCARD_HOSTS: Final = frozenset({"*", "0.0.0.0", "::", "[::]", "[*]", ""})
_IPV6_WILDCARDS: Final = frozenset({"::", "[::]", "[*]"})


def endpoint(text: str) -> str:
    """The endpoint ``text`` names: itself when it has a transport, ``tcp://HOST:PORT`` for ``HOST:PORT``.

    Raises ``ValueError``, saying what an address looks like, for anything else.
    """
    if text.startswith(TRANSPORTS):
        return text
    host, sep, port = text.rpartition(":")
    if sep and host and port.isdigit() and "/" not in text:
        return tcp(host, port)
    raise ValueError(f"{text!r} is not an address: give tcp://HOST:PORT (or HOST:PORT), ipc://PATH or inproc://NAME")


def split_tcp(address: str) -> tuple[str, str] | None:
    """``tcp://HOST:PORT`` as (HOST, PORT), or None when it is not a TCP address."""
    if not address.startswith("tcp://"):
        return None
    host, sep, port = address[6:].rpartition(":")
    if not sep:
        return None
    return host, port


def tcp(host: str, port: str) -> str:
    """The TCP address of ``host`` (an IPv6 address in brackets) and ``port``."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"tcp://{host}:{port}"


def loopback(host: str) -> str:
    """The loopback of a wildcard host's family."""
    return "[::1]" if host in _IPV6_WILDCARDS else "127.0.0.1"


def connectable(endpoint: str, host: str | None = None) -> str:
    """``endpoint`` with a wildcard host replaced by ``host`` (default: the loopback), so a peer can connect."""
    parts = split_tcp(endpoint)
    if parts is None or parts[0] not in WILDCARD_HOSTS:
        return endpoint
    return tcp(host or loopback(parts[0]), parts[1])


def host_of(address: str) -> str | None:
    """The host a TCP address connects to (a ``source;`` prefix dropped), or None for another transport."""
    parts = split_tcp(address)
    if parts is None:
        return None
    return re.sub(r"^[^;]*;", "", parts[0]) or None  # "tcp://source;host:port" connects from a source


def substitute_host(endpoint: str, via: str) -> str:
    """``endpoint`` (as a server bound it) with a wildcard host replaced by the host of ``via``."""
    return connectable(endpoint, host_of(via))


def is_loopback(ip: str) -> bool:
    ip = ip.removeprefix("::ffff:")
    return ip.startswith("127.") or ip == "::1" or ip == "localhost"


def effective_address(address: str, peer: str | None, host: str | None) -> str:
    """The address other hosts should use for a device that registered ``address``.

    A non-wildcard address is kept. A wildcard host is replaced by ``peer`` (the IP
    address the registry sees the device from) unless that is loopback or unknown,
    then by ``host`` (the device's host name or advertise override), and as a last
    resort by the loopback peer itself.
    """
    parts = split_tcp(address)
    if parts is None or parts[0] not in WILDCARD_HOSTS:
        return address
    port = parts[1]
    if peer and not is_loopback(peer):
        return tcp(peer.removeprefix("::ffff:"), port)
    if host:
        return tcp(host, port)
    return tcp(peer.removeprefix("::ffff:") if peer else "127.0.0.1", port)


def advertised(address: str, advertise: str | None) -> str:
    """A TCP ``address`` with its host replaced by ``advertise`` (a name or IP other hosts reach), if given."""
    parts = split_tcp(address)
    if advertise is None or parts is None:
        return address
    return tcp(advertise, parts[1])


def beside(endpoint: str, suffix: str) -> str:
    """Where to bind a second socket beside ``endpoint``: a free port on its host (ipc, inproc: ``+ suffix``)."""
    parts = split_tcp(endpoint)
    if parts is not None:
        return f"tcp://{parts[0]}:0"
    return endpoint + suffix
