"""Does a default fit its type? Answered by pydantic, from the parsed type.

``DefaultChecker`` turns a ``TypeExpr`` into a Python type that pydantic validates:
an enum is a ``Literal`` of its values (defaults are written as the value's string),
a struct a model created on the fly (fields under neutral names with the IDL name
as alias, so any field name works), ``ndarray`` a type no default fits. A default is
a JSON value, so it is validated as JSON in strict mode: ``[1, 2]`` fits
``tuple[int, int]``, ``"3"`` does not fit ``int``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Annotated, Any, Literal, Optional

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FiniteFloat,
    PlainValidator,
    TypeAdapter,
    ValidationError,
    create_model,
)

from runtime.schema import TypeExpr, parse_type

from .idl_model import FieldDecl


class Unchecked(Exception):
    """The type cannot be built (it names something broken or unknown); its errors are reported elsewhere."""


def _no_default(value: Any) -> Any:
    raise ValueError("an ndarray cannot have a default other than null (for 'ndarray | None')")


_BUILTIN_TYPES: dict[str, Any] = {
    "bool": bool,
    "int": int,
    "float": FiniteFloat,  # a default travels in the description, as JSON, which has no NaN or infinity
    "str": str,
    "bytes": bytes,
    "any": Any,
    "none": None,
    "ndarray": Annotated[Any, PlainValidator(_no_default)],
}

_MODEL_CONFIG = ConfigDict(extra="forbid", strict=True, protected_namespaces=())


class DefaultChecker:
    """Validates defaults against types that may name the given enums and structs."""

    def __init__(self, enums: Mapping[str, Sequence[str]], structs: Mapping[str, Mapping[str, FieldDecl]]) -> None:
        self._enums = enums
        self._models: dict[str, type[BaseModel]] = {}
        for name, fields in structs.items():
            try:
                self._models[name] = self._struct_model(name, fields)
            except (Unchecked, ValueError, TypeError):
                continue
        for name, model in list(self._models.items()):
            try:
                model.model_rebuild(_types_namespace=dict(self._models))
            except Exception:  # a struct that pydantic cannot build is reported by its own checks
                del self._models[name]

    def _struct_model(self, name: str, fields: Mapping[str, FieldDecl]) -> type[BaseModel]:
        definitions: dict[str, Any] = {}
        for index, (field_name, field) in enumerate(fields.items()):
            annotation = self._annotation(parse_type(field.type), field.constraints(), forward=True)
            default = field.default if field.has_default else ...
            definitions[f"field_{index}"] = (annotation, Field(default, alias=field_name))
        model: type[BaseModel] = create_model(name, __config__=_MODEL_CONFIG, **definitions)
        return model

    def _annotation(self, expr: TypeExpr, constraints: Mapping[str, Any], *, forward: bool = False) -> Any:
        annotation = self._base(expr.base, forward)
        if constraints:
            annotation = Annotated[annotation, Field(**constraints)]
        return Optional[annotation] if expr.is_optional else annotation  # noqa: UP045 - built at runtime

    def _base(self, expr: TypeExpr, forward: bool) -> Any:
        args = [self._annotation(arg, {}, forward=forward) for arg in expr.args]
        if expr.kind == "list":
            return list[args[0]]  # type: ignore[valid-type]
        if expr.kind == "dict":
            return dict[str, args[1]]  # type: ignore[valid-type]
        if expr.kind == "tuple":
            return tuple[args[0], ...] if expr.variadic else tuple.__class_getitem__(tuple(args))  # type: ignore[valid-type]
        if expr.kind != "named":
            return _BUILTIN_TYPES[expr.kind]
        if expr.name in self._enums:
            return Literal[tuple(self._enums[expr.name])]
        if forward:
            return expr.name
        if expr.name in self._models:
            return self._models[expr.name]
        raise Unchecked(expr.name)

    def problem(self, type_text: str, constraints: Mapping[str, Any], default: Any) -> str | None:
        """What is wrong with ``default`` for the type and constraints, or None when it fits.

        Raises ``Unchecked`` when the type cannot be built.
        """
        adapter: TypeAdapter[Any] = TypeAdapter(self._annotation(parse_type(type_text), constraints))
        try:
            json.dumps(default, allow_nan=False)
        except ValueError:
            return "it holds NaN or an infinity, which JSON (the wire, the handshake) has no way to write"
        try:
            adapter.validate_json(json.dumps(default), strict=True)
        except ValidationError as exc:
            error = exc.errors(include_url=False)[0]
            message = str(error["msg"]).removeprefix("Value error, ")
            at = "".join(f"[{step}]" if isinstance(step, int) else f".{step}" for step in error["loc"])
            return f"{message[:1].lower()}{message[1:]}" + (f" (at {at.lstrip('.')})" if at else "")
        return None
