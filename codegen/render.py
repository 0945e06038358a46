"""Render checked interfaces into Python modules: Jinja templates, one per construct.

The templates only lay out declarations; everything they need that takes a
decision (a Python default, a signature, the import list) is computed here once,
in small view objects, so the templates stay free of logic.
"""

from __future__ import annotations

import functools
import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from runtime.schema import REQUIRED, FieldSpec, Interface, MethodSpec, PropertySpec, SignalSpec, TypeExpr, parse_type

_TEMPLATES = Path(__file__).parent / "templates"


@functools.cache
def _environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(_TEMPLATES),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
        extensions=["jinja2.ext.do"],
    )
    env.filters["py"] = py_literal
    env.filters["docstring"] = docstring
    env.filters["tuple"] = py_tuple
    return env


def py_literal(value: Any) -> str:
    """A Python literal for a JSON value (strings double-quoted, as the formatter would)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bool) or value is None:
        return repr(value)
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(py_literal(item) for item in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{py_literal(k)}: {py_literal(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"no Python literal for {type(value).__name__}")


def py_tuple(items: Iterable[str]) -> str:
    """A tuple display of already-rendered expressions, with no trailing comma unless it needs one."""
    rendered = list(items)
    return f"({rendered[0]},)" if len(rendered) == 1 else f"({', '.join(rendered)})"


def docstring(text: str) -> str:
    """A docstring literal for ``text``: triple-quoted, with quotes and backslashes escaped."""
    body = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    if body.endswith('"'):
        body += " "
    return f'"""{body}"""'


def python_default(value: Any, expr: TypeExpr, enums: set[str]) -> str:
    """The Python expression of an IDL default (a JSON value) for a value of type ``expr``."""
    if value is None:
        return "None"
    expr = expr.base
    if expr.kind == "named":
        if expr.name in enums:
            return f"{expr.name}.{value}"
        return f"{expr.name}.model_validate({py_literal(value)})"
    if expr.kind == "float":
        return repr(float(value))
    if expr.kind == "bytes":
        return repr(str(value).encode())
    if expr.kind == "tuple":
        items = [
            python_default(item, expr.args[0] if expr.variadic else expr.args[index], enums)
            for index, item in enumerate(value)
        ]
        return py_tuple(items)
    if expr.kind == "list":
        return "[" + ", ".join(python_default(item, expr.args[0], enums) for item in value) + "]"
    if expr.kind == "dict":
        return (
            "{"
            + ", ".join(f"{py_literal(k)}: {python_default(v, expr.args[1], enums)}" for k, v in value.items())
            + "}"
        )
    return py_literal(value)


@dataclass(frozen=True)
class Param:
    """One parameter of a generated signature."""

    name: str
    annotation: str
    default: str | None

    def __str__(self) -> str:
        if self.default is None:
            return f"{self.name}: {self.annotation}"
        return f"{self.name}: {self.annotation} = {self.default}"


@dataclass(frozen=True)
class ModelField:
    """A field of a generated pydantic model: ``name: annotation = value`` and its doc."""

    name: str
    annotation: str
    value: str | None
    doc: str


@dataclass(frozen=True)
class MethodView:
    spec: MethodSpec
    params: tuple[Param, ...]
    returns: str
    item: str | None = None
    """A stream's item annotation."""

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def stream(self) -> bool:
        return self.item is not None

    @property
    def server_returns(self) -> str:
        """What the implementation returns: a stream's is a generator."""
        if self.item is None:
            return self.returns
        if self.returns == "None":
            return f"Iterator[{self.item}]"
        return f"Generator[{self.item}, None, {self.returns}]"

    @property
    def protocol_returns(self) -> str:
        """What both the implementation and a blocking client return: a stream's items can be iterated over."""
        return self.returns if self.item is None else f"Iterator[{self.item}]"

    def client_returns(self, stream_class: str) -> str:
        return self.returns if self.item is None else f"{stream_class}[{self.item}, {self.returns}]"

    def signature(self, *, timeout: bool) -> str:
        """The parameters after ``self``; keyword-only where a required one follows a default."""
        parts: list[str] = []
        keyword_only = False
        for index, param in enumerate(self.params):
            later_required = any(p.default is None for p in self.params[index + 1 :])
            if not keyword_only and param.default is not None and later_required:
                parts.append("*")
                keyword_only = True
            parts.append(str(param))
        if timeout:
            if not keyword_only:
                parts.append("*")
            parts.append(f"timeout: float | None = {py_literal(self.spec.timeout)}")
        return ", ".join(["self", *parts])

    @property
    def call_args(self) -> str:
        """The dict of arguments the generated client hands to the runtime."""
        return "{" + ", ".join(f'"{p.name}": {p.name}' for p in self.params) + "}"


