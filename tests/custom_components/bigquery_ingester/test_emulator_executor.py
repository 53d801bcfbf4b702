"""The emulator ExampleGen executor on a real bqemulator, against the stock conversion.

The stock executor makes each row dict of the query a tf.Example with
`row_to_example` and partitions it with `_PartitionFn`; here both run on the
same rows (read as dicts from the same emulator) and the executor's output
files must hold exactly those examples in exactly those splits.
"""

import itertools
import json
import os
import uuid
from typing import Dict, List, Optional

import pytest
import tensorflow as tf
from google.api_core import exceptions
from google.cloud.bigquery_storage_v1 import types as storage_types
from tfx.components.example_gen import base_example_gen_executor
from tfx.extensions.google_cloud_big_query import utils as bigquery_utils
from tfx.proto import example_gen_pb2
from tfx.types import standard_artifacts
from tfx.utils import proto_utils

from bandit_core.bigquery import clients
from bandit_core.bigquery.tables import ITEMS_SCHEMA, LOGGED_INTERACTIONS_SCHEMA, ensure_table
from custom_components.bigquery_ingester import emulator_executor, table_reader
from custom_components.bigquery_ingester.queries import (
    build_examples_query,
    build_items_query,
    build_per_arm_examples_query,
)
from tfx_pipeline.local.emulator import BigQueryEmulator

SCRATCH = "executor_scratch"
VERSION = "v1"
TIME = "2026-11-25T08:00:00+00:00"
# train 2 buckets, eval 1: enough rows that both splits get some.
BUCKETS = (("train", 2), ("eval", 1))


def _event(i: int) -> dict:
    """Classic events for even i, per-arm for odd i; NULLs and empty arrays now and then."""
    row = {
        "event_id": f"ev-{i:04d}",
        "event_time": TIME,
        "user_id": None if i % 7 == 0 else i,
        "observation": [] if i % 11 == 0 else [i / 3.0, -1e40, 0.1],
        "action": i % 3,
        "reward": None if i % 5 == 0 else i / 7.0,
        "propensity": 1 / 3,
        "policy_id": "p",
        "source": "generator",
    }
    if i % 2:
        row.update(candidate_movie_ids=[10, 20, 30], movie_id=[10, 20, 30][i % 3])
    return row


@pytest.fixture(scope="module")
def emulator():
    with BigQueryEmulator() as running:
        yield running


@pytest.fixture(scope="module")
def tables(emulator) -> Dict[str, str]:
    client = clients.make_bigquery_client(emulator.endpoints)
    dataset = f"ingest_{uuid.uuid4().hex[:8]}"
    events = ensure_table(client, dataset, "events", LOGGED_INTERACTIONS_SCHEMA)
    items = ensure_table(client, dataset, "items", ITEMS_SCHEMA)
    assert client.insert_rows_json(events, [_event(i) for i in range(240)]) == []
    item_rows = [
        {"movie_id": m, "feature_version": VERSION, "features": [m / 10, 0.5], "genres": ["Drama"]}
        for m in (10, 20, 30)
    ]
    assert client.insert_rows_json(items, item_rows) == []
    return {"events": events, "items": items}


def _exec_properties(
    endpoints: clients.BigQueryEndpoints,
    input_config: example_gen_pb2.Input,
    output_config: example_gen_pb2.Output,
    **overrides,
) -> dict:
    return {
        "input_config": proto_utils.proto_to_json(input_config),
        "output_config": proto_utils.proto_to_json(output_config),
        "custom_config": json.dumps(emulator_executor.emulator_custom_config(endpoints, SCRATCH)),
        "output_data_format": example_gen_pb2.FORMAT_TF_EXAMPLE,
        "output_file_format": example_gen_pb2.FORMAT_TFRECORDS_GZIP,
        **overrides,
    }


def _hash_split(*splits) -> example_gen_pb2.Output:
    return example_gen_pb2.Output(
        split_config=example_gen_pb2.SplitConfig(
            splits=[example_gen_pb2.SplitConfig.Split(name=n, hash_buckets=b) for n, b in splits]
        )
    )


def _single_query(query: str) -> example_gen_pb2.Input:
    return example_gen_pb2.Input(
        splits=[example_gen_pb2.Input.Split(name="single_split", pattern=query)]
    )


def _run(
    tmp_path, endpoints, input_config, output_config, **overrides
) -> standard_artifacts.Examples:
    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / f"examples-{uuid.uuid4().hex[:6]}")
    properties = _exec_properties(endpoints, input_config, output_config, **overrides)
    emulator_executor.Executor().Do({}, {"examples": [examples]}, properties)
    return examples


def _written(examples: standard_artifacts.Examples, split: str) -> List[bytes]:
    files = tf.io.gfile.glob(os.path.join(examples.uri, f"Split-{split}", "*.gz"))
    records = tf.data.TFRecordDataset(files, compression_type="GZIP")
    return sorted(
        tf.train.Example.FromString(r.numpy()).SerializeToString(deterministic=True)
        for r in records
    )


