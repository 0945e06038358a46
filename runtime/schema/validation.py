"""Validators built once per interface description.

``tables(interface)`` turns an ``Interface`` into pydantic validators: per method an
arguments model and a result adapter, per property a value adapter (with its
constraints), per signal an arguments model, per IDL error its class and a fields
model. Named types resolve to the generated classes in ``Interface.all_types()``;
a name with no class (a client built from a handshake, with no generated code) gets
one made here: an ``enum.Enum``, a pydantic model or a ``RemoteError`` subclass.
"""

from __future__ import annotations

import enum
import functools
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, FiniteFloat, TypeAdapter, create_model

from runtime.errors import RemoteError
from runtime.schema.interface import REQUIRED, FieldSpec, Interface, MethodSpec
from runtime.schema.ndarray import NDArray
from runtime.schema.types import TypeExpr, parse_type

_BUILTINS: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": FiniteFloat,  # JSON has no NaN or infinity: refused where the value is made (docs/protocol.md)
    "str": str,
    "bytes": bytes,
    "ndarray": NDArray,
    "any": Any,
    "none": None,
}

Shape = Literal["plain", "binary", "any"]
"""What a value of a declared type may hold, which decides how the wire writes it: only JSON's own types
(``plain``), one ``bytes`` or ``ndarray`` value (``binary``), or anything (``any``)."""

_ARGS_CONFIG = ConfigDict(extra="forbid")
_PLAIN = frozenset({"bool", "int", "float", "str", "none", "optional", "list", "dict", "tuple"})


@dataclass(frozen=True, slots=True)
class CallPlan:
    """What a call of one method needs on either side, looked up once per interface instead of once per call.

    The validators are pydantic-core's own ``validate_python``, without the pydantic
    wrappers around them (``model_validate``, ``TypeAdapter.validate_python``), which
    add about a microsecond a call to do nothing a call needs; ``validate_args``
    returns the arguments model, whose ``__dict__`` holds the values. The shapes say how
    the arguments, the result and a stream's items are written (``runtime.protocol.wire.WRITERS``).
    """

    spec: MethodSpec
    validate_args: Callable[[Any], BaseModel]
    validate_result: Callable[[Any], Any]
    args_shape: Shape
    result_shape: Shape
    validate_item: Callable[[Any], Any] | None = None
    """A stream's: validates one item (with the constraints of ``yields``)."""
    item_shape: Shape = "any"


def _plain(type_text: str) -> bool:
    return all(node.kind in _PLAIN for node in parse_type(type_text).walk())


def _result_shape(type_text: str) -> Shape:
    if parse_type(type_text).kind in ("bytes", "ndarray"):
        return "binary"
    return "plain" if _plain(type_text) else "any"