@dataclass(frozen=True)
class PropertyView:
    spec: PropertySpec
    annotation: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class SignalView:
    spec: SignalSpec
    params: str

    @property
    def name(self) -> str:
        return self.spec.name


@dataclass(frozen=True)
class ClassView:
    """An enum, struct, error or result model of the module."""

    name: str
    doc: str
    fields: tuple[ModelField, ...] = ()
    values: tuple[str, ...] = ()
    finite: bool = False
    """A model with a float somewhere in its fields, which refuses NaN and infinities (JSON has none)."""


@dataclass
class Imports:
    """The one collector of a module's imports, rendered sorted in ruff's groups."""

    stdlib: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    third_party: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    first_party: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    local: dict[str, set[str]] = field(default_factory=lambda: defaultdict(set))
    modules: set[str] = field(default_factory=set)

    def lines(self) -> list[list[str]]:
        stdlib = [f"import {module}" for module in sorted(self.modules)] + _from_lines(self.stdlib)
        groups = [stdlib, *map(_from_lines, (self.third_party, self.first_party, self.local))]
        return [group for group in groups if group]


def _from_lines(table: dict[str, set[str]]) -> list[str]:
    return [
        f"from {module} import {', '.join(sorted(names, key=_isort_key))}"
        for module, names in sorted(table.items())
        if names
    ]


def _isort_key(name: str) -> tuple[int, str]:
    """isort's force-sort-within-sections order for imported names: CONSTANTS, Classes, functions."""
    bare = name.split(" as ")[0]
    if bare.isupper():
        return (0, bare)
    return (1, bare) if bare[:1].isupper() else (2, bare)


