"""TFX's values as Vertex ML Metadata holds them, read back as MLMD values.

TFX's Vertex entrypoint writes an artifact's properties and custom properties
into one `metadata` Struct (a custom property named like a typed one gets
the `custom:` prefix) and a step's parameters as `input:<name>`; a Struct
knows only JSON, so an int arrives as a double. The declared type (from the
pipeline spec) restores it; without one, a whole number is read as an int.
"""

from typing import Any

from google.protobuf import json_format, struct_pb2
from ml_metadata.proto import metadata_store_pb2

CUSTOM_PREFIX = "custom:"  # TFX's mark on a custom property named like a typed one
PARAMETER_PREFIX = "input:"
_TFX_TITLE = "tfx."
_JSON_SINGLE_VALUE = "__value__"  # how TFX keeps a non-object JSON value in a Struct
_INT_TYPES = {"NUMBER_INTEGER", "INT", "integer", "int"}
_DOUBLE_TYPES = {"NUMBER_DOUBLE", "DOUBLE", "number", "double"}
_STRING_TYPES = {"STRING", "string"}
_BOOL_TYPES = {"BOOLEAN", "boolean"}


def schema_title(type_name: str) -> str:
    """TFX's schema title on Vertex: `tfx.<Name>` for its own types, the name for others."""
    return type_name if "." in type_name else f"{_TFX_TITLE}{type_name}"


def type_name(title: str) -> str:
    """The MLMD type name a local run records for a Vertex schema title."""
    return title[len(_TFX_TITLE) :] if title.startswith(_TFX_TITLE) else title


def set_typed(target: metadata_store_pb2.Value, value_type: str, value: Any) -> bool:
    """Sets `target` as the declared type says; False when the value does not fit it."""
    if value_type in _INT_TYPES and isinstance(value, (int, float)) and float(value).is_integer():
        target.int_value = int(value)
    elif value_type in _DOUBLE_TYPES and isinstance(value, (int, float)):
        target.double_value = float(value)
    elif value_type in _STRING_TYPES and isinstance(value, str):
        target.string_value = value
    elif value_type in _BOOL_TYPES and isinstance(value, bool):
        target.bool_value = value
    elif value_type and value_type not in _INT_TYPES | _DOUBLE_TYPES | _STRING_TYPES | _BOOL_TYPES:
        target.struct_value.CopyFrom(_struct(value))
    else:
        return False
    return True


def set_untyped(target: metadata_store_pb2.Value, value: Any) -> None:
    """A value without a declared type: TFX writes an int as a JSON number, so a whole
    number is read back as an int (a whole-numbered double reads as an int too)."""
    if isinstance(value, bool):
        target.bool_value = value
    elif isinstance(value, (int, float)):
        if float(value).is_integer():
            target.int_value = int(value)
        else:
            target.double_value = value
    elif isinstance(value, str):
        target.string_value = value
    else:
        target.struct_value.CopyFrom(_struct(value))


def _struct(value: Any) -> struct_pb2.Struct:
    """TFX's Struct for a JSON value: an object as is, anything else under `__value__`."""
    result = struct_pb2.Struct()
    json_format.ParseDict(value if isinstance(value, dict) else {_JSON_SINGLE_VALUE: value}, result)
    return result
