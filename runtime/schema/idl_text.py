"""An interface description printed back as an IDL file (what `zidl describe` shows).

The output loads with `zidl check` into the same description: imported
declarations are written inline, short forms are used where nothing is lost. The
YAML is written here rather than by PyYAML, which a device machine does not
install: block mappings, flow lists, and a string as JSON (which YAML reads) wherever
a plain scalar would not read back as the same string under YAML 1.2's core schema.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from runtime.schema.interface import FieldSpec, Interface, MethodSpec

_DEFAULT_TIMEOUT: Final = MethodSpec("_").timeout

_NOT_PLAIN: Final = re.compile(
    r"null|Null|NULL|~"  # what the core schema reads as null, a bool or a number
    r"|true|True|TRUE|false|False|FALSE"
    r"|[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+"
    r"|[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)"
)
_PLAIN_BLOCK: Final = re.compile(r"[A-Za-z0-9_(][\x20-\x7e]*")
"""Printable ASCII with a harmless first character; ``_plain`` rules out what YAML still reads otherwise."""
_FLOW_INDICATORS: Final = frozenset(",[]{}:")
_UNPRINTABLE: Final = re.compile("[^\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd\U00010000-\U0010ffff]")
"""What a YAML reader refuses or takes for a line break even inside quotes: written as an escape."""


def _plain(text: str, *, flow: bool) -> bool:
    """Whether ``text`` reads back as itself when written without quotes."""
    return (
        _PLAIN_BLOCK.fullmatch(text) is not None
        and text == text.strip()
        and ": " not in text
        and " #" not in text
        and not text.endswith(":")
        and _NOT_PLAIN.fullmatch(text) is None
        and not (flow and not _FLOW_INDICATORS.isdisjoint(text))
    )


def _escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    return f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}"


def _string(text: str, *, flow: bool) -> str:
    if _plain(text, flow=flow):
        return text
    return _UNPRINTABLE.sub(_escape, json.dumps(text, ensure_ascii=False))


def _scalar(value: Any, *, flow: bool) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return ".nan"
        if math.isinf(value):
            return ".inf" if value > 0 else "-.inf"
        return repr(value)
    if isinstance(value, str):
        return _string(value, flow=flow)
    raise TypeError(f"a value of type {type(value).__name__} has no IDL text")


def _flow(value: Any) -> str:
    """``value`` on one line: lists and mappings in flow style."""
    if isinstance(value, list | tuple):
        return "[" + ", ".join(_flow(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{_scalar(key, flow=True)}: {_flow(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    return _scalar(value, flow=True)


def _block(mapping: Mapping[str, Any], indent: str = "") -> Iterable[str]:
    """The lines of ``mapping`` in block style; a non-empty mapping within it nests, anything else is one line."""
    for key, value in mapping.items():
        name = _scalar(key, flow=False)
        if isinstance(value, Mapping) and value:
            yield f"{indent}{name}:"
            yield from _block(value, indent + "  ")
        elif isinstance(value, Mapping | list | tuple):
            yield f"{indent}{name}: {_flow(value)}"
        else:
            yield f"{indent}{name}: {_scalar(value, flow=False)}"


def _field(spec: FieldSpec, **extra: Any) -> Any:
    """A field's short form (its type) when it has nothing else, else its mapping."""
    out: dict[str, Any] = {"type": spec.type}
    if spec.has_default:
        out["default"] = spec.default
    out.update(spec.constraints)
    out.update({key: value for key, value in extra.items() if value})
    if spec.doc:
        out["doc"] = spec.doc
    return spec.type if len(out) == 1 else out


def _fields(specs: Iterable[FieldSpec]) -> dict[str, Any]:
    return {spec.name: _field(spec) for spec in specs}


def _with_doc(doc: str, body: dict[str, Any]) -> dict[str, Any]:
    return {"doc": doc, **body} if doc else body


def _method(method: MethodSpec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if method.doc:
        out["doc"] = method.doc
    if method.args:
        out["args"] = _fields(method.args)
    if method.result:
        out["returns"] = {"fields": _fields(method.result)}
    elif method.returns is not None:
        out["returns"] = _field(method.returns)
    if method.yields is not None:
        out["yields"] = _field(method.yields)
    if method.latest:
        out["latest"] = True
    if method.raises:
        out["raises"] = list(method.raises)
    if method.timeout != _DEFAULT_TIMEOUT:
        out["timeout"] = method.timeout
    if method.oneway:
        out["oneway"] = True
    if method.concurrent:
        out["concurrent"] = True
    return out


def to_idl(interface: Interface) -> str:
    """The IDL text of ``interface``."""
    document: dict[str, Any] = {"interface": interface.name, "version": interface.version}
    if interface.doc:
        document["doc"] = interface.doc
    sections: dict[str, dict[str, Any]] = {
        "enums": {e.name: _with_doc(e.doc, {"values": list(e.values)}) for e in interface.all_enums()},
        "structs": {s.name: _with_doc(s.doc, {"fields": _fields(s.fields)}) for s in interface.all_structs()},
        "errors": {
            e.name: _with_doc(e.doc, {"fields": _fields(e.fields)} if e.fields else {}) for e in interface.all_errors()
        },
        "properties": {p.name: _field(p, writable=p.writable, notify=p.notify) for p in interface.properties},
        "signals": {s.name: _with_doc(s.doc, {"args": _fields(s.args)} if s.args else {}) for s in interface.signals},
        "methods": {m.name: _method(m) for m in interface.methods},
    }
    document.update({key: value for key, value in sections.items() if value})
    return yaml_text(document)


def yaml_text(document: Mapping[str, Any]) -> str:
    """``document`` (JSON's types, tuples as lists) as a YAML file that reads back as the same values."""
    return "".join(line + "\n" for line in _block(document))
