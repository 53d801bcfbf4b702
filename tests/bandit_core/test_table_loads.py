"""Bulk loads (NDJSON load jobs) into the logged events and items tables, on a real bqemulator."""

import uuid

import pytest

from bandit_core.bigquery import clients, tables
from tfx_pipeline.local.emulator import BigQueryEmulator


def _event(i: int) -> dict:
    return {
        "event_id": f"load-{i}",
        "event_time": "2026-11-25T08:00:00.123456+00:00",
        "user_id": i,
        "observation": [i / 3.0, 0.5],
        "action": i % 4,
        "reward": 3.5,
        "propensity": 0.25,
        "policy_id": "uniform-random",
        "source": "generator",
    }


@pytest.fixture(scope="module")
def client():
    with BigQueryEmulator() as emulator:
        yield clients.make_bigquery_client(emulator.endpoints)


@pytest.fixture
def dataset() -> str:
    return f"loads_{uuid.uuid4().hex[:8]}"


def _rows(client, table_id: str) -> list:
    return [dict(r) for r in client.query(f"SELECT * FROM `{table_id}` ORDER BY user_id").result()]


def test_rows_land_whole_in_several_jobs_and_read_back_equal(client, dataset):
    table_id = tables.ensure_table(client, dataset, "events")
    events = [_event(i) for i in range(7)]

    assert tables.load_rows(client, table_id, iter(events), chunk_rows=3) == 7

    landed = _rows(client, table_id)
    assert [r["event_id"] for r in landed] == [e["event_id"] for e in events]
    assert landed[4]["observation"] == [4 / 3.0, 0.5]
    assert landed[4]["event_time"].isoformat() == "2026-11-25T08:00:00.123456+00:00"
    assert landed[4]["movie_id"] is None and landed[4]["candidate_movie_ids"] == []


def test_items_with_missing_years_load(client, dataset):
    table_id = tables.ensure_table(client, dataset, "items", tables.ITEMS_SCHEMA)
    items = [
        {"movie_id": movie, "feature_version": "v", "features": [0.5], "genres": g, "year": year}
        for movie, g, year in ((1, ["Drama"], 1995), (2, [], None))
    ]
    assert tables.load_rows(client, table_id, items, tables.ITEMS_SCHEMA) == 2
    assert tables.existing_item_ids(client, table_id, "v") == {1, 2}


def test_nothing_to_load_runs_no_job(client, dataset):
    table_id = tables.ensure_table(client, dataset, "events")
    assert tables.load_rows(client, table_id, []) == 0
    assert _rows(client, table_id) == []


def test_a_refused_chunk_names_the_table_and_the_fix_and_loads_none_of_its_rows(client, dataset):
    table_id = tables.ensure_table(client, dataset, "events")
    rows = [_event(1), {**_event(2), "user_id": "not a number"}]
    with pytest.raises(tables.LoadJobError, match=f"{table_id}.*loaded none of them.*schema"):
        tables.load_rows(client, table_id, rows)
    assert _rows(client, table_id) == []
