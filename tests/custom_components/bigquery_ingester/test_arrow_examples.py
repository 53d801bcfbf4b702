"""The vectorised encoder and hash split against TFX's own row conversion and partition function.

The stock BigQueryExampleGen makes each row dict a tf.Example with
`row_to_example` and picks its split with `_PartitionFn`; these tests feed
both the same rows and require equal bytes and equal split indices.
"""

import datetime
import math

import numpy as np
import pyarrow as pa
import pytest
import tensorflow as tf
from tfx.components.example_gen import base_example_gen_executor
from tfx.extensions.google_cloud_big_query import utils as bigquery_utils
from tfx.proto import example_gen_pb2

from custom_components.bigquery_ingester import arrow_examples, hash_split

FLOAT32_MAX = float(np.finfo(np.float32).max)
# Classic rows: scalars of every kind, a NULL in each, extreme and special floats.
CLASSIC = {
    "event_id": (pa.string(), "STRING", ["gen-1", "é ☃", None, ""]),
    "user_id": (pa.int64(), "INTEGER", [7, -(2**63), None, 2**63 - 1]),
    "observation": (
        pa.list_(pa.float64()),
        "FLOAT",
        [[0.1, -0.0], [1e40, -1e40], [], [float("nan"), 1e-46, FLOAT32_MAX, math.pi]],
    ),
    "reward": (pa.float64(), "FLOAT", [4.5, None, float("inf"), 1 / 3]),
    "flag": (pa.bool_(), "BOOLEAN", [True, False, None, True]),
}
# Per-arm rows: repeated INT64 and FLOAT64 beside scalars, and NULL arrays.
PER_ARM = {
    "candidate_movie_ids": (pa.list_(pa.int64()), "INTEGER", [[10, 20, 30], [], None, [-1]]),
    "arm_features": (pa.list_(pa.float64()), "FLOAT", [[0.5, 0.25], None, [], [2.0]]),
    "movie_id": (pa.int64(), "INTEGER", [10, None, 30, 300]),
    "action": (pa.int64(), "INTEGER", [0, 2, None, 0]),
    "genres": (pa.list_(pa.string()), "STRING", [["Drama", "Comedy"], [], None, ["ñ"]]),
}


def _batch(columns: dict) -> pa.RecordBatch:
    return pa.RecordBatch.from_arrays(
        [pa.array(values, kind) for kind, _, values in columns.values()], list(columns)
    )


def _stock_examples(columns: dict, batch: pa.RecordBatch) -> list:
    types = {name: bq_type for name, (_, bq_type, _) in columns.items()}
    return [bigquery_utils.row_to_example(types, row) for row in batch.to_pylist()]


@pytest.mark.parametrize("columns", [CLASSIC, PER_ARM, {**CLASSIC, **PER_ARM}])
def test_encoded_examples_are_the_stock_conversions_deterministic_bytes(columns):
    batch = _batch(columns)
    stock = [e.SerializeToString(deterministic=True) for e in _stock_examples(columns, batch)]
    assert arrow_examples.encode_examples(batch) == stock


def test_a_sliced_batch_encodes_only_its_rows():
    batch = _batch(PER_ARM)
    assert arrow_examples.encode_examples(batch.slice(1, 2)) == (
        arrow_examples.encode_examples(batch)[1:3]
    )


@pytest.mark.parametrize(
    "kind, value",
    [
        (pa.timestamp("us", tz="UTC"), datetime.datetime(2026, 11, 25)),
        (pa.binary(), b"raw"),
        (pa.list_(pa.date32()), [datetime.date(2026, 11, 25)]),
    ],
)
def test_a_column_tfx_cannot_convert_is_refused_with_the_fix(kind, value):
    batch = pa.RecordBatch.from_arrays([pa.array([value], kind)], ["event_time"])
    with pytest.raises(arrow_examples.UnsupportedColumnError, match="'event_time'.*UNIX_MICROS"):
        arrow_examples.encode_examples(batch)


def _split_config(*buckets: int) -> example_gen_pb2.SplitConfig:
    return example_gen_pb2.SplitConfig(
        splits=[
            example_gen_pb2.SplitConfig.Split(name=f"s{i}", hash_buckets=b)
            for i, b in enumerate(buckets)
        ]
    )


@pytest.mark.parametrize("buckets", [(2, 1), (1, 1, 1), (7, 3), (1,)])
def test_split_index_is_the_stock_partition_of_the_example(buckets):
    config = _split_config(*buckets)
    bounds = hash_split.cumulative_buckets(config)
    batch = _batch({**CLASSIC, **PER_ARM})
    examples = _stock_examples({**CLASSIC, **PER_ARM}, batch) + [
        tf.train.Example(
            features=tf.train.Features(
                feature={"i": tf.train.Feature(int64_list=tf.train.Int64List(value=[i]))}
            )
        )
        for i in range(300)
    ]
    ours = [
        hash_split.split_index(e.SerializeToString(deterministic=True), bounds) for e in examples
    ]
    stock = [
        base_example_gen_executor._PartitionFn(e, len(bounds), bounds, config)  # noqa: SLF001
        for e in examples
    ]
    assert ours == stock
    assert len(set(ours)) == len(buckets)


def test_splitting_by_a_feature_is_refused_with_the_fix():
    config = _split_config(2, 1)
    config.partition_feature_name = "user_id"
    with pytest.raises(hash_split.SplitConfigError, match="leave partition_feature_name empty"):
        hash_split.cumulative_buckets(config)


def test_a_split_without_buckets_is_refused_with_the_fix():
    with pytest.raises(hash_split.SplitConfigError, match="'s1' has hash_buckets=0; give it"):
        hash_split.cumulative_buckets(_split_config(2, 0))
