"""Arrow record batches of BigQuery rows -> serialized tf.Examples, a batch at a time.

The result is byte for byte what TFX's BigQueryExampleGen makes of the same
rows: `row_to_example(...).SerializeToString(deterministic=True)`. Those bytes
are what the stock executor hashes to choose a row's split, so equal bytes mean
equal examples and equal splits. tfx_bsl's encoder does the per-value work in
C++; it orders each example's features arbitrarily, so each example is
re-serialized deterministically (features sorted by name).
"""

from typing import List

import pyarrow as pa
import pyarrow.compute as pc
import tensorflow as tf
from tfx_bsl.coders import example_coder

# What row_to_example accepts (INTEGER, BOOLEAN, FLOAT, STRING; scalar or
# REPEATED), as Arrow types, and the value type tfx_bsl encodes each as.
_EXAMPLE_VALUE_TYPES = {
    pa.int64(): pa.int64(),
    pa.bool_(): pa.int64(),
    pa.float64(): pa.float32(),
    pa.string(): pa.binary(),
    pa.large_string(): pa.binary(),
}


class UnsupportedColumnError(TypeError):
    """A query column has a type TFX's BigQuery conversion does not turn into a feature."""


def _value_type(field: pa.Field) -> pa.DataType:
    """The Arrow type of one value of the column (the item type of a REPEATED column)."""
    kind = field.type
    return kind.value_type if pa.types.is_list(kind) or pa.types.is_large_list(kind) else kind


def _as_feature_list(column: pa.Array, field: pa.Field) -> pa.Array:
    """The column as a list array of int64, float32 or binary, nulls kept as null lists."""
    target = _EXAMPLE_VALUE_TYPES.get(_value_type(field))
    if target is None:
        raise UnsupportedColumnError(
            f"column {field.name!r} has Arrow type {field.type}; a tf.Example feature needs "
            "INT64, BOOL, FLOAT64 or STRING (scalar or REPEATED): cast it in the query, "
            "e.g. UNIX_MICROS(event_time) for a TIMESTAMP"
        )
    # An unsafe cast rounds float64 to the nearest float32, as protobuf does.
    if pa.types.is_list(field.type) or pa.types.is_large_list(field.type):
        return pc.cast(column, pa.list_(target), safe=False)
    offsets = pa.array(range(len(column) + 1), pa.int32())
    values = pc.cast(column, target, safe=False)
    return pa.ListArray.from_arrays(offsets, values, mask=column.is_null())


def encode_examples(batch: pa.RecordBatch) -> List[bytes]:
    """Serialized tf.Examples of the batch's rows, equal to the stock conversion's bytes."""
    lists = pa.RecordBatch.from_arrays(
        [_as_feature_list(column, field) for column, field in zip(batch.columns, batch.schema)],
        batch.schema.names,
    )
    example = tf.train.Example()
    serialized = []
    for encoded in example_coder.RecordBatchToExamplesEncoder().encode(lists):
        example.ParseFromString(encoded)
        serialized.append(example.SerializeToString(deterministic=True))
    return serialized
