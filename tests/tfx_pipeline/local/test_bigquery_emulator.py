"""Tests against a real bqemulator process: the local stand-in for BigQuery must behave like it."""

from __future__ import annotations

import concurrent.futures
import datetime
import json
import os
import socket
import sys
import urllib.request
import uuid
from pathlib import Path

import pytest
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types

from bandit_core.bigquery.clients import BigQueryEndpoints, make_bigquery_client, make_read_client
from serving.committed_stream import CommittedStreamWriter
from serving.write_stream_rows import RowMessages
from tfx_pipeline.local.emulator import PYTHON_ENV_VAR, BigQueryEmulator, EmulatorError

SCHEMA = [
    bigquery.SchemaField("user_id", "INT64"),
    bigquery.SchemaField("reward", "FLOAT64"),
    bigquery.SchemaField("movie", "STRING"),
    bigquery.SchemaField("features", "FLOAT64", mode="REPEATED"),
    bigquery.SchemaField("event_time", "TIMESTAMP"),
]
ROWS = [
    {"user_id": 1, "reward": 0.5, "movie": "Heat", "features": [0.1, 0.2], "event_time": "2024-01-02T03:04:05.123456Z"},
    {"user_id": 2, "reward": -1.0, "movie": "Alien", "features": [], "event_time": "2024-01-03T00:00:00Z"},
]


@pytest.fixture(scope="module")
def emulator():
    with BigQueryEmulator() as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator):
    return make_bigquery_client(emulator.endpoints)


def _make_table(client: bigquery.Client) -> bigquery.Table:
    """A fresh dataset and table holding ROWS; unique names because the emulator is shared."""
    dataset = client.create_dataset(f"ds_{uuid.uuid4().hex[:8]}")
    table = client.create_table(bigquery.Table(dataset.table("events"), schema=SCHEMA))
    assert client.insert_rows_json(table, ROWS) == []
    return table


