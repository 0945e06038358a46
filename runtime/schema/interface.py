"""The one machine-readable description of an interface.

Every generated module holds an ``Interface`` built from its IDL file. The runtime
builds its validators from it, the handshake sends it (``to_dict``), the CLI
rebuilds it from the handshake (``from_dict``) and prints it back as IDL, and the
compatibility check compares two of them. Types are IDL type expressions
(``"list[int]"``, ``"CameraMode | None"``); defaults are JSON values.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from runtime.schema.types import TypeExpr, parse_type


class _Required:
    """The default of a field that has none."""

    _instance: _Required | None = None

    def __new__(cls) -> _Required:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Final = _Required()


@dataclass(frozen=True)
class FieldSpec:
    """A typed value with a name: an argument, a struct or error field, a property, a result."""

    name: str
    type: str
    default: Any = REQUIRED
    doc: str = ""
    constraints: Mapping[str, Any] = field(default_factory=dict)

    @property
    def has_default(self) -> bool:
        return self.default is not REQUIRED

    @functools.cached_property
    def type_expr(self) -> TypeExpr:
        """The parsed type, parsed once."""
        return parse_type(self.type)

    def to_dict(self, *, docs: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "type": self.type}
        if self.has_default:
            out["default"] = self.default
        if self.constraints:
            out["constraints"] = dict(self.constraints)
        if docs and self.doc:
            out["doc"] = self.doc
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FieldSpec:
        return cls(
            name=data["name"],
            type=data["type"],
            default=data.get("default", REQUIRED),
            doc=data.get("doc", ""),
            constraints=dict(data.get("constraints", {})),
        )


@dataclass(frozen=True)
class EnumSpec:
    name: str
    values: tuple[str, ...]
    doc: str = ""


@dataclass(frozen=True)
class StructSpec:
    name: str
    fields: tuple[FieldSpec, ...]
    doc: str = ""


@dataclass(frozen=True)
class ErrorSpec:
    """An error the implementation may raise and the caller may catch, with its fields."""

    name: str
    fields: tuple[FieldSpec, ...] = ()
    doc: str = ""


@dataclass(frozen=True)
class PropertySpec(FieldSpec):
    writable: bool = False
    notify: str | None = None


@dataclass(frozen=True)
class SignalSpec:
    name: str
    args: tuple[FieldSpec, ...] = ()
    doc: str = ""


class MethodKind(enum.Enum):
    """How a method is called: the kinds of method the IDL can declare."""

    CALL = "call"
    """The caller waits for one reply: the result, or the error."""
    ONEWAY = "oneway"
    """The caller sends and goes on; no reply comes."""
    STREAM = "stream"
    """The caller reads items as the device yields them, then one reply: the final value, or the error."""


@dataclass(frozen=True)
class MethodSpec:
    """A remote method.

    ``returns`` is the single return value (its ``name`` is ``"return"``), or None;
    ``result`` holds the fields of a ``returns: fields:`` method, whose return type
    is the generated model ``result_name``. A stream (``kind`` ``STREAM``) has
    ``yields``, the type of its items (its ``name`` is ``"item"``), and ``latest``.
    """

    name: str
    args: tuple[FieldSpec, ...] = ()
    returns: FieldSpec | None = None
    result: tuple[FieldSpec, ...] = ()
    raises: tuple[str, ...] = ()
    timeout: float | None = 10.0
    kind: MethodKind = MethodKind.CALL
    concurrent: bool = False
    """May run while another call to the device runs (else calls run one at a time, in arrival order)."""
    doc: str = ""
    yields: FieldSpec | None = None
    latest: bool = False
    """A stream whose reader gets the newest item: the device never waits for it, older items are skipped."""

    def __post_init__(self) -> None:
        if (self.kind is MethodKind.STREAM) != (self.yields is not None):
            raise ValueError(f"method {self.name}: a stream has 'yields', and only a stream has it")
        if self.latest and self.yields is None:
            raise ValueError(f"method {self.name}: 'latest' is for a stream")

    @property
    def oneway(self) -> bool:
        return self.kind is MethodKind.ONEWAY

    @property
    def stream(self) -> bool:
        return self.kind is MethodKind.STREAM

    @property
    def result_name(self) -> str:
        return "".join(part[:1].upper() + part[1:] for part in self.name.split("_")) + "Result"

    @property
    def return_type(self) -> str:
        """The IDL type of what a call returns: ``none`` when it returns nothing."""
        if self.result:
            return self.result_name
        return self.returns.type if self.returns is not None else "none"


def _fields(items: Iterable[FieldSpec], docs: bool) -> list[dict[str, Any]]:
    return [item.to_dict(docs=docs) for item in items]


def _method(method: MethodSpec, docs: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "name": method.name,
        "args": _fields(method.args, docs),
        "returns": method.returns.to_dict(docs=docs) if method.returns is not None else None,
        "result": _fields(method.result, docs),
        "raises": list(method.raises),
        "timeout": method.timeout,
        "kind": method.kind.value,
        "concurrent": method.concurrent,
    }
    if method.yields is not None:  # only a stream's: the descriptions (and hashes) of other methods stay as they were
        out["yields"] = method.yields.to_dict(docs=docs)
        out["latest"] = method.latest
    return out


def _doc(out: dict[str, Any], doc: str, docs: bool) -> dict[str, Any]:
    if docs and doc:
        out["doc"] = doc
    return out


@dataclass(frozen=True)
class Interface:
    """An interface: its own declarations, and the interfaces whose types it imports.

    ``types`` holds the generated Python classes of the declared enums, structs,
    errors and result models; it is not part of the description (not compared,
    not sent), and the runtime builds what is missing from the description itself.
    """

    name: str
    version: int
    doc: str = ""
    enums: tuple[EnumSpec, ...] = ()
    structs: tuple[StructSpec, ...] = ()
    errors: tuple[ErrorSpec, ...] = ()
    properties: tuple[PropertySpec, ...] = ()
    signals: tuple[SignalSpec, ...] = ()
    methods: tuple[MethodSpec, ...] = ()
    imports: tuple[Interface, ...] = ()
    types: tuple[type, ...] = field(default=(), compare=False, repr=False)

    def all_enums(self) -> tuple[EnumSpec, ...]:
        return _merged(self, "enums")

    def all_structs(self) -> tuple[StructSpec, ...]:
        return _merged(self, "structs")

    def all_errors(self) -> tuple[ErrorSpec, ...]:
        return _merged(self, "errors")

    def all_types(self) -> tuple[type, ...]:
        return _merged(self, "types")

    def find_method(self, name: str) -> MethodSpec | None:
        return next((m for m in self.methods if m.name == name), None)

    def find_property(self, name: str) -> PropertySpec | None:
        return next((p for p in self.properties if p.name == name), None)

    def find_signal(self, name: str) -> SignalSpec | None:
        return next((s for s in self.signals if s.name == name), None)

    def to_dict(self, *, docs: bool = True) -> dict[str, Any]:
        """The JSON form sent in the handshake: imports are flattened into it."""
        out: dict[str, Any] = {"interface": self.name, "version": self.version}
        _doc(out, self.doc, docs)
        out["enums"] = [_doc({"name": e.name, "values": list(e.values)}, e.doc, docs) for e in self.all_enums()]
        out["structs"] = [
            _doc({"name": s.name, "fields": _fields(s.fields, docs)}, s.doc, docs) for s in self.all_structs()
        ]
        out["errors"] = [
            _doc({"name": e.name, "fields": _fields(e.fields, docs)}, e.doc, docs) for e in self.all_errors()
        ]
        out["properties"] = [
            {**p.to_dict(docs=docs), "writable": p.writable, "notify": p.notify} for p in self.properties
        ]
        out["signals"] = [_doc({"name": s.name, "args": _fields(s.args, docs)}, s.doc, docs) for s in self.signals]
        out["methods"] = [_doc(_method(m, docs), m.doc, docs) for m in self.methods]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Interface:
        """Rebuild a description from its JSON form (imports come back flattened)."""

        def fields(items: Iterable[Mapping[str, Any]]) -> tuple[FieldSpec, ...]:
            return tuple(FieldSpec.from_dict(item) for item in items)

        return cls(
            name=data["interface"],
            version=int(data["version"]),
            doc=data.get("doc", ""),
            enums=tuple(EnumSpec(e["name"], tuple(e["values"]), e.get("doc", "")) for e in data.get("enums", [])),
            structs=tuple(
                StructSpec(s["name"], fields(s["fields"]), s.get("doc", "")) for s in data.get("structs", [])
            ),
            errors=tuple(ErrorSpec(e["name"], fields(e["fields"]), e.get("doc", "")) for e in data.get("errors", [])),
            properties=tuple(
                PropertySpec(
                    **vars(FieldSpec.from_dict(p)),
                    writable=bool(p.get("writable", False)),
                    notify=p.get("notify"),
                )
                for p in data.get("properties", [])
            ),
            signals=tuple(SignalSpec(s["name"], fields(s["args"]), s.get("doc", "")) for s in data.get("signals", [])),
            methods=tuple(
                MethodSpec(
                    name=m["name"],
                    args=fields(m.get("args", [])),
                    returns=FieldSpec.from_dict(m["returns"]) if m.get("returns") else None,
                    result=fields(m.get("result", [])),
                    raises=tuple(m.get("raises", [])),
                    timeout=m.get("timeout", 10.0),
                    kind=MethodKind(m.get("kind", MethodKind.CALL.value)),
                    concurrent=bool(m.get("concurrent", False)),
                    doc=m.get("doc", ""),
                    yields=FieldSpec.from_dict(m["yields"]) if m.get("yields") else None,
                    latest=bool(m.get("latest", False)),
                )
                for m in data.get("methods", [])
            ),
        )

    @property
    def hash(self) -> str:
        """A stable hash of the interface's shape (docs left out), 16 hex digits."""
        canonical = json.dumps(self.to_dict(docs=False), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _merged(interface: Interface, attribute: str) -> tuple[Any, ...]:
    """``attribute`` of the imports (depth first, each once) followed by the interface's own."""
    seen: dict[int, Any] = {}
    for imported in interface.imports:
        for item in _merged(imported, attribute):
            seen.setdefault(id(item), item)
    for item in getattr(interface, attribute):
        seen.setdefault(id(item), item)
    return tuple(seen.values())
