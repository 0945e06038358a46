"""The meaning of an IDL file: what its structure alone cannot say.

``check_file`` looks at one structurally valid file, with the files it imports
(directly or not), and returns every mistake it finds: names that are not
identifiers or that the generated code or its bases already use, names declared
twice, unknown or malformed types, constraints that do not apply or contradict each
other, defaults that do not fit, and cross-references (``notify``, ``raises``) to nothing.
"""

from __future__ import annotations

import difflib
import json
import keyword
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from runtime.schema import BUILTINS, MethodSpec, TypeExpr, TypeSyntaxError, parse_type

from .constraints import constraint_problems
from .defaults import DefaultChecker, Unchecked
from .errors import IdlError, Loc, describe
from .idl_model import ConstrainedType, FieldDecl, IdlFile, ParsedFile
from .reserved import (
    RESERVED_ARGUMENT_NAMES,
    RESERVED_ENUM_VALUES,
    RESERVED_ERROR_FIELD_NAMES,
    RESERVED_MEMBER_NAMES,
    RESERVED_MODEL_FIELD_NAMES,
    RESERVED_MODULE_NAMES,
)

_QUOTE_HINT = '; inside {...}, quote a type that has brackets, e.g. {type: "tuple[int, int]"}'


def check_file(file: ParsedFile, imported: Sequence[ParsedFile]) -> list[IdlError]:
    """Every semantic mistake of ``file``; ``imported`` are the files it imports, directly or not."""
    return _Checker(file, imported).run()


def generated_names(idl: IdlFile) -> list[tuple[str, str, Loc]]:
    """The module-level names the generator makes besides the declared ones: name, what makes it, where."""
    interface = idl.interface
    names: list[tuple[str, str, Loc]] = [
        (f"{interface}Client", f"the client class of interface '{interface}'", ("interface",)),
        (f"Async{interface}Client", f"the async client class of interface '{interface}'", ("interface",)),
        (f"{interface}Server", f"the server class of interface '{interface}'", ("interface",)),
        (f"{interface}Protocol", f"the protocol class of interface '{interface}'", ("interface",)),
    ]
    for name, method in idl.methods.items():
        if method.returns is not None and method.returns.fields is not None:
            names.append((MethodSpec(name).result_name, f"the result model of method '{name}'", ("methods", name)))
    return names


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(candidates), n=1)
    return f"; did you mean '{close[0]}'?" if close else ""


def _breaking_refs(expr: TypeExpr) -> Iterable[str]:
    """The names a value of this type always contains: not behind ``| None``, a list, a dict or ``tuple[T, ...]``."""
    if expr.kind == "named":
        yield expr.name
    elif expr.kind == "tuple" and not expr.variadic:
        for arg in expr.args:
            yield from _breaking_refs(arg)


