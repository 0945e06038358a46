"""The structure of an IDL file as pydantic models, and its mistakes in our own words.

``parse_idl`` validates the YAML tree of one file against ``IdlFile`` and turns any
``ValidationError`` into ``IdlError``s that name the declaration and the line: an
unknown key, a missing one, or a value of the wrong kind. What the structure cannot
say (names, types, defaults, cross-references) is for ``check``.

The short forms are expanded here: an enum written as a list of values, a field,
argument, property or return written as a bare type, and an empty declaration.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError, model_validator
from pydantic_core import ErrorDetails, PydanticCustomError

from .errors import IdlError, IdlErrors, describe
from .yaml_loader import Node

CONSTRAINTS = ("ge", "gt", "le", "lt", "multiple_of", "min_length", "max_length", "pattern")


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def _short_form(value: Any, key: str, expected: str) -> Any:
    """``value`` as a mapping: a bare string is ``{key: value}``."""
    if isinstance(value, str):
        return {key: value}
    if not isinstance(value, dict):
        raise PydanticCustomError("idl_kind", expected)
    return value


def _empty_is_mapping(value: Any) -> Any:
    """A declaration written with nothing after its colon has no keys."""
    return {} if value is None else value


class ConstrainedType(_Model):
    """A type with what narrows it: the shape shared by fields, arguments, properties and returns."""

    type: str
    doc: str = ""
    ge: int | float | None = None
    gt: int | float | None = None
    le: int | float | None = None
    lt: int | float | None = None
    multiple_of: int | float | None = None
    min_length: int | None = None
    max_length: int | None = None
    pattern: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _bare_type(cls, value: Any) -> Any:
        return _short_form(value, "type", "expected a type or a mapping with 'type'")

    def constraints(self) -> dict[str, Any]:
        """The constraints given, in the SPEC's order."""
        return {name: getattr(self, name) for name in CONSTRAINTS if getattr(self, name) is not None}


class FieldDecl(ConstrainedType):
    """A field, an argument or a property: a type, with a default when ``default`` was written."""

    default: Any = None

    @property
    def has_default(self) -> bool:
        return "default" in self.model_fields_set


class PropertyDecl(FieldDecl):
    writable: bool = False
    notify: str | None = None


class EnumDecl(_Model):
    values: list[str]
    doc: str = ""

    @model_validator(mode="before")
    @classmethod
    def _bare_values(cls, value: Any) -> Any:
        if isinstance(value, list):
            return {"values": value}
        if not isinstance(value, dict):
            raise PydanticCustomError("idl_kind", "expected a list of values or a mapping with 'values'")
        return value


class StructDecl(_Model):
    fields: dict[str, FieldDecl] = {}
    doc: str = ""

    _empty = model_validator(mode="before")(_empty_is_mapping)


class ErrorDecl(StructDecl):
    pass


class SignalDecl(_Model):
    args: dict[str, FieldDecl] = {}
    doc: str = ""

    _empty = model_validator(mode="before")(_empty_is_mapping)


class ReturnDecl(ConstrainedType):
    """What a method returns: a type (``type`` set), or several named values (``fields`` set)."""

    type: str = ""
    fields: dict[str, FieldDecl] | None = None

    @model_validator(mode="after")
    def _type_or_fields(self) -> ReturnDecl:
        given = self.model_fields_set
        if "fields" in given:
            if "type" in given:
                raise PydanticCustomError("idl_rule", "give either 'type' or 'fields', not both")
            if given - {"fields"}:
                raise PydanticCustomError("idl_rule", "with 'fields', give 'doc' and constraints on each field instead")
        elif "type" not in given:
            raise PydanticCustomError("idl_rule", "give 'type' (one value) or 'fields' (several named values)")
        return self


class MethodDecl(_Model):
    args: dict[str, FieldDecl] = {}
    returns: ReturnDecl | None = None
    yields: ConstrainedType | None = None
    latest: bool = False
    raises: list[str] = []
    timeout: float | None = 10.0
    oneway: bool = False
    concurrent: bool = False
    doc: str = ""

    _empty = model_validator(mode="before")(_empty_is_mapping)


class IdlFile(_Model):
    """One IDL file, as written; sections keep their declaration order."""

    interface: str
    version: int
    doc: str = ""
    imports: list[str] = []
    enums: dict[str, EnumDecl] = {}
    structs: dict[str, StructDecl] = {}
    errors: dict[str, ErrorDecl] = {}
    properties: dict[str, PropertyDecl] = {}
    signals: dict[str, SignalDecl] = {}
    methods: dict[str, MethodDecl] = {}

    @model_validator(mode="before")
    @classmethod
    def _empty_sections(cls, value: Any) -> Any:
        """An empty section (``enums:`` with nothing under it) declares nothing."""
        if not isinstance(value, dict):
            raise PydanticCustomError("idl_kind", "expected a mapping with 'interface:' and 'version:'")
        return {key: item for key, item in value.items() if not (item is None and key in _SECTION_KEYS)}


