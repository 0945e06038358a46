"""YAML, read with YAML 1.2's core schema, into a tree of values that know their line.

PyYAML speaks YAML 1.1, where ``on``, ``no`` and ``2024-01-01`` are not strings. We
let PyYAML scan, parse and compose (its nodes carry their position) with a loader
whose implicit types are only the core schema's, and build our own ``Node`` tree
from the composed nodes instead of running PyYAML's constructors: so there are no
timestamps, no ``<<`` merges, no ``!!binary`` or Python tags, and a key given twice
is an error rather than a silent overwrite.

Mapping keys are names in an IDL, so each key is kept as the text written for it
(``1:`` is the key ``"1"``), which the checks then report as "not an identifier".
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import IdlError, IdlErrors

_TAG = "tag:yaml.org,2002:"


class _CoreSchemaLoader(yaml.SafeLoader):
    """Resolves plain scalars with the YAML 1.2 core schema only; its error messages are the ones we explain."""

    yaml_implicit_resolvers: dict[Any, list[tuple[str, re.Pattern[str]]]] = {}


class _FastCoreSchemaLoader(yaml.CSafeLoader):
    """The same schema over libyaml, about three times faster; a file it refuses is read again by the other."""

    yaml_implicit_resolvers = _CoreSchemaLoader.yaml_implicit_resolvers


_CORE_RESOLVERS = {
    "null": r"null|Null|NULL|~|",
    "bool": r"true|True|TRUE|false|False|FALSE",
    "int": r"[-+]?[0-9]+|0o[0-7]+|0x[0-9a-fA-F]+",
    "float": r"[-+]?(?:\.[0-9]+|[0-9]+(?:\.[0-9]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
}
for _name, _pattern in _CORE_RESOLVERS.items():
    _CoreSchemaLoader.add_implicit_resolver(_TAG + _name, re.compile(rf"^(?:{_pattern})$"), None)


@dataclass(frozen=True)
class Node:
    """A YAML value with its 1-based line.

    ``value`` is None, a bool, int, float or str, a ``list[Node]``, or for a mapping
    a ``dict[str, Node]`` whose keys' own lines are in ``key_lines``.
    """

    value: Any
    line: int
    key_lines: dict[str, int] = field(default_factory=dict)

    def plain(self) -> Any:
        """The value with every ``Node`` unwrapped: plain Python data for validation."""
        if isinstance(self.value, list):
            return [item.plain() for item in self.value]
        if isinstance(self.value, dict):
            return {key: item.plain() for key, item in self.value.items()}
        return self.value

    def line_of(self, loc: Sequence[str | int]) -> int:
        """The line of the deepest node that ``loc`` reaches.

        Steps that the YAML does not have (a short form such as ``x: int`` stands for
        ``x: {type: int}``) are skipped. When the path ends at a mapping key, the
        key's line is given: that is where the reader looks.
        """
        node = self
        line = self.line
        for step in loc:
            if isinstance(node.value, dict) and step in node.value:
                line = node.key_lines[str(step)]
                node = node.value[step]
            elif isinstance(node.value, list) and isinstance(step, int) and 0 <= step < len(node.value):
                node = node.value[step]
                line = node.line
        return line


class _Builder:
    """Turns PyYAML's composed nodes into ``Node``s, collecting mistakes as it goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.errors: list[IdlError] = []
        self.active: set[int] = set()

    def error(self, node: yaml.Node, message: str) -> None:
        self.errors.append(IdlError(self.path, node.start_mark.line + 1, message))

    def build(self, node: yaml.Node) -> Node:
        line = node.start_mark.line + 1
        if id(node) in self.active:
            self.error(node, "an alias refers to the value that contains it; YAML here must not be recursive")
            return Node(None, line)
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self.mapping(node)
            if isinstance(node, yaml.SequenceNode):
                return Node([self.build(item) for item in node.value], line)
            return Node(self.scalar(node), line)
        finally:
            self.active.discard(id(node))

    def mapping(self, node: yaml.MappingNode) -> Node:
        values: dict[str, Node] = {}
        key_lines: dict[str, int] = {}
        for key_node, value_node in node.value:
            key_line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.error(key_node, "a key must be a plain name, not a list or a mapping")
                continue
            key = str(key_node.value)
            if key in values:
                self.error(key_node, f"key '{key}' is given twice; the first is on line {key_lines[key]}")
                continue
            values[key] = self.build(value_node)
            key_lines[key] = key_line
        return Node(values, node.start_mark.line + 1, key_lines)

    def scalar(self, node: yaml.Node) -> Any:
        text = str(node.value)
        kind = node.tag.removeprefix(_TAG) if node.tag.startswith(_TAG) else node.tag
        try:
            if kind == "str":
                return text
            if kind == "null":
                return None
            if kind == "bool":
                return _BOOLS[text]
            if kind == "int":
                return _int(text)
            if kind == "float":
                return _float(text)
        except (KeyError, ValueError):
            self.error(node, f"{text!r} is not a valid {kind}")
            return None
        tag = "!!" + kind if node.tag.startswith(_TAG) else node.tag
        self.error(node, f"tag {tag} is not supported; an IDL holds only strings, numbers, booleans and null")
        return None


