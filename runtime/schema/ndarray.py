"""``NDArray``: the annotation for numpy arrays in generated code and pydantic models.

Only numeric and bool dtypes are accepted (``b i u f c``); object, structured,
string and datetime arrays are refused, because they cannot travel as raw bytes.
A list of numbers is turned into an array, which lets the command line pass one.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import numpy.typing as npt
from pydantic import GetCoreSchemaHandler, GetJsonSchemaHandler
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import PydanticCustomError, core_schema

WIRE_KINDS = frozenset("biufc")
"""The dtype kinds that travel: bool, signed, unsigned, float, complex."""


def check_dtype(dtype: np.dtype[Any]) -> None:
    """Raise ``ValueError`` unless arrays of ``dtype`` may travel."""
    if dtype.kind not in WIRE_KINDS or dtype.fields is not None or dtype.subdtype is not None:
        raise ValueError(f"arrays of dtype {dtype} cannot travel: only numeric and bool dtypes can")


def _validate(value: Any) -> npt.NDArray[Any]:
    if not isinstance(value, np.ndarray):
        if isinstance(value, list | tuple):
            try:
                value = np.asarray(value)
            except ValueError as exc:
                raise PydanticCustomError(
                    "ndarray_type", "cannot make an array of this list: {error}", {"error": str(exc)}
                ) from exc
        else:
            raise PydanticCustomError(
                "ndarray_type", "expected a numpy array, got {type}", {"type": type(value).__name__}
            )
    try:
        check_dtype(value.dtype)
    except ValueError as exc:
        raise PydanticCustomError("ndarray_dtype", "{error}", {"error": str(exc)}) from exc
    array: npt.NDArray[Any] = value
    return array


class _NDArraySchema:
    """The pydantic hook: validate with ``_validate``, serialise to nested lists in JSON mode."""

    def __get_pydantic_core_schema__(self, source: Any, handler: GetCoreSchemaHandler) -> core_schema.CoreSchema:
        return core_schema.no_info_plain_validator_function(
            _validate,
            serialization=core_schema.plain_serializer_function_ser_schema(
                lambda array: array.tolist(), when_used="json"
            ),
        )

    def __get_pydantic_json_schema__(
        self, schema: core_schema.CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        return {"type": "array", "description": "a numpy array of a numeric or bool dtype"}


NDArray = Annotated[npt.NDArray[Any], _NDArraySchema()]
"""A numpy array of any numeric or bool dtype and any shape."""