class ModuleBuilder:
    """Turns one ``Interface`` into the views the templates lay out."""

    def __init__(self, interface: Interface, imported: dict[str, Interface]) -> None:
        self.interface = interface
        self.imported = imported  # module name -> Interface
        self.imports = Imports()
        self.enums = {e.name for e in interface.all_enums()}
        self.owner: dict[str, str] = {
            name: module
            for module, other in imported.items()
            for name in (
                *(e.name for e in other.all_enums()),
                *(s.name for s in other.all_structs()),
                *(e.name for e in other.all_errors()),
            )
        }

    def annotation(self, expr: TypeExpr) -> str:
        for node in expr.walk():
            if node.kind == "ndarray":
                self.imports.first_party["runtime"].add("NDArray")
            elif node.kind == "any":
                self.imports.stdlib["typing"].add("Any")
            elif node.kind == "named" and node.name in self.owner:
                self.imports.local[f".{self.owner[node.name]}"].add(node.name)
        return expr.annotation()

    def default(self, spec: FieldSpec) -> str | None:
        if spec.default is REQUIRED:
            return None
        return python_default(spec.default, spec.type_expr, self.enums)

    def model_field(self, spec: FieldSpec) -> ModelField:
        annotation = self.annotation(spec.type_expr)
        default = self.default(spec)
        if spec.constraints:
            self.imports.third_party["pydantic"].add("Field")
            args = ([f"default={default}"] if default is not None else []) + [
                f"{key}={py_literal(value)}" for key, value in spec.constraints.items()
            ]
            value: str | None = f"Field({', '.join(args)})"
        else:
            value = default
        return ModelField(spec.name, annotation, value, spec.doc)

    def finite(self, fields: Iterable[FieldSpec]) -> bool:
        """Whether a model of ``fields`` holds a float; its config then refuses NaN and infinities."""
        if not any(node.kind == "float" for spec in fields for node in spec.type_expr.walk()):
            return False
        self.imports.third_party["pydantic"].add("ConfigDict")
        return True

    def params(self, fields: Iterable[FieldSpec]) -> tuple[Param, ...]:
        return tuple(Param(f.name, self.annotation(f.type_expr), self.default(f)) for f in fields)

    def method(self, spec: MethodSpec) -> MethodView:
        returns = spec.result_name if spec.result else self.annotation(parse_type(spec.return_type))
        item = None if spec.yields is None else self.annotation(spec.yields.type_expr)
        if item is not None:
            abc_names = {"Iterator"} if returns == "None" else {"Iterator", "Generator"}
            self.imports.stdlib["collections.abc"].update(abc_names)
            self.imports.first_party["runtime"].update({"Stream", "AsyncStream", "MethodKind"})
        return MethodView(spec, self.params(spec.args), returns, item)

    def build(self) -> dict[str, Any]:
        iface = self.interface
        if iface.enums:
            self.imports.modules.add("enum")
        if iface.structs or any(m.result for m in iface.methods):
            self.imports.third_party["pydantic"].add("BaseModel")
        runtime = self.imports.first_party["runtime"]
        runtime.update({"Interface"})
        if any(m.oneway for m in iface.methods):
            runtime.add("MethodKind")
        enums = [ClassView(e.name, e.doc, values=e.values) for e in iface.enums]
        structs = [
            ClassView(s.name, s.doc, tuple(map(self.model_field, s.fields)), finite=self.finite(s.fields))
            for s in iface.structs
        ]
        errors = [
            ClassView(
                e.name,
                e.doc,
                tuple(ModelField(f.name, self.annotation(f.type_expr), self.default(f), f.doc) for f in e.fields),
            )
            for e in iface.errors
        ]
        results = [
            ClassView(
                m.result_name,
                f"What `{m.name}` returns.",
                tuple(map(self.model_field, m.result)),
                finite=self.finite(m.result),
            )
            for m in iface.methods
            if m.result
        ]
        methods = [self.method(m) for m in iface.methods]
        properties = [PropertyView(p, self.annotation(p.type_expr)) for p in iface.properties]
        signals = [
            SignalView(s, "[" + ", ".join(self.annotation(a.type_expr) for a in s.args) + "]") for s in iface.signals
        ]
        runtime.update({"Client", "AsyncClient", "Server"})
        if errors:
            runtime.update({"RemoteError", "ErrorSpec"})
        if enums:
            runtime.add("EnumSpec")
        if structs:
            runtime.add("StructSpec")
        if properties:
            runtime.add("PropertySpec")
            if any(p.spec.writable for p in properties):
                runtime.add("AsyncProperty")
            if any(not p.spec.writable for p in properties):
                runtime.add("AsyncReadOnlyProperty")
        if signals:
            runtime.update({"SignalSpec", "Signal", "AsyncSignal", "ServerSignal"})
        if methods:
            runtime.add("MethodSpec")
            self.imports.stdlib["abc"].add("abstractmethod")
        if methods or properties or signals or structs or errors:
            runtime.add("FieldSpec")
        typing = self.imports.stdlib["typing"]
        typing.add("Protocol")
        if any(m.returns != "None" and not m.stream for m in methods) or properties:
            typing.add("cast")
        for module in self.imported:
            self.imports.local[f".{module}"].add(f"INTERFACE as {module.upper()}_INTERFACE")
        types = [c.name for c in (*enums, *structs, *errors, *results)]
        return {
            "iface": iface,
            "name": iface.name,
            "enums": enums,
            "structs": structs,
            "errors": errors,
            "results": results,
            "methods": methods,
            "properties": properties,
            "signals": signals,
            "types": types,
            "imported_modules": [f"{module.upper()}_INTERFACE" for module in self.imported],
            "import_groups": self.imports.lines(),
            "exports": sorted(
                [
                    "INTERFACE",
                    f"{iface.name}Client",
                    f"Async{iface.name}Client",
                    f"{iface.name}Server",
                    f"{iface.name}Protocol",
                    *types,
                ],
                key=_isort_key,
            ),
        }


def render_module(interface: Interface, source: str, imported: dict[str, Interface]) -> str:
    """The Python source of the generated module for one interface (before formatting)."""
    context = ModuleBuilder(interface, imported).build()
    return _environment().get_template("module.py.jinja").render(source=source, **context)


def render_package(modules: Sequence[tuple[str, Interface]]) -> str:
    """The Python source of the generated package's ``__init__.py``."""
    return _environment().get_template("package.py.jinja").render(modules=modules)
