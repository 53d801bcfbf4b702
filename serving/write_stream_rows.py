"""Logged rows as the protocol-buffer messages BigQuery's Storage Write API appends.

The Write API takes rows as serialized protobuf messages plus the message's
`DescriptorProto`. Both are derived here from the table's BigQuery schema, once
per table, so the columns the logger validates against and the fields it sends
can never disagree. Pure: no network, no BigQuery client.

Types: STRING -> string, INT64 -> int64, FLOAT64 -> double, BOOL -> bool,
TIMESTAMP -> int64 microseconds since the epoch (what BigQuery expects for a
TIMESTAMP column). REPEATED columns are repeated fields, REQUIRED columns
required ones and every other column optional, so an absent value is NULL.
"""

from __future__ import annotations

import datetime
from typing import Any, Callable, Mapping, Sequence

from google.cloud import bigquery
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_Field = descriptor_pb2.FieldDescriptorProto
_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
_MICROSECOND = datetime.timedelta(microseconds=1)
_PROTO_TYPES = {
    "STRING": _Field.TYPE_STRING,
    "INT64": _Field.TYPE_INT64,
    "INTEGER": _Field.TYPE_INT64,
    "FLOAT64": _Field.TYPE_DOUBLE,
    "FLOAT": _Field.TYPE_DOUBLE,
    "BOOL": _Field.TYPE_BOOL,
    "BOOLEAN": _Field.TYPE_BOOL,
    "TIMESTAMP": _Field.TYPE_INT64,
}
_LABELS = {
    "REQUIRED": _Field.LABEL_REQUIRED,
    "REPEATED": _Field.LABEL_REPEATED,
    "NULLABLE": _Field.LABEL_OPTIONAL,
}


def timestamp_micros(value: str) -> int:
    """An ISO-8601 timestamp (as the spool stores it) as microseconds since the epoch, UTC."""
    moment = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {value!r} has no timezone; add one, e.g. 'Z' for UTC")
    return (moment - _EPOCH) // _MICROSECOND


class RowMessages:
    """Serializes JSON rows of one table as protobuf messages of a schema-derived type."""

    def __init__(self, schema: Sequence[bigquery.SchemaField], message_name: str) -> None:
        """`message_name`: the proto message's name, a valid identifier (e.g. the table's)."""
        self.descriptor = _descriptor(schema, message_name)
        self.message_class = _message_class(self.descriptor)
        self._converters: Mapping[str, Callable[[Any], Any]] = {
            field.name: _converter(field) for field in schema
        }

    def serialize(self, row: Mapping[str, Any]) -> bytes:
        """One row (column name -> JSON value; absent or None is NULL) as message bytes."""
        message = self.message_class()
        for name, value in row.items():
            if value is None:
                continue
            convert = self._converters.get(name)
            if convert is None:
                raise ValueError(f"column {name!r} is not in the table: {sorted(self._converters)}")
            target = getattr(message, name)
            if isinstance(value, list):
                target.extend(convert(item) for item in value)
            else:
                setattr(message, name, convert(value))
        return message.SerializeToString()


def _descriptor(
    schema: Sequence[bigquery.SchemaField], message_name: str
) -> descriptor_pb2.DescriptorProto:
    descriptor = descriptor_pb2.DescriptorProto(name=message_name)
    for number, field in enumerate(schema, start=1):
        kind = field.field_type.upper()
        mode = (field.mode or "NULLABLE").upper()
        if kind not in _PROTO_TYPES:
            raise ValueError(
                f"column {field.name} has type {kind}; rows for the Write API support "
                f"{sorted(_PROTO_TYPES)}: ship this table with MLBANDITS_SHIP_METHOD=insert_all"
            )
        descriptor.field.add(
            name=field.name, number=number, type=_PROTO_TYPES[kind], label=_LABELS[mode]
        )
    return descriptor


def _message_class(descriptor: descriptor_pb2.DescriptorProto) -> type:
    """A message class of its own pool, so two tables' messages never share a name space."""
    pool = descriptor_pool.DescriptorPool()
    file = descriptor_pb2.FileDescriptorProto(name=f"{descriptor.name}.proto", syntax="proto2")
    file.message_type.add().CopyFrom(descriptor)
    pool.Add(file)
    return message_factory.MessageFactory(pool).GetPrototype(
        pool.FindMessageTypeByName(descriptor.name)
    )


def _converter(field: bigquery.SchemaField) -> Callable[[Any], Any]:
    if field.field_type.upper() == "TIMESTAMP":
        return timestamp_micros
    return lambda value: value