_BOOLS = {word: word.lower() == "true" for word in ("true", "True", "TRUE", "false", "False", "FALSE")}


def _int(text: str) -> int:
    if text.startswith("0o"):
        return int(text[2:], 8)
    if text.startswith("0x"):
        return int(text[2:], 16)
    return int(text)


def _float(text: str) -> float:
    lowered = text.lower()
    if lowered.endswith(".inf"):
        return -math.inf if lowered.startswith("-") else math.inf
    if lowered == ".nan":
        return math.nan
    return float(text)


# PyYAML's problem texts, in order of precedence, and what we say instead.
_PROBLEMS: tuple[tuple[str, str], ...] = (
    (
        "expected ',' or '}', but got '['",
        'inside {...}, quote a type that has brackets, e.g. {type: "tuple[int, int]"}',
    ),
    ("expected ',' or ']', but got '['", 'a type with brackets inside [...] must be quoted, e.g. ["list[int]"]'),
    ("expected ',' or '}'", "a {...} mapping is not closed or its items are not separated by ','"),
    ("expected ',' or ']'", "a [...] list is not closed or its items are not separated by ','"),
    ("found character '\\t'", "a tab character; indent YAML with spaces"),
    ("mapping values are not allowed here", "a ':' where a value was expected; quote a value that contains ': '"),
    ("found undefined alias", "an alias (*name) that no anchor (&name) defines"),
    ("could not find expected ':'", "a line that is not 'key: value'; check the indentation and the ':'"),
    ("did not find expected key", "a line that is not 'key: value'; check the indentation"),
    ("did not find expected '-' indicator", "a list item is not indented like the others"),
    ("found unexpected end of stream", "the file ends inside a quoted string or a bracket; close it"),
    ("expected the node content, but found '<stream end>'", "the file ends inside a bracket; close it"),
    ("found unknown escape character", "an unknown escape in a double-quoted string; use single quotes or '\\\\'"),
    ("but found another document", "more than one YAML document ('---'); write one interface a file"),
)


def _explain(problem: str) -> str:
    for known, message in _PROBLEMS:
        if problem.startswith(known):
            return f"invalid YAML: {message}"
    return f"invalid YAML: {problem}"


def load_yaml(text: str, path: Path) -> Node:
    """Parse one IDL file's text; raise ``IdlErrors`` naming ``path`` when it is not valid YAML."""
    fast = _FastCoreSchemaLoader(text)
    try:
        root = fast.get_single_node()
    except yaml.YAMLError:
        root = _read_slowly(text, path)
    finally:
        fast.dispose()
    if root is None:
        raise IdlErrors([IdlError(path, 1, "the file is empty; an IDL file starts with 'interface:' and 'version:'")])
    builder = _Builder(path)
    tree = builder.build(root)
    if builder.errors:
        raise IdlErrors(builder.errors)
    return tree


def _read_slowly(text: str, path: Path) -> yaml.Node | None:
    """Parse with the pure-Python parser, whose messages `_explain` knows, and report what it finds."""
    loader = _CoreSchemaLoader(text)
    try:
        root: yaml.Node | None = loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise IdlErrors([IdlError(path, line, _explain(exc.problem or exc.context or "unreadable"))]) from exc
    except yaml.YAMLError as exc:
        raise IdlErrors([IdlError(path, None, f"invalid YAML: {exc}")]) from exc
    finally:
        loader.dispose()
    return root
