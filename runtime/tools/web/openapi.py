"""``/api/openapi.json``: an OpenAPI 3.1 document of the web API, built from the devices' live descriptions.

Each device gets its own paths; every argument's, property's and result's JSON
Schema is pydantic's, from the same validators the dynamic client uses
(``runtime.schema.tables``). Named types (enums, structs, result models) become
components named ``<Interface>.<Type>``, so two interfaces may both have a
``Position``.
"""

from __future__ import annotations

import copy
import enum
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter

from runtime import Interface, MethodSpec
from runtime.schema import parse_type, tables

ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["type", "message"],
            "properties": {
                "type": {"type": "string"},
                "message": {"type": "string"},
                "errors": {"type": "array", "items": {"type": "object"}, "description": "pydantic's error list"},
            },
        }
    },
}
_REF = {"$ref": "#/components/schemas/Error"}
_ERRORS = {
    "404": {"description": "no such device, property or method", "content": {"application/json": {"schema": _REF}}},
    "422": {"description": "a value refused by validation", "content": {"application/json": {"schema": _REF}}},
    "502": {
        "description": "the device raised an error, or is unreachable",
        "content": {"application/json": {"schema": _REF}},
    },
    "504": {"description": "the device did not answer in time", "content": {"application/json": {"schema": _REF}}},
}
_DEVICE = {"type": "object", "properties": {k: {"type": "string"} for k in ("name", "interface", "address")}}


class _Schemas:
    """JSON Schemas of one interface's types, their definitions gathered into the document's components."""

    def __init__(self, interface: Interface, components: dict[str, Any]) -> None:
        self._tables = tables(interface)
        self._prefix = interface.name
        self._components = components

    def of(self, annotation: Any, *, named: bool = True) -> dict[str, Any]:
        """The schema of ``annotation``; an enum or a model (``named``) is a component, and this a reference to it."""
        template = f"#/components/schemas/{self._prefix}.{{model}}"
        schema = TypeAdapter(annotation).json_schema(ref_template=template)
        for name, definition in schema.pop("$defs", {}).items():
            self._components[f"{self._prefix}.{name}"] = definition
        if named and isinstance(annotation, type) and issubclass(annotation, BaseModel | enum.Enum):
            self._components[f"{self._prefix}.{annotation.__name__}"] = schema
            return {"$ref": template.format(model=annotation.__name__)}
        return schema

    def args(self, method: MethodSpec) -> dict[str, Any]:
        model = self._tables.model(f"{method.result_name[:-6]}Args", method.args, ConfigDict(extra="forbid"))
        schema = self.of(model, named=False)
        schema.pop("title", None)
        return schema

    def type(self, text: str) -> dict[str, Any]:
        return self.of(self._tables.resolve(parse_type(text)))

    def value(self, name: str) -> dict[str, Any]:
        return self.of(self._tables.annotation(self._tables.properties[name]))


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _wrapped(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "required": [key], "properties": {key: schema}}


def _method(schemas: _Schemas, device: str, method: MethodSpec) -> dict[str, Any]:
    tags = [device]
    body = {"required": False, "content": {"application/json": {"schema": schemas.args(method)}}}
    if method.stream:
        item = schemas.type(method.yields.type) if method.yields is not None else {}
        text = (
            "A stream: open this address as a WebSocket, send the arguments (this body) as the first message; "
            "each item comes as {'item': ...} (a bytes item as a binary message), then {'result': ...} "
            "or {'error': ...}; closing the socket cancels the stream. x-zidl-item is the items' schema."
        )
        return {
            "get": {
                "summary": method.doc,
                "description": text,
                "x-zidl-item": item,
                "x-zidl-arguments": schemas.args(method),
                "tags": tags,
                "responses": {"101": {"description": "switching to the WebSocket"}, **_ERRORS},
            }
        }
    if method.return_type == "bytes":
        ok: dict[str, Any] = {
            "description": "the bytes, raw, with their media type",
            "content": {
                "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                "image/*": {"schema": {"type": "string", "format": "binary"}},
            },
        }
    else:
        ok = _json(_wrapped("result", schemas.type(method.return_type)), "the result")
    parameters = [
        {
            "name": "timeout",
            "in": "query",
            "required": False,
            "description": "seconds, or none",
            "schema": {"type": "string"},
        }
    ]
    operation = {
        "summary": method.doc or method.name,
        "tags": tags,
        "operationId": f"{device}.{method.name}",
        "parameters": parameters,
        "requestBody": body,
        "responses": {"200": ok, **_ERRORS},
    }
    return {"post": operation}


def document(devices: dict[str, Interface], *, title: str = "zidl web") -> dict[str, Any]:
    """The OpenAPI document of the API for ``devices`` (name: the description it gave)."""
    components: dict[str, Any] = {"Error": copy.deepcopy(ERROR), "Device": _DEVICE}
    paths: dict[str, Any] = {
        "/api/devices": {
            "get": {
                "summary": "the registered devices",
                "responses": {
                    "200": _json({"type": "array", "items": {"$ref": "#/components/schemas/Device"}}, "the devices")
                },
            }
        },
    }
    for name, interface in sorted(devices.items()):
        schemas = _Schemas(interface, components)
        base = f"/api/devices/{name}"
        paths[base] = {
            "get": {
                "summary": f"the description of {name} ({interface.name})",
                "tags": [name],
                "responses": {"200": _json({"type": "object"}, "the description"), **_ERRORS},
            }
        }
        for prop in interface.properties:
            value = _wrapped("value", schemas.value(prop.name))
            operations: dict[str, Any] = {
                "get": {
                    "summary": prop.doc or prop.name,
                    "tags": [name],
                    "responses": {"200": _json(value, "the value"), **_ERRORS},
                }
            }
            if prop.writable:
                operations["put"] = {
                    "summary": f"write {prop.name}",
                    "tags": [name],
                    "requestBody": {"required": True, "content": {"application/json": {"schema": value}}},
                    "responses": {"200": _json(value, "the value stored"), **_ERRORS},
                }
            paths[f"{base}/properties/{prop.name}"] = operations
        for method in interface.methods:
            paths[f"{base}/methods/{method.name}"] = _method(schemas, name, method)
        paths[f"{base}/events"] = {
            "get": {
                "summary": f"signals of {name}, as a WebSocket: a JSON message an emission",
                "tags": [name],
                "responses": {"101": {"description": "the WebSocket"}},
            }
        }
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": "1"},
        "paths": paths,
        "components": {"schemas": components},
    }