def _stock_splits(
    endpoints, query: str, split_config: Optional[example_gen_pb2.SplitConfig]
) -> Dict[int, List[bytes]]:
    """Split index -> deterministic bytes, as the stock executor converts and partitions."""
    field_types, rows = table_reader.read_query_rows(endpoints, query, SCRATCH)
    examples = [bigquery_utils.row_to_example(field_types, row) for row in rows]
    if split_config is None:
        return {0: sorted(e.SerializeToString(deterministic=True) for e in examples)}
    buckets = list(itertools.accumulate(s.hash_buckets for s in split_config.splits))
    splits: Dict[int, List[bytes]] = {i: [] for i in range(len(buckets))}
    for e in examples:
        index = base_example_gen_executor._PartitionFn(  # noqa: SLF001
            e, len(buckets), buckets, split_config
        )
        splits[index].append(e.SerializeToString(deterministic=True))
    return {i: sorted(v) for i, v in splits.items()}


@pytest.mark.parametrize("problem", ["classic", "per_arm"])
def test_examples_and_splits_are_the_stock_executors(emulator, tables, tmp_path, problem):
    if problem == "classic":
        query = build_examples_query(tables["events"])
    else:
        query = build_per_arm_examples_query(tables["events"], tables["items"], VERSION)
    output_config = _hash_split(*BUCKETS)
    examples = _run(tmp_path, emulator.endpoints, _single_query(query), output_config)

    stock = _stock_splits(emulator.endpoints, query, output_config.split_config)
    written = {i: _written(examples, name) for i, (name, _) in enumerate(BUCKETS)}
    assert written == stock
    assert all(stock.values()), "both splits should hold rows"
    assert sum(len(v) for v in written.values()) == 120
    assert json.loads(examples.split_names) == ["train", "eval"]
    assert examples.get_string_custom_property("payload_format") == "FORMAT_TF_EXAMPLE"
    assert examples.get_string_custom_property("file_format") == "tfrecords_gzip"


def test_input_splits_are_kept_whole_and_an_empty_result_writes_an_empty_split(
    emulator, tables, tmp_path
):
    items = build_items_query(tables["items"], VERSION)
    none = build_items_query(tables["items"], "no-such-version")
    input_config = example_gen_pb2.Input(
        splits=[
            example_gen_pb2.Input.Split(name="items", pattern=items),
            example_gen_pb2.Input.Split(name="nothing", pattern=none),
        ]
    )
    examples = _run(tmp_path, emulator.endpoints, input_config, example_gen_pb2.Output())

    assert _written(examples, "items") == _stock_splits(emulator.endpoints, items, None)[0]
    assert len(_written(examples, "items")) == 3
    assert _written(examples, "nothing") == []
    assert tf.io.gfile.glob(os.path.join(examples.uri, "Split-nothing", "*.gz"))


def test_scratch_tables_are_dropped_and_nothing_else(emulator, tables, tmp_path):
    client = clients.make_bigquery_client(emulator.endpoints)
    _run(
        tmp_path,
        emulator.endpoints,
        _single_query(build_examples_query(tables["events"])),
        _hash_split(*BUCKETS),
    )
    assert list(client.list_tables(f"{client.project}.{SCRATCH}")) == []
    assert client.get_table(tables["events"]).num_rows == 240


def test_a_result_larger_than_one_storage_read_message_is_read_whole(emulator):
    """16 MB of rows: one session's message would exceed the emulator's 11.5 MB cap."""
    client = clients.make_bigquery_client(emulator.endpoints)
    query = (
        "SELECT id, ARRAY(SELECT CAST(x AS FLOAT64) FROM UNNEST(GENERATE_ARRAY(1, 2000)) AS x) "
        "AS wide FROM UNNEST(GENERATE_ARRAY(1, 1000)) AS id"
    )
    table = table_reader.materialise(client, query, SCRATCH)
    try:
        with clients.closing_read_client(emulator.endpoints) as read_client:
            with pytest.raises(exceptions.ResourceExhausted, match="larger than max"):
                _read_whole_table_in_one_session(read_client, table)
            ranges = table_reader.plan_ranges(read_client, table)
            rows = sum(table_reader.read_range(read_client, table, r).num_rows for r in ranges)
    finally:
        client.delete_table(table.table_id, not_found_ok=True)
    assert len(ranges) > 1
    assert rows == 1000


def _read_whole_table_in_one_session(read_client, table: table_reader.ScratchTable) -> None:
    session = read_client.create_read_session(
        parent=f"projects/{table.table_id.split('.')[0]}",
        read_session=storage_types.ReadSession(
            table=table.storage_path, data_format=storage_types.DataFormat.ARROW
        ),
        max_stream_count=1,
    )
    read_client.read_rows(session.streams[0].name).to_arrow(session)


def test_a_payload_format_other_than_tf_example_is_refused_with_the_fix(emulator, tmp_path):
    with pytest.raises(ValueError, match="FORMAT_PARQUET is not supported.*FORMAT_TF_EXAMPLE only"):
        _run(
            tmp_path,
            emulator.endpoints,
            _single_query("SELECT 1 AS x"),
            _hash_split(("train", 1)),
            output_data_format=example_gen_pb2.FORMAT_PARQUET,
        )


def test_real_bigquery_endpoints_are_refused_with_the_fix(tmp_path):
    endpoints = clients.BigQueryEndpoints("p")
    with pytest.raises(ValueError, match="use the stock BigQueryExampleGen executor"):
        _run(tmp_path, endpoints, _single_query("SELECT 1 AS x"), _hash_split(("train", 1)))


def test_a_column_tfx_cannot_convert_stops_the_run_naming_it(emulator, tables, tmp_path):
    query = f"SELECT event_id, event_time FROM `{tables['events']}`"
    with pytest.raises(Exception, match="'event_time'.*UNIX_MICROS"):
        _run(tmp_path, emulator.endpoints, _single_query(query), _hash_split(*BUCKETS))
