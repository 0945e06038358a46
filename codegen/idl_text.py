"""Print an interface description back as an IDL file (for `zidl describe`).

The output loads with `zidl check` into the same description: imported
declarations are written inline, short forms are used where nothing is lost.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml

from runtime.schema import FieldSpec, Interface, MethodSpec

_DEFAULT_TIMEOUT = MethodSpec("_").timeout


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
    text: str = yaml.safe_dump(document, sort_keys=False, allow_unicode=True, width=100)
    return text
