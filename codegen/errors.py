"""IDL errors: what is wrong, in which file, on which line.

Every stage of loading (YAML, structure, semantics) reports ``IdlError``s; the
loader collects those of a whole run and raises them together as ``IdlErrors``,
so a user fixes all their mistakes in one round.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

Loc = tuple[str | int, ...]
"""A place in an IDL file as the keys leading to it: ``("properties", "mode", "notify")``."""


@dataclass(frozen=True, order=True)
class IdlError:
    """One mistake in an IDL file. ``line`` is 1-based, or None for the file as a whole."""

    path: Path
    line: int | None
    message: str

    def __str__(self) -> str:
        if self.line is None:
            return f"{self.path}: {self.message}"
        return f"{self.path}:{self.line}: {self.message}"


def _sort_key(error: IdlError) -> tuple[str, int, str]:
    return (str(error.path), error.line or 0, error.message)


class IdlErrors(Exception):
    """All the mistakes found in a run, sorted by file and line; ``str()`` prints one a line."""

    def __init__(self, errors: Iterable[IdlError]) -> None:
        self.errors: list[IdlError] = sorted(set(errors), key=_sort_key)
        super().__init__("\n".join(str(error) for error in self.errors))


_SECTIONS = {
    "enums": "enum",
    "structs": "struct",
    "errors": "error",
    "properties": "property",
    "signals": "signal",
    "methods": "method",
}
_MEMBERS = {"fields": "field", "args": "argument"}


def describe(loc: Sequence[str | int]) -> str:
    """Name the declaration that ``loc`` points into, in plain English.

    ``("structs", "ImageInfo", "fields", "rotation", "ge")`` is
    ``"field 'rotation' of struct 'ImageInfo'"``; the top level is ``"the file"``.
    """
    if len(loc) < 2 or loc[0] not in _SECTIONS:
        return "the file"
    owner = f"{_SECTIONS[str(loc[0])]} '{loc[1]}'"
    rest = loc[2:]
    if rest[:1] == ("returns",):
        if rest[1:2] == ("fields",) and len(rest) >= 3:
            return f"result field '{rest[2]}' of {owner}"
        return f"the return of {owner}"
    if rest[:1] == ("yields",):
        return f"the items of {owner}"
    if len(rest) >= 2 and rest[0] in _MEMBERS:
        return f"{_MEMBERS[str(rest[0])]} '{rest[1]}' of {owner}"
    return owner