_SECTION_KEYS = frozenset({"imports", "enums", "structs", "errors", "properties", "signals", "methods"})

_KINDS = {
    "dict_type": "a mapping",
    "list_type": "a list",
    "string_type": "a string",
    "int_type": "an integer",
    "float_type": "a number",
    "bool_type": "true or false",
    "model_type": "a mapping",
}

_EXAMPLES: dict[tuple[str | int, ...], str] = {
    ("interface",): "name the interface, e.g. 'interface: Camera'",
    ("version",): "give its integer major version, e.g. 'version: 1'",
}

_QUOTE_HINT = '; quote a type that has brackets, e.g. {type: "tuple[int, int]"}'


def _what(value: Any) -> str:
    """How the YAML value reads to its writer: ``the string 'x'``, ``a list``…"""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return f"the number {value}"
    if isinstance(value, str):
        return f"the string {value!r}"
    return "a list" if isinstance(value, list) else "a mapping"


def _model_at(loc: tuple[str | int, ...]) -> type[BaseModel]:
    """The model that validated the mapping at ``loc`` (dict keys are names, so they are skipped)."""
    if not loc:
        return IdlFile
    if len(loc) == 2:
        return _SECTION_MODELS[str(loc[0])]
    if loc[2] == "returns":
        return ReturnDecl if len(loc) == 3 else FieldDecl
    if loc[2] == "yields":
        return ConstrainedType
    return FieldDecl


_SECTION_MODELS: dict[str, type[BaseModel]] = {
    "enums": EnumDecl,
    "structs": StructDecl,
    "errors": ErrorDecl,
    "properties": PropertyDecl,
    "signals": SignalDecl,
    "methods": MethodDecl,
}


def _message(error: ErrorDetails) -> tuple[tuple[str | int, ...], str]:
    """Our one-line message for one pydantic error, and the place it points to."""
    loc = tuple(error["loc"])
    where = describe(loc)
    kind = error["type"]
    if kind == "extra_forbidden":
        key = str(loc[-1])
        allowed = sorted(_model_at(loc[:-1]).model_fields)
        close = difflib.get_close_matches(key, allowed, n=1)
        hint = f"did you mean '{close[0]}'?" if close else f"expected one of {', '.join(allowed)}"
        return loc, f"unknown key '{key}' in {where}; {hint}"
    if kind == "missing":
        key = str(loc[-1])
        owner = "the file" if len(loc) == 1 else describe(loc[:-1])
        advice = _EXAMPLES.get(loc, "add one, e.g. 'type: int'" if key == "type" else f"add '{key}:'")
        return loc[:-1], f"{owner} has no '{key}'; {advice}"
    bracket_hint = _QUOTE_HINT if isinstance(error["input"], list | dict) else ""
    if kind == "idl_kind":
        hint = bracket_hint if "'type'" in error["msg"] else ""
        return loc, f"{where}: {error['msg']}, not {_what(error['input'])}{hint}"
    if kind == "idl_rule":
        return loc, f"{where}: {error['msg']}"
    expected = _KINDS.get(kind)
    place = "" if where == "the file" else f" of {where}"
    if where != describe(loc[:-1]):  # the value of a whole declaration, such as a struct
        subject, place = where, ""
    elif isinstance(loc[-1], int):
        subject = f"item {loc[-1] + 1} of '{loc[-2]}'"
    else:
        subject = f"'{loc[-1]}'"
    if expected is None:
        return loc, f"{subject}{place}: {error['msg'].lower()}"
    hint = bracket_hint if loc[-1] == "type" else ""
    return loc, f"{subject}{place} must be {expected}, not {_what(error['input'])}{hint}"


def parse_idl(tree: Node, path: Path) -> IdlFile:
    """Validate one file's YAML tree; raise ``IdlErrors`` with every structural mistake."""
    try:
        return IdlFile.model_validate(tree.plain())
    except ValidationError as exc:
        errors = []
        for error in exc.errors(include_url=False):
            loc, message = _message(error)
            errors.append(IdlError(path, tree.line_of(loc), message))
        raise IdlErrors(errors) from exc


@dataclass(frozen=True)
class ParsedFile:
    """One IDL file that has the right structure: where it is, its YAML tree (for lines), its content."""

    path: Path
    module: str
    tree: Node
    idl: IdlFile
