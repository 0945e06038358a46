"""The handshake's compatibility check: may a client built for one interface talk to a server of another?

The client may connect when everything it knows exists on the server with the same
types. The server may have more methods, properties, signals, enum values, errors,
and new method arguments or struct fields that have defaults. ``compare`` returns
the problems (which make the connection fail with ``InterfaceMismatch``) and the
harmless differences (which are logged as a warning).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runtime.errors import InterfaceMismatch
from runtime.schema.interface import FieldSpec, Interface, MethodKind
from runtime.schema.types import parse_type

_KIND_WORDS = {MethodKind.CALL: "a call with a reply", MethodKind.ONEWAY: "oneway", MethodKind.STREAM: "a stream"}


@dataclass
class Comparison:
    problems: list[str] = field(default_factory=list)
    differences: list[str] = field(default_factory=list)


def _canonical(type_text: str) -> str:
    try:
        return str(parse_type(type_text))
    except ValueError:
        return type_text


def _fields(
    where: str, mine: Sequence[FieldSpec], theirs: Sequence[FieldSpec], out: Comparison, *, extra_needs_default: bool
) -> None:
    their_by_name = {f.name: f for f in theirs}
    my_names = {f.name for f in mine}
    for spec in mine:
        other = their_by_name.get(spec.name)
        if other is None:
            out.problems.append(f"{where}: {spec.name!r} is missing on the server")
        elif _canonical(spec.type) != _canonical(other.type):
            out.problems.append(f"{where}: {spec.name!r} is {spec.type} on the client but {other.type} on the server")
        elif dict(spec.constraints) != dict(other.constraints):
            out.differences.append(
                f"{where}: {spec.name!r} has constraints {dict(spec.constraints)} on the client "
                f"but {dict(other.constraints)} on the server"
            )
    for other in theirs:
        if other.name in my_names:
            continue
        if extra_needs_default and not other.has_default:
            out.problems.append(f"{where}: the server needs {other.name!r}, which the client does not know")
        else:
            out.differences.append(f"{where}: the server has {other.name!r} as well")


def _stream(where: str, mine: FieldSpec, theirs: FieldSpec, latest: bool, their_latest: bool, out: Comparison) -> None:
    """Both sides stream: the items must have the same type; ``latest`` only changes what a slow reader sees."""
    if _canonical(mine.type) != _canonical(theirs.type):
        out.problems.append(f"{where} yields {mine.type} on the client but {theirs.type} on the server")
    elif dict(mine.constraints) != dict(theirs.constraints):
        out.differences.append(
            f"{where} yields items with constraints {dict(mine.constraints)} on the client "
            f"but {dict(theirs.constraints)} on the server"
        )
    if latest != their_latest:
        words = {True: "keeps only the newest item", False: "keeps every item"}
        out.differences.append(f"{where} {words[latest]} on the client but {words[their_latest]} on the server")


def _named(items: Sequence[Any]) -> Mapping[str, Any]:
    return {item.name: item for item in items}


def compare(client: Interface, server: Interface) -> Comparison:
    """Compare what ``client`` knows with what ``server`` offers."""
    out = Comparison()
    if client.name != server.name:
        out.problems.append(f"the client is for interface {client.name} but the server serves {server.name}")
    if client.version != server.version:
        out.problems.append(f"major versions differ ({client.version} and {server.version})")

    server_enums = _named(server.all_enums())
    for enum in client.all_enums():
        other = server_enums.get(enum.name)
        if other is None:
            out.problems.append(f"enum {enum.name} is missing on the server")
            continue
        missing = [v for v in enum.values if v not in other.values]
        extra = [v for v in other.values if v not in enum.values]
        if missing:
            out.problems.append(f"enum {enum.name}: values {missing} are missing on the server")
        if extra:
            out.differences.append(f"enum {enum.name}: the server has values {extra} as well")

    server_structs = _named(server.all_structs())
    for struct in client.all_structs():
        other = server_structs.get(struct.name)
        if other is None:
            out.problems.append(f"struct {struct.name} is missing on the server")
        else:
            _fields(f"struct {struct.name}", struct.fields, other.fields, out, extra_needs_default=True)

    server_errors = _named(server.all_errors())
    for error in client.all_errors():
        other = server_errors.get(error.name)
        if other is None:
            out.differences.append(f"error {error.name} is not raised by the server")
        else:
            _fields(f"error {error.name}", error.fields, other.fields, out, extra_needs_default=True)

    server_props = _named(server.properties)
    for prop in client.properties:
        other = server_props.get(prop.name)
        if other is None:
            out.problems.append(f"property {prop.name} is missing on the server")
            continue
        _fields("property", [prop], [other], out, extra_needs_default=False)
        if prop.writable and not other.writable:
            out.problems.append(f"property {prop.name} is writable on the client but read-only on the server")
        if prop.notify != other.notify:
            out.differences.append(
                f"property {prop.name} notifies {prop.notify} on the client, {other.notify} on the server"
            )

    server_signals = _named(server.signals)
    for signal in client.signals:
        other = server_signals.get(signal.name)
        if other is None:
            out.problems.append(f"signal {signal.name} is missing on the server")
        elif [_canonical(a.type) for a in signal.args] != [_canonical(a.type) for a in other.args]:
            mine = ", ".join(a.type for a in signal.args)
            theirs = ", ".join(a.type for a in other.args)
            out.problems.append(f"signal {signal.name} carries ({mine}) on the client but ({theirs}) on the server")

    server_methods = _named(server.methods)
    for method in client.methods:
        other = server_methods.get(method.name)
        if other is None:
            out.problems.append(f"method {method.name} is missing on the server")
            continue
        where = f"method {method.name}"
        _fields(f"{where} argument", method.args, other.args, out, extra_needs_default=True)
        if _canonical(method.return_type) != _canonical(other.return_type):
            out.problems.append(
                f"{where} returns {method.return_type} on the client but {other.return_type} on the server"
            )
        elif method.result:
            _fields(f"{where} result", method.result, other.result, out, extra_needs_default=False)
        if method.kind is not other.kind:
            out.problems.append(
                f"{where} is {_KIND_WORDS[method.kind]} on the client, {_KIND_WORDS[other.kind]} on the server"
            )
        elif method.yields is not None and other.yields is not None:
            _stream(where, method.yields, other.yields, method.latest, other.latest, out)

    for kind, mine_names, their_names in (
        ("method", {m.name for m in client.methods}, {m.name for m in server.methods}),
        ("property", {p.name for p in client.properties}, {p.name for p in server.properties}),
        ("signal", {s.name for s in client.signals}, {s.name for s in server.signals}),
    ):
        for name in sorted(their_names - mine_names):
            out.differences.append(f"the server has {kind} {name} as well")
    return out


def check(client: Interface, server: Interface) -> list[str]:
    """Raise ``InterfaceMismatch`` naming both sides when incompatible; else return the differences."""
    result = compare(client, server)
    if result.problems:
        sides = f"client {client.name} v{client.version} / server {server.name} v{server.version}"
        raise InterfaceMismatch(f"{sides}: " + "; ".join(result.problems), result.problems)
    return result.differences
