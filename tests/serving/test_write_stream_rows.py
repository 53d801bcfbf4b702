"""serving.write_stream_rows: JSON rows as Write API protobuf messages, checked alone and by a
round trip through a real bqemulator (appended on a COMMITTED stream, read back by query)."""

from __future__ import annotations

import datetime
import uuid

import pytest
from google.cloud import bigquery
from google.protobuf import descriptor_pb2

from bandit_core.bigquery.clients import make_bigquery_client
from bandit_core.bigquery.tables import PREDICTIONS_SCHEMA, REWARDS_SCHEMA, ensure_table
from serving.committed_stream import AppendOutcome, CommittedStreamWriter
from serving.write_stream_rows import RowMessages, timestamp_micros
from tfx_pipeline.local.emulator import BigQueryEmulator

_Field = descriptor_pb2.FieldDescriptorProto
UTC = datetime.timezone.utc
ALL_TYPES = (
    bigquery.SchemaField("id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("at", "TIMESTAMP"),
    bigquery.SchemaField("count", "INT64"),
    bigquery.SchemaField("score", "FLOAT64"),
    bigquery.SchemaField("flag", "BOOL"),
    bigquery.SchemaField("ids", "INT64", mode="REPEATED"),
    bigquery.SchemaField("weights", "FLOAT64", mode="REPEATED"),
    bigquery.SchemaField("tags", "STRING", mode="REPEATED"),
)
ROWS = [
    {
        "id": "full",
        "at": "2024-05-01T12:00:00.000001Z",
        "count": -(2**62),
        "score": 0.1,
        "flag": False,
        "ids": [3, 0, 1682],
        "weights": [0.5, -1e-300, 1e300],
        "tags": ["a", "", "ü"],
    },
    {"id": "nulls", "at": None, "count": None, "ids": [], "tags": []},
    {"id": "offset", "at": "2024-05-01T14:00:00+02:00", "flag": True, "score": 0},
]


def test_the_descriptor_follows_the_schema():
    descriptor = RowMessages(ALL_TYPES, "AllTypes").descriptor
    assert descriptor.name == "AllTypes"
    assert [(f.name, f.number, f.type, f.label) for f in descriptor.field] == [
        ("id", 1, _Field.TYPE_STRING, _Field.LABEL_REQUIRED),
        ("at", 2, _Field.TYPE_INT64, _Field.LABEL_OPTIONAL),
        ("count", 3, _Field.TYPE_INT64, _Field.LABEL_OPTIONAL),
        ("score", 4, _Field.TYPE_DOUBLE, _Field.LABEL_OPTIONAL),
        ("flag", 5, _Field.TYPE_BOOL, _Field.LABEL_OPTIONAL),
        ("ids", 6, _Field.TYPE_INT64, _Field.LABEL_REPEATED),
        ("weights", 7, _Field.TYPE_DOUBLE, _Field.LABEL_REPEATED),
        ("tags", 8, _Field.TYPE_STRING, _Field.LABEL_REPEATED),
    ]


def test_a_serialized_row_parses_back_to_its_values():
    messages = RowMessages(ALL_TYPES, "AllTypes")
    parsed = messages.message_class.FromString(messages.serialize(ROWS[0]))
    assert parsed.id == "full" and parsed.at == 1714564800000001 and parsed.count == -(2**62)
    assert (parsed.score, parsed.flag) == (0.1, False) and parsed.HasField("flag")
    assert (list(parsed.ids), list(parsed.weights), list(parsed.tags)) == (
        [3, 0, 1682],
        [0.5, -1e-300, 1e300],
        ["a", "", "ü"],
    )
    nulls = messages.message_class.FromString(messages.serialize(ROWS[1]))
    assert not any(nulls.HasField(name) for name in ("at", "count", "score", "flag"))


@pytest.mark.parametrize(
    "text, micros",
    [
        ("1970-01-01T00:00:00Z", 0),
        ("2024-05-01T12:00:00.000001Z", 1714564800000001),
        ("2024-05-01T14:00:00.000001+02:00", 1714564800000001),
        ("1969-12-31T23:59:59.999999+00:00", -1),
    ],
)
def test_timestamps_are_exact_microseconds_since_the_epoch(text, micros):
    assert timestamp_micros(text) == micros


def test_a_timestamp_without_a_timezone_is_refused_with_the_fix():
    with pytest.raises(ValueError, match=r"^timestamp '2024-05-01T12:00:00' has no timezone; add"):
        timestamp_micros("2024-05-01T12:00:00")


def test_a_column_outside_the_schema_is_named():
    with pytest.raises(ValueError, match=r"^column 'bogus' is not in the table: \['event_id'"):
        RowMessages(REWARDS_SCHEMA, "Reward").serialize({"event_id": "e", "bogus": 1})


def test_a_column_type_the_write_api_rows_do_not_cover_is_named_with_the_way_out():
    schema = (bigquery.SchemaField("where", "GEOGRAPHY"),)
    with pytest.raises(ValueError, match=r"^column where has type GEOGRAPHY; .*insert_all$"):
        RowMessages(schema, "Place")


def test_the_logged_tables_schemas_have_messages():
    assert [f.name for f in RowMessages(PREDICTIONS_SCHEMA, "P").descriptor.field] == [
        field.name for field in PREDICTIONS_SCHEMA
    ]


@pytest.fixture(scope="module")
def emulator():
    with BigQueryEmulator() as emu:
        yield emu


def test_rows_appended_and_queried_back_equal_the_json_rows(emulator):
    client = make_bigquery_client(emulator.endpoints)
    table_id = ensure_table(client, f"rows_{uuid.uuid4().hex[:8]}", "all_types", ALL_TYPES)
    messages = RowMessages(ALL_TYPES, "AllTypes")
    writer = CommittedStreamWriter(emulator.endpoints, timeout_s=10)
    stream = writer.create_stream(table_id)
    serialized = [messages.serialize(row) for row in ROWS]

    assert writer.append(stream, 0, messages.descriptor, serialized) is AppendOutcome.APPENDED
    again = writer.append(stream, 0, messages.descriptor, serialized)
    assert again is AppendOutcome.ALREADY_PRESENT
    gap = writer.append(stream, 10, messages.descriptor, serialized)
    assert gap is AppendOutcome.STREAM_LOST

    read = {row["id"]: dict(row) for row in client.query(f"SELECT * FROM `{table_id}`").result()}
    assert read == {
        "full": {
            **ROWS[0],
            "at": datetime.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=UTC),
        },
        "nulls": {
            "id": "nulls",
            "at": None,
            "count": None,
            "score": None,
            "flag": None,
            "ids": [],
            "weights": [],
            "tags": [],
        },
        "offset": {
            "id": "offset",
            "at": datetime.datetime(2024, 5, 1, 12, 0, tzinfo=UTC),
            "count": None,
            "score": 0.0,
            "flag": True,
            "ids": [],
            "weights": [],
            "tags": [],
        },
    }