class Tables:
    """Everything needed to validate the traffic of one interface, keyed by IDL name."""

    def __init__(self, interface: Interface) -> None:
        self.interface = interface
        self.classes: dict[str, Any] = {cls.__name__: cls for cls in interface.all_types()}
        self._enums = {spec.name: spec for spec in interface.all_enums()}
        self._structs = {spec.name: spec for spec in interface.all_structs()}
        self._errors = {spec.name: spec for spec in interface.all_errors()}
        self.calls: dict[str, CallPlan] = {method.name: self.plan(method) for method in interface.methods}
        self.properties = {p.name: p for p in interface.properties}
        self.values: dict[str, TypeAdapter[Any]] = {
            p.name: TypeAdapter(self.annotation(p)) for p in interface.properties
        }
        self.defaults: dict[str, Any] = {
            p.name: self.values[p.name].validate_python(p.default) for p in interface.properties if p.has_default
        }
        self.signals = {s.name: s for s in interface.signals}
        self.signal_args: dict[str, type[BaseModel]] = {
            s.name: self.model(f"{s.name}Args", s.args, _ARGS_CONFIG) for s in interface.signals
        }
        self.errors: dict[str, type[RemoteError]] = {name: self.error_class(name) for name in self._errors}
        self.error_fields: dict[str, type[BaseModel]] = {
            name: self.model(f"{name}Fields", spec.fields, None) for name, spec in self._errors.items()
        }
        self.declared: dict[str, Callable[[str, Mapping[str, Any]], RemoteError]] = {
            name: functools.partial(self.build_error, name) for name in self._errors
        }

    def plan(self, method: MethodSpec) -> CallPlan:
        args = self.model(f"{method.result_name[:-6]}Args", method.args, _ARGS_CONFIG)
        result = TypeAdapter(self.resolve(parse_type(method.return_type)))
        item = None if method.yields is None else TypeAdapter(self.annotation(method.yields))
        return CallPlan(
            method,
            args.__pydantic_validator__.validate_python,
            result.validator.validate_python,
            "plain" if all(_plain(arg.type) for arg in method.args) else "any",
            _result_shape(method.return_type),
            None if item is None else item.validator.validate_python,
            "any" if method.yields is None else _result_shape(method.yields.type),
        )

    # --- types -------------------------------------------------------------------------------

    def resolve(self, expr: TypeExpr) -> Any:
        """The Python type pydantic validates for a parsed IDL type."""
        kind = expr.kind
        if kind in _BUILTINS:
            return _BUILTINS[kind]
        if kind == "named":
            return self.named(expr.name)
        args = tuple(self.resolve(arg) for arg in expr.args)
        if kind == "optional":
            return Optional[args[0]]  # noqa: UP045 - built at run time from a type object
        if kind == "list":
            return list[args[0]]  # type: ignore[valid-type]
        if kind == "dict":
            return dict[str, args[1]]  # type: ignore[valid-type]
        if kind == "tuple":
            return tuple[args[0], ...] if expr.variadic else tuple.__class_getitem__(args)  # type: ignore[valid-type]
        raise ValueError(f"unknown type kind {kind!r}")

    def annotation(self, spec: FieldSpec) -> Any:
        """The type of a field with its constraints attached."""
        base = self.resolve(spec.type_expr)
        return Annotated[base, Field(**dict(spec.constraints))] if spec.constraints else base

    def named(self, name: str) -> Any:
        found = self.classes.get(name)
        if found is not None:
            return found
        made: Any
        if name in self._enums:
            values = self._enums[name].values
            made = enum.Enum(name, {value: value for value in values})  # type: ignore[misc,no-redef]
        elif name in self._structs:
            made = self.model(name, self._structs[name].fields, None)
        elif name in self._errors:
            made = self.error_class(name)
        elif name.endswith("Result") and any(m.result_name == name for m in self.interface.methods):
            method = next(m for m in self.interface.methods if m.result_name == name)
            made = self.model(name, method.result, None)
        else:
            raise ValueError(f"type {name!r} is not declared by interface {self.interface.name}")
        self.classes[name] = made
        return made

    def model(self, name: str, fields: tuple[FieldSpec, ...], config: ConfigDict | None) -> type[BaseModel]:
        definitions: dict[str, Any] = {}
        for spec in fields:
            annotation = self.annotation(spec)
            if spec.default is REQUIRED:
                definitions[spec.name] = (annotation, ...)
            else:
                definitions[spec.name] = (annotation, TypeAdapter(annotation).validate_python(spec.default))
        model: type[BaseModel] = create_model(name, __config__=config, **definitions)
        return model

    def error_class(self, name: str) -> type[RemoteError]:
        found = self.classes.get(name)
        if isinstance(found, type) and issubclass(found, RemoteError):
            return found
        made = type(name, (RemoteError,), {"__doc__": self._errors[name].doc or None})
        self.classes[name] = made
        return made

    # --- values ------------------------------------------------------------------------------

    def validate_signal(self, signal: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> list[Any]:
        """The arguments of an emission (positional, IDL order), validated."""
        names = [arg.name for arg in self.signals[signal].args]
        if len(args) > len(names):
            raise TypeError(f"signal {signal} takes {len(names)} arguments, {len(args)} given")
        values = dict(zip(names, args, strict=False))
        for key, value in kwargs.items():
            if key in values:
                raise TypeError(f"signal {signal} got argument {key!r} twice")
            values[key] = value
        return list(self.signal_args[signal].model_validate(values).__dict__.values())

    def build_error(self, name: str, message: str, fields: Mapping[str, Any]) -> RemoteError:
        """The declared error ``name`` with its fields validated."""
        values = self.error_fields[name].model_validate(fields).__dict__
        cls = self.errors[name]
        exc = cls.__new__(cls)
        try:
            cls.__init__(exc, message, **values)
        except TypeError:
            RemoteError.__init__(exc, message, **values)
        return exc


_cache: dict[int, tuple[Interface, Tables]] = {}
_cache_lock = threading.Lock()


def tables(interface: Interface) -> Tables:
    """The validators of ``interface``, built once per description object."""
    with _cache_lock:
        hit = _cache.get(id(interface))
        if hit is not None and hit[0] is interface:
            return hit[1]
        built = Tables(interface)
        _cache[id(interface)] = (interface, built)
        return built


class InterfaceBound:
    """The base of every generated class: ``class CameraClient(Client, interface=INTERFACE)``.

    The ``interface`` keyword builds the validation tables once, when the generated
    module is imported, not once per client or server.
    """

    _zidl_tables: ClassVar[Tables | None] = None

    def __init_subclass__(cls, *, interface: Interface | None = None, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if interface is not None:
            cls._zidl_tables = tables(interface)
