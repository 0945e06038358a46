"""The constraints of a field, an argument, a property or a return: do they apply, and can any value meet them?"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator, Mapping
from typing import Any

from runtime.schema import TypeExpr

_NUMERIC = frozenset({"int", "float"})
_SIZED = frozenset({"str", "bytes", "list", "dict", "tuple"})
_APPLIES_TO = {
    "ge": (_NUMERIC, "int and float"),
    "gt": (_NUMERIC, "int and float"),
    "le": (_NUMERIC, "int and float"),
    "lt": (_NUMERIC, "int and float"),
    "multiple_of": (_NUMERIC, "int and float"),
    "min_length": (_SIZED, "str, bytes, list, dict and tuple"),
    "max_length": (_SIZED, "str, bytes, list, dict and tuple"),
    "pattern": (frozenset({"str"}), "str"),
}
_LOWER = ("ge", "gt")
_UPPER = ("le", "lt")


def constraint_problems(what: str, expr: TypeExpr | None, constraints: Mapping[str, Any]) -> list[tuple[str, str]]:
    """Each mistake in the constraints of ``what`` (of type ``expr``, None when it did not parse): the key, the message.

    Each constraint must apply to the type and have a sensible value; when they all
    do, no two may contradict each other.
    """
    problems = []
    for name, value in constraints.items():
        kinds, described = _APPLIES_TO[name]
        if expr is not None and expr.base.kind not in kinds:
            problems.append(
                (name, f"constraint '{name}' does not apply to type {expr} of {what}; '{name}' is for {described}")
            )
        elif isinstance(value, float) and not math.isfinite(value):
            problems.append((name, f"'{name}' of {what} must be a finite number, not {value}"))
        elif name in ("min_length", "max_length") and value < 0:
            problems.append((name, f"'{name}' of {what} must be 0 or more, not {value}"))
        elif name == "multiple_of" and value <= 0:
            problems.append((name, f"'multiple_of' of {what} must be positive, not {value}"))
        elif name == "pattern":
            try:
                re.compile(value)
            except re.error as exc:
                problems.append((name, f"'pattern' of {what} is not a valid regular expression: {exc}"))
    if not problems:
        problems = [
            (name, f"constraints of {what} contradict each other: {why}") for name, why in _contradictions(constraints)
        ]
    return problems


def _contradictions(constraints: Mapping[str, Any]) -> Iterator[tuple[str, str]]:
    """Each pair of constraints that no value meets: the later key's name, and what is wrong.

    A lower bound above an upper one (``ge`` above ``le``), or at it when either is
    strict (``gt`` at ``lt``, ``ge`` at ``lt``), and ``min_length`` above ``max_length``.
    """
    for lower in _LOWER:
        for upper in _UPPER:
            if lower not in constraints or upper not in constraints:
                continue
            low, high = constraints[lower], constraints[upper]
            strict = lower == "gt" or upper == "lt"
            if low > high or (strict and low == high):
                relation = "at or above" if strict else "above"
                yield upper, f"'{lower}' {low} is {relation} '{upper}' {high}, so no value fits"
    if constraints.get("min_length", 0) > constraints.get("max_length", float("inf")):
        low, high = constraints["min_length"], constraints["max_length"]
        yield "max_length", f"'min_length' {low} is above 'max_length' {high}, so no value fits"
