"""Names an IDL may not use, because the generated code or its bases already use them.

This is the one place that lists them; the checks and the README read them from here.
"""

from __future__ import annotations

import keyword
from typing import Final

from pydantic import BaseModel

from runtime.schema import BUILTINS, GENERICS

RESERVED_MEMBER_NAMES: Final = frozenset(
    {
        # the client and server bases, blocking and async
        "aclose",
        "address",
        "call",
        "close",
        "closed",
        "connect",
        "disconnect",
        "emit",
        "get",
        "interface",
        "lookup",
        "name",
        "register",
        "registered_name",
        "registry",
        "run",
        "running",
        "serve",
        "set",
        "signal",
        "start",
        "stop",
        "subscribe",
        "timeout",
        "unsubscribe",
        "usage",
        "wait",
    }
)
"""Method, property and signal names that would shadow an attribute of the runtime's bases.

Names starting with ``_`` are refused as well, since the bases keep their state there.
"""

RESERVED_MODULE_NAMES: Final = frozenset(
    {
        # what a generated module imports or is built from
        "Any",
        "AsyncClient",
        "AsyncProperty",
        "AsyncReadOnlyProperty",
        "AsyncSignal",
        "AsyncStream",
        "BaseModel",
        "Client",
        "EnumSpec",
        "ErrorSpec",
        "Field",
        "FieldSpec",
        "Generator",
        "INTERFACE",
        "Interface",
        "Iterator",
        "MethodKind",
        "MethodSpec",
        "NDArray",
        "PropertySpec",
        "Protocol",
        "RemoteError",
        "Server",
        "ServerSignal",
        "Signal",
        "SignalSpec",
        "Stream",
        "StructSpec",
        "abstractmethod",
        "annotations",
        "cast",
        "enum",
        # builtins that generated code uses, and the words of the type language
        "None",
        "object",
        "property",
        "super",
        "type",
        *BUILTINS,
        *GENERICS,
    }
)
"""Enum, struct and error names that would shadow a name the generated module needs."""

RESERVED_MODEL_FIELD_NAMES: Final = frozenset(name for name in dir(BaseModel) if not name.startswith("_")) | {
    # pydantic 1 names that some pydantic 2 releases leave out of dir()
    "fields",
    "model_config",
    "model_fields",
    "model_computed_fields",
}
"""Struct and result field names that would shadow pydantic ``BaseModel`` attributes.

Names starting with ``_`` are refused as well: pydantic treats them as private.
"""

RESERVED_ERROR_FIELD_NAMES: Final = frozenset({"args", "add_note", "message", "traceback", "type", "with_traceback"})
"""Error field names that would shadow ``runtime.RemoteError`` or ``Exception`` attributes."""

RESERVED_ARGUMENT_NAMES: Final = frozenset({"self", "timeout"})
"""Method argument names the generated methods use themselves (``timeout=`` is per call)."""

RESERVED_ENUM_VALUES: Final = frozenset({"name", "value"})
"""Enum values that would shadow ``enum.Enum`` attributes."""

PYTHON_KEYWORDS: Final = frozenset(keyword.kwlist)
"""Words that cannot name anything in generated code."""
