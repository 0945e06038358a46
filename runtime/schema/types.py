"""The IDL's type language: parsed by a small recursive-descent parser, never evaluated.

Grammar::

    type     := primary ("|" "None")?
    primary  := NAME ("[" type ("," type)* ("," "...")? "]")?

``TypeExpr`` is the parsed form. It prints back in canonical spelling
(``str(expr)``), names the Python annotation that the generator writes
(``annotation()``), and lists the declared names it refers to (``names()``).
The runtime turns it into a Python type for pydantic in ``_validation``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

BUILTINS = frozenset({"bool", "int", "float", "str", "bytes", "ndarray", "any", "none"})
GENERICS = frozenset({"list", "dict", "tuple"})

_BUILTIN_ANNOTATIONS = {
    "bool": "bool",
    "int": "int",
    "float": "float",
    "str": "str",
    "bytes": "bytes",
    "ndarray": "NDArray",
    "any": "Any",
    "none": "None",
}

_TOKEN = re.compile(r"\s*(?:(\.\.\.)|([A-Za-z_][A-Za-z0-9_]*)|([\[\],|]))")


class TypeSyntaxError(ValueError):
    """A type expression that does not parse; the message says where."""


@dataclass(frozen=True)
class TypeExpr:
    """One node of a parsed type: a builtin, a declared name, a generic or an optional.

    ``kind`` is a builtin name, ``"list" | "dict" | "tuple" | "optional"``, or the
    name of a declared enum or struct (``"named"`` with ``name`` set).
    ``variadic`` marks ``tuple[T, ...]``.
    """

    kind: str
    args: tuple[TypeExpr, ...] = ()
    name: str = ""
    variadic: bool = False

    def __str__(self) -> str:
        if self.kind == "named":
            return self.name
        if self.kind == "optional":
            return f"{self.args[0]} | None"
        if self.kind in GENERICS:
            inner = ", ".join(str(arg) for arg in self.args)
            return f"{self.kind}[{inner}{', ...' if self.variadic else ''}]"
        return self.kind

    def annotation(self) -> str:
        """The Python annotation the generated code writes for this type."""
        if self.kind == "named":
            return self.name
        if self.kind == "optional":
            return f"{self.args[0].annotation()} | None"
        if self.kind in GENERICS:
            inner = ", ".join(arg.annotation() for arg in self.args)
            return f"{self.kind}[{inner}{', ...' if self.variadic else ''}]"
        return _BUILTIN_ANNOTATIONS[self.kind]

    def walk(self) -> Iterator[TypeExpr]:
        """This node and every node below it, depth first."""
        yield self
        for arg in self.args:
            yield from arg.walk()

    def names(self) -> list[str]:
        """The declared enum and struct names this type refers to, in order."""
        return [node.name for node in self.walk() if node.kind == "named"]

    @property
    def is_optional(self) -> bool:
        return self.kind == "optional"

    @property
    def base(self) -> TypeExpr:
        """The type without its ``| None``."""
        return self.args[0] if self.kind == "optional" else self


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None:
            raise TypeSyntaxError(f"unexpected {text[pos:].strip()[:1]!r} in type {text!r}")
        tokens.append(match.group(match.lastindex or 0))
        pos = match.end()
    return tokens


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokens(text)
        self.pos = 0

    def peek(self) -> str | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if token is None:
            raise TypeSyntaxError(f"type {self.text!r} ends too early")
        if expected is not None and token != expected:
            raise TypeSyntaxError(f"expected {expected!r} but found {token!r} in type {self.text!r}")
        self.pos += 1
        return token

    def parse(self) -> TypeExpr:
        if not self.tokens:
            raise TypeSyntaxError("empty type")
        expr = self.union()
        if self.peek() is not None:
            raise TypeSyntaxError(f"unexpected {self.peek()!r} in type {self.text!r}")
        return expr

    def union(self) -> TypeExpr:
        expr = self.primary()
        if self.peek() == "|":
            self.take()
            other = self.primary()
            if other.kind != "none" or expr.kind in ("none", "any", "optional"):
                raise TypeSyntaxError(f"only 'T | None' unions are supported, not {self.text!r}")
            expr = TypeExpr("optional", (expr,))
            if self.peek() == "|":
                raise TypeSyntaxError(f"only 'T | None' unions are supported, not {self.text!r}")
        return expr

    def primary(self) -> TypeExpr:
        token = self.take()
        if not (token[0].isalpha() or token[0] == "_"):
            raise TypeSyntaxError(f"expected a type name but found {token!r} in type {self.text!r}")
        word = "none" if token == "None" else token
        if word in GENERICS:
            return self.generic(word)
        if self.peek() == "[":
            raise TypeSyntaxError(f"{word!r} takes no parameters in type {self.text!r}")
        if word in BUILTINS:
            return TypeExpr(word)
        return TypeExpr("named", name=word)

    def generic(self, kind: str) -> TypeExpr:
        if self.peek() != "[":
            raise TypeSyntaxError(f"{kind!r} needs parameters, as in {kind}[...], in type {self.text!r}")
        self.take("[")
        args = [self.union()]
        variadic = False
        while self.peek() == ",":
            self.take()
            if self.peek() == "...":
                self.take()
                variadic = True
                break
            args.append(self.union())
        self.take("]")
        if kind == "list" and (len(args) != 1 or variadic):
            raise TypeSyntaxError(f"list takes one parameter, as in list[int], in type {self.text!r}")
        if kind == "dict":
            if len(args) != 2 or variadic:
                raise TypeSyntaxError(f"dict takes two parameters, as in dict[str, int], in type {self.text!r}")
            if args[0].kind != "str":
                raise TypeSyntaxError(f"dict keys must be str, not {args[0]}, in type {self.text!r}")
        if kind == "tuple" and variadic and len(args) != 1:
            raise TypeSyntaxError(f"write a variable-length tuple as tuple[T, ...], in type {self.text!r}")
        return TypeExpr(kind, tuple(args), variadic=variadic)


def parse_type(text: str) -> TypeExpr:
    """Parse a type expression of the IDL, raising ``TypeSyntaxError`` when it is malformed."""
    return _Parser(text).parse()