class _Checker:
    def __init__(self, file: ParsedFile, imported: Sequence[ParsedFile]) -> None:
        self.file = file
        self.idl = file.idl
        self.imported = imported
        self.errors: list[IdlError] = []
        self.enums: dict[str, list[str]] = {}
        self.structs: dict[str, Mapping[str, FieldDecl]] = {}
        self.error_names: set[str] = set()
        for idl in [*(other.idl for other in imported), self.idl]:
            self.enums.update((name, enum.values) for name, enum in idl.enums.items())
            self.structs.update((name, struct.fields) for name, struct in idl.structs.items())
            self.error_names.update(idl.errors)
        self.defaults = DefaultChecker(self.enums, self.structs)

    def error(self, loc: Loc, message: str) -> None:
        self.errors.append(IdlError(self.file.path, self.file.tree.line_of(loc), message))

    def run(self) -> list[IdlError]:
        self.check_interface_name()
        self.check_type_names()
        for name, enum in self.idl.enums.items():
            self.check_enum(("enums", name), enum.values)
        for section, reserved, owner in (
            ("structs", RESERVED_MODEL_FIELD_NAMES, "pydantic BaseModel"),
            ("errors", RESERVED_ERROR_FIELD_NAMES, "runtime.RemoteError"),
        ):
            for name, struct in getattr(self.idl, section).items():
                for field_name, field in struct.fields.items():
                    loc = (section, name, "fields", field_name)
                    self.check_field_name(loc, field_name, reserved, owner)
                    self.check_typed(loc, field)
        self.check_members()
        self.check_properties()
        self.check_signals()
        self.check_methods()
        self.check_struct_cycles()
        return self.errors

    # names

    def valid_name(self, loc: Loc, name: str, what: str) -> bool:
        if not name.isidentifier():
            self.error(loc, f"{what} is not a valid name; use letters, digits and '_', not starting with a digit")
            return False
        if keyword.iskeyword(name):
            self.error(loc, f"{what} is a Python keyword; choose another name")
            return False
        return True

    def check_interface_name(self) -> None:
        self.valid_name(("interface",), self.idl.interface, f"interface name '{self.idl.interface}'")

    def check_type_names(self) -> None:
        """Enums, structs, errors and generated classes share the module's namespace, imports included."""
        taken: dict[str, str] = {}
        for other in self.imported:
            for section in ("enums", "structs", "errors"):
                for name in getattr(other.idl, section):
                    taken[name] = f"{describe((section, name))} of {other.path}:{other.tree.line_of((section, name))}"
        generated: dict[str, str] = {}
        for name, what, loc in generated_names(self.idl):
            if name in RESERVED_MODULE_NAMES:
                self.error(loc, f"{what} would be named '{name}', which generated code uses; rename it")
            elif name in taken or name in generated:
                clash = taken.get(name) or generated[name]
                self.error(loc, f"{what} would be named '{name}', like {clash}; rename one")
            generated.setdefault(name, what)
        for section in ("enums", "structs", "errors"):
            for name in getattr(self.idl, section):
                loc = (section, name)
                what = describe(loc)
                if not self.valid_name(loc, name, what):
                    continue
                if name in RESERVED_MODULE_NAMES:
                    self.error(loc, f"{what} would shadow '{name}', which generated code uses; rename it")
                elif name in taken:
                    self.error(loc, f"{what} is declared twice: it is also {taken[name]}; rename one")
                elif name in generated:
                    self.error(loc, f"{what} has the name of {generated[name]}; rename it")
                taken.setdefault(name, f"{what} on line {self.file.tree.line_of(loc)}")

    def check_enum(self, loc: Loc, values: list[str]) -> None:
        if not values:
            self.error(loc, f"{describe(loc)} has no values; give at least one")
        seen: set[str] = set()
        for index, value in enumerate(values):
            value_loc = (*loc, "values", index)
            what = f"value '{value}' of {describe(loc)}"
            if not self.valid_name(value_loc, value, what):
                continue
            if value.startswith("_"):
                self.error(value_loc, f"{what} starts with '_', which enum keeps for itself; rename it")
            elif value in RESERVED_ENUM_VALUES:
                self.error(value_loc, f"{what} would shadow the enum member's own '.{value}'; rename it")
            elif value in seen:
                self.error(value_loc, f"{what} is given twice")
            seen.add(value)

    def check_field_name(self, loc: Loc, name: str, reserved: frozenset[str], owner: str) -> None:
        """A field of a generated class must not start with '_' nor shadow one of ``owner``'s attributes."""
        what = describe(loc)
        if not self.valid_name(loc, name, what):
            return
        if name.startswith("_"):
            self.error(loc, f"{what} starts with '_', which {owner} keeps for private attributes; rename it")
        elif name in reserved:
            self.error(loc, f"{what} would shadow {owner}'s own '{name}'; rename it")

    def check_argument_name(self, loc: Loc, name: str, reserved: frozenset[str]) -> None:
        what = describe(loc)
        if self.valid_name(loc, name, what) and name in reserved:
            self.error(loc, f"{what} is a name the generated method uses itself; rename it")

    def check_members(self) -> None:
        """Properties, signals and methods are all attributes of the same client and server classes."""
        taken: dict[str, str] = {}
        for section in ("properties", "signals", "methods"):
            for name, member in getattr(self.idl, section).items():
                loc = (section, name)
                what = describe(loc)
                if not self.valid_name(loc, name, what):
                    continue
                if name.startswith("_"):
                    self.error(loc, f"{what} starts with '_', which the runtime keeps for itself; rename it")
                elif name in RESERVED_MEMBER_NAMES:
                    self.error(loc, f"{what} would shadow the client's or server's own '{name}'; rename it")
                elif name in taken:
                    self.error(loc, f"{what} has the same name as {taken[name]}; rename one")
                taken.setdefault(name, f"{what} on line {self.file.tree.line_of(loc)}")
                if section == "properties" and member.writable:
                    taken.setdefault(f"set_{name}", f"the server's 'set_{name}' hook of writable {what}")

    # types, constraints and defaults

    def parse(self, loc: Loc, text: str) -> TypeExpr | None:
        """The parsed type, when it parses and every name in it is a declared enum or struct."""
        try:
            expr = parse_type(text)
        except TypeSyntaxError as exc:
            hint = _QUOTE_HINT if text.count("[") != text.count("]") else ""
            self.error(loc, f"{describe(loc)} has a malformed type: {exc}{hint}")
            return None
        sound = True
        for name in expr.names():
            if name in self.enums or name in self.structs:
                continue
            sound = False
            if name in self.error_names:
                self.error(loc, f"{describe(loc)} has type '{name}', an error; only enums and structs are types")
            else:
                hint = _suggest(name, [*self.enums, *self.structs, *BUILTINS])
                advice = hint or "; declare it under 'enums' or 'structs', or import the file that does"
                self.error(loc, f"unknown type '{name}' in {describe(loc)}{advice}")
        return expr if sound else None

    def check_typed(self, loc: Loc, decl: ConstrainedType) -> TypeExpr | None:
        """Check a field, argument, property or return; give its type when all is well."""
        expr = self.parse((*loc, "type"), decl.type)
        constraints = decl.constraints()
        if not self.check_constraints(loc, expr, constraints) or expr is None:
            return None
        if isinstance(decl, FieldDecl) and decl.has_default:
            try:
                problem = self.defaults.problem(decl.type, constraints, decl.default)
            except Unchecked:
                return expr
            if problem is not None:
                shown = _json_text(decl.default)
                self.error((*loc, "default"), f"default {shown} of {describe(loc)} does not fit type {expr}: {problem}")
                return None
        return expr

    def check_constraints(self, loc: Loc, expr: TypeExpr | None, constraints: Mapping[str, Any]) -> bool:
        problems = constraint_problems(describe(loc), expr, constraints)
        for name, message in problems:
            self.error((*loc, name), message)
        return not problems

    # properties, signals, methods

    def check_properties(self) -> None:
        for name, prop in self.idl.properties.items():
            loc = ("properties", name)
            expr = self.check_typed(loc, prop)
            if prop.notify is None:
                continue
            signal = self.idl.signals.get(prop.notify)
            if signal is None:
                hint = _suggest(prop.notify, self.idl.signals) or "; declare it under 'signals'"
                message = f"'notify' of {describe(loc)} names no declared signal '{prop.notify}'{hint}"
                self.error((*loc, "notify"), message)
                continue
            types = [_canonical(arg.type) for arg in signal.args.values()]
            if expr is not None and types != [str(expr)]:
                self.error(
                    ("signals", prop.notify),
                    f"signal '{prop.notify}' notifies {describe(loc)}, so it takes one argument of type {expr}, "
                    f"e.g. args: {{{name}: {expr}}}",
                )

    def check_signals(self) -> None:
        for name, signal in self.idl.signals.items():
            for arg_name, arg in signal.args.items():
                loc = ("signals", name, "args", arg_name)
                self.check_argument_name(loc, arg_name, frozenset({"self"}))
                self.check_typed(loc, arg)

    def check_methods(self) -> None:
        for name, method in self.idl.methods.items():
            loc = ("methods", name)
            for arg_name, arg in method.args.items():
                arg_loc = (*loc, "args", arg_name)
                self.check_argument_name(arg_loc, arg_name, RESERVED_ARGUMENT_NAMES)
                self.check_typed(arg_loc, arg)
            returns = method.returns
            if returns is not None and returns.fields is not None:
                for field_name, field in returns.fields.items():
                    field_loc = (*loc, "returns", "fields", field_name)
                    self.check_field_name(field_loc, field_name, RESERVED_MODEL_FIELD_NAMES, "pydantic BaseModel")
                    self.check_typed(field_loc, field)
            elif returns is not None:
                self.check_typed((*loc, "returns"), returns)
            if method.yields is not None:
                self.check_typed((*loc, "yields"), method.yields)
            self.check_stream(loc, method.yields is not None, method.oneway, method.latest)
            for index, error in enumerate(method.raises):
                if error not in self.error_names:
                    hint = _suggest(error, self.error_names) or "; declare it under 'errors'"
                    message = f"'raises' of {describe(loc)} names no declared error '{error}'{hint}"
                    self.error((*loc, "raises", index), message)
            if method.oneway and returns is not None:
                self.error(
                    (*loc, "oneway"),
                    f"{describe(loc)} is oneway, so nobody waits for what it returns; remove 'returns' or 'oneway'",
                )
            if method.timeout is not None and not method.timeout > 0:
                self.error(
                    (*loc, "timeout"),
                    f"'timeout' of {describe(loc)} must be a positive number of seconds, or null to wait for ever",
                )

    def check_stream(self, loc: Loc, stream: bool, oneway: bool, latest: bool) -> None:
        """A stream has a reader, so it is never oneway; only a stream has items to skip."""
        if stream and oneway:
            self.error(
                (*loc, "yields"),
                f"{describe(loc)} yields items, so its caller reads them and it cannot be oneway; "
                "remove 'oneway' or 'yields'",
            )
        if latest and not stream:
            self.error(
                (*loc, "latest"),
                f"'latest' of {describe(loc)} is for a stream: add 'yields' with the type of its items, "
                "or remove 'latest'",
            )

    def check_struct_cycles(self) -> None:
        """A struct may contain itself only where the chain can end: behind ``| None``, a list, a dict."""
        edges: dict[str, list[tuple[str, str]]] = {}
        for name, struct in self.idl.structs.items():
            edges[name] = []
            for field_name, field in struct.fields.items():
                try:
                    refs = _breaking_refs(parse_type(field.type))
                    edges[name].extend((field_name, ref) for ref in refs if ref in self.idl.structs)
                except TypeSyntaxError:
                    continue
        reported: set[str] = set()
        for start in self.idl.structs:
            if start in reported:
                continue
            path = _cycle(start, edges)
            if path is None:
                continue
            reported.update(struct for struct, _ in path)
            chain = " -> ".join(f"{struct}.{field}" for struct, field in path)
            self.error(
                ("structs", start, "fields", path[0][1]),
                f"struct '{start}' contains itself ({chain} -> {start}), so no value could be built; "
                "make one of these fields optional ('T | None') or a list",
            )


def _cycle(start: str, edges: Mapping[str, list[tuple[str, str]]]) -> list[tuple[str, str]] | None:
    """The shortest chain of (struct, field) from ``start`` back to itself, if any."""
    paths: dict[str, list[tuple[str, str]]] = {start: []}
    queue = [start]
    while queue:
        struct = queue.pop(0)
        for field, target in edges.get(struct, []):
            path = [*paths[struct], (struct, field)]
            if target == start:
                return path
            if target not in paths:
                paths[target] = path
                queue.append(target)
    return None


def _canonical(text: str) -> str:
    try:
        return str(parse_type(text))
    except TypeSyntaxError:
        return text


def _json_text(value: Any) -> str:
    """A default as the user would recognise it, shortened when long."""
    text = json.dumps(value)
    return text if len(text) <= 40 else text[:37] + "..."
