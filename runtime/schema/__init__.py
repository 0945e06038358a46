"""What an interface is: the description, the IDL's type language, validation and the compatibility check.

The one part of the runtime that the code generator shares: ``codegen`` builds an
``Interface`` from an IDL file, generated modules declare one, and the runtime
validates and compares what travels against it.
"""

from runtime.schema.compat import check
from runtime.schema.interface import (
    REQUIRED,
    EnumSpec,
    ErrorSpec,
    FieldSpec,
    Interface,
    MethodKind,
    MethodSpec,
    PropertySpec,
    SignalSpec,
    StructSpec,
)
from runtime.schema.ndarray import NDArray
from runtime.schema.types import BUILTINS, GENERICS, TypeExpr, TypeSyntaxError, parse_type
from runtime.schema.validation import CallPlan, InterfaceBound, Shape, Tables, tables

__all__ = [
    "BUILTINS",
    "GENERICS",
    "REQUIRED",
    "CallPlan",
    "EnumSpec",
    "ErrorSpec",
    "FieldSpec",
    "Interface",
    "InterfaceBound",
    "MethodKind",
    "MethodSpec",
    "NDArray",
    "PropertySpec",
    "Shape",
    "SignalSpec",
    "StructSpec",
    "Tables",
    "TypeExpr",
    "TypeSyntaxError",
    "check",
    "parse_type",
    "tables",
]
