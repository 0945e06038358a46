"""A checked IDL file as the runtime's ``Interface``: the one description everything else uses.

Types are written in their canonical spelling (``str(parse_type(text))``), defaults
stay the JSON values the YAML gave, declaration order is kept.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from runtime.schema import (
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
    parse_type,
)

from .idl_model import ConstrainedType, FieldDecl, IdlFile, MethodDecl


def _canonical(text: str) -> str:
    return str(parse_type(text))


def _field(name: str, decl: ConstrainedType) -> FieldSpec:
    default = decl.default if isinstance(decl, FieldDecl) and decl.has_default else REQUIRED
    return FieldSpec(name, _canonical(decl.type), default=default, doc=decl.doc, constraints=decl.constraints())


def _fields(decls: Mapping[str, FieldDecl]) -> tuple[FieldSpec, ...]:
    return tuple(_field(name, decl) for name, decl in decls.items())


def _kind(decl: MethodDecl) -> MethodKind:
    if decl.yields is not None:
        return MethodKind.STREAM
    return MethodKind.ONEWAY if decl.oneway else MethodKind.CALL


def _method(name: str, decl: MethodDecl) -> MethodSpec:
    returns = decl.returns
    return MethodSpec(
        name,
        args=_fields(decl.args),
        returns=_field("return", returns) if returns is not None and returns.fields is None else None,
        result=_fields(returns.fields) if returns is not None and returns.fields is not None else (),
        raises=tuple(decl.raises),
        timeout=None if decl.timeout is None else float(decl.timeout),
        kind=_kind(decl),
        concurrent=decl.concurrent,
        doc=decl.doc,
        yields=_field("item", decl.yields) if decl.yields is not None else None,
        latest=decl.latest,
    )


def build_interface(idl: IdlFile, imports: Sequence[Interface]) -> Interface:
    """The description of a checked file; ``imports`` are the interfaces of its own ``imports``, in order."""
    return Interface(
        name=idl.interface,
        version=idl.version,
        doc=idl.doc,
        enums=tuple(EnumSpec(name, tuple(enum.values), doc=enum.doc) for name, enum in idl.enums.items()),
        structs=tuple(StructSpec(name, _fields(struct.fields), doc=struct.doc) for name, struct in idl.structs.items()),
        errors=tuple(ErrorSpec(name, _fields(error.fields), doc=error.doc) for name, error in idl.errors.items()),
        properties=tuple(
            PropertySpec(
                name,
                _canonical(prop.type),
                default=prop.default if prop.has_default else REQUIRED,
                doc=prop.doc,
                constraints=prop.constraints(),
                writable=prop.writable,
                notify=prop.notify,
            )
            for name, prop in idl.properties.items()
        ),
        signals=tuple(SignalSpec(name, _fields(signal.args), doc=signal.doc) for name, signal in idl.signals.items()),
        methods=tuple(_method(name, method) for name, method in idl.methods.items()),
        imports=tuple(imports),
    )