def _process_group_exists(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _port_open(endpoint: str) -> bool:
    host, port = endpoint.removeprefix("http://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=1):
            return True
    except OSError:
        return False


def test_started_emulator_is_healthy(emulator):
    with urllib.request.urlopen(f"{emulator.rest_endpoint}/healthz", timeout=5) as response:
        assert json.load(response)["status"] == "ok"
    assert emulator.rest_endpoint.startswith("http://127.0.0.1:")
    assert emulator.grpc_endpoint.startswith("127.0.0.1:")
    assert emulator.endpoints == BigQueryEndpoints("local-proj", emulator.rest_endpoint, emulator.grpc_endpoint)
    assert emulator.endpoints.is_emulator and not BigQueryEndpoints("p").is_emulator
    assert emulator.log_path.exists()


def test_insert_and_query_all_column_types(client):
    table = _make_table(client)
    rows = list(client.query(f"SELECT * FROM `{table.full_table_id.replace(':', '.')}` ORDER BY user_id").result())
    assert [dict(row) for row in rows] == [
        {
            "user_id": 1, "reward": 0.5, "movie": "Heat", "features": [0.1, 0.2],
            "event_time": datetime.datetime(2024, 1, 2, 3, 4, 5, 123456, tzinfo=datetime.timezone.utc),
        },
        {
            "user_id": 2, "reward": -1.0, "movie": "Alien", "features": [],
            "event_time": datetime.datetime(2024, 1, 3, tzinfo=datetime.timezone.utc),
        },
    ]


def test_storage_read_api_returns_arrow(emulator, client):
    table = _make_table(client)
    read_client = make_read_client(emulator.endpoints)
    session = read_client.create_read_session(
        parent=f"projects/{emulator.project}",
        read_session=types.ReadSession(
            table=f"projects/{table.project}/datasets/{table.dataset_id}/tables/{table.table_id}",
            data_format=types.DataFormat.ARROW,
        ),
        max_stream_count=1,
    )
    arrow = read_client.read_rows(session.streams[0].name).to_arrow(session)
    assert sorted(arrow.column("user_id").to_pylist()) == [1, 2]
    assert sorted(map(tuple, arrow.column("features").to_pylist())) == [(), (0.1, 0.2)]


def test_persistent_emulator_keeps_tables_across_restart(tmp_path):
    with BigQueryEmulator(data_dir=tmp_path / "bq") as emu:
        table = _make_table(make_bigquery_client(emu.endpoints))
        rest, grpc, old_pid = emu.rest_endpoint, emu.grpc_endpoint, emu.pid
        emu.restart()
        assert (emu.rest_endpoint, emu.grpc_endpoint) == (rest, grpc)
        assert emu.pid != old_pid and not _process_group_exists(old_pid)
        rows = make_bigquery_client(emu.endpoints).list_rows(table.reference)
        assert sorted(row["user_id"] for row in rows) == [1, 2]
    assert emu.log_path.parent == tmp_path / "bq"


def test_exit_on_exception_stops_process_and_stop_is_idempotent():
    with pytest.raises(KeyboardInterrupt):
        with BigQueryEmulator() as emu:
            pid, rest = emu.pid, emu.rest_endpoint
            raise KeyboardInterrupt
    assert emu.pid is None
    assert not _process_group_exists(pid)
    assert not _port_open(rest)
    emu.stop()
    emu.stop()


def test_missing_emulator_python_names_path_and_fix(tmp_path, monkeypatch):
    missing = tmp_path / "no-venv" / "bin" / "python"
    monkeypatch.setenv(PYTHON_ENV_VAR, str(missing))
    with pytest.raises(FileNotFoundError, match=r"no-venv/bin/python.*scripts/bootstrap\.sh"):
        BigQueryEmulator()


def test_emulator_dying_at_start_up_reports_log_tail():
    with pytest.raises(EmulatorError, match=r"exited with code 1(.|\n)*bqemulator"):
        BigQueryEmulator(python=Path(sys.executable)).start()


def test_concurrent_appends_and_queries_each_get_their_own_results(emulator, client):
    """AppendRows runs on the emulator's gRPC threads, queries on its REST loop; on one
    shared DuckDB connection a query answered with an INSERT's `Count`, or both stalled."""
    schema = [bigquery.SchemaField("event_id", "STRING")]
    dataset = client.create_dataset(f"ds_{uuid.uuid4().hex[:8]}")
    table = client.create_table(bigquery.Table(dataset.table("appended"), schema=schema))
    table_id = f"{table.project}.{table.dataset_id}.{table.table_id}"
    messages = RowMessages(schema, "Appended")
    appends, batch = 30, 50

    def append(writer_index: int) -> int:
        writer = CommittedStreamWriter(emulator.endpoints, timeout_s=30)
        stream = writer.create_stream(table_id)
        for i in range(appends):
            ids = [f"{writer_index}-{i}-{k}" for k in range(batch)]
            rows = [messages.serialize({"event_id": event_id}) for event_id in ids]
            writer.append(stream, i * batch, messages.descriptor, rows)
        return 0

    def query(_: int) -> int:
        crossed = 0
        for _ in range(40):
            rows = list(client.query(f"SELECT event_id FROM `{table_id}` LIMIT 1").result())
            crossed += bool(rows) and list(rows[0].keys()) != ["event_id"]
        return crossed

    pool = concurrent.futures.ThreadPoolExecutor(8)
    futures = [pool.submit(append, i) for i in range(4)] + [pool.submit(query, i) for i in range(4)]
    done, stalled = concurrent.futures.wait(futures, timeout=120)
    pool.shutdown(wait=False)  # stalled workers end when the emulator stops
    assert not stalled, f"{len(stalled)} of 8 workers had no answer in 120 s"
    assert sum(f.result() for f in done) == 0
    (count,) = next(iter(client.query(f"SELECT COUNT(*) FROM `{table_id}`").result()))
    assert count == 4 * appends * batch


def test_writes_leave_no_copy_of_the_table_behind(client):
    """bqemulator's time-travel snapshots copied the whole table after every insert."""
    table = _make_table(client)
    for i in range(20):
        assert client.insert_rows_json(table, [{**ROWS[1], "user_id": 100 + i}]) == []
    snapshots = "SELECT COUNT(*) AS n FROM duckdb_tables() WHERE schema_name = '_bqemulator_snapshots'"
    assert [row["n"] for row in client.query(snapshots).result()] == [0]
    total = f"SELECT COUNT(*) AS n FROM `{table.project}.{table.dataset_id}.{table.table_id}`"
    assert [row["n"] for row in client.query(total).result()] == [len(ROWS) + 20]
