"""The per-arm ingestion SQL run on a real bqemulator: the join, the check columns, deduplication.

ExampleGen runs these queries unchanged, so what the emulator returns here is
what the schema checks and the trainer reads. Every event has its own user id,
which identifies it in the results (the queries do not select event ids).
"""

import uuid
from typing import Dict, List

import pytest
from google.cloud import bigquery

from bandit_core import columns
from bandit_core.bigquery.clients import make_bigquery_client
from bandit_core.bigquery.tables import (
    ITEMS_SCHEMA,
    LOGGED_INTERACTIONS_SCHEMA,
    PREDICTIONS_SCHEMA,
    REWARDS_SCHEMA,
    ensure_table,
)
from custom_components.bigquery_ingester.queries import (
    EVENT_ID,
    QueryConfigError,
    build_examples_query,
    build_items_query,
    build_per_arm_examples_query,
    build_per_arm_serving_logs_query,
)
from tfx_pipeline.local.emulator import BigQueryEmulator

V1, V2 = "movielens-svd-k2", "movielens-svd-k2-genres-year"
MOVIES_V1 = (10, 20, 30, 40)
# Movie 50 has features of V2 only: events serving it do not join under V1.
MOVIES_V2 = MOVIES_V1 + (50,)
TIME = "2026-11-25T08:00:00+00:00"


def _features(movie_id: int, version: str) -> List[float]:
    """Distinct per movie and per version, so a wrong join shows."""
    base = [movie_id / 10.0, -movie_id / 100.0]
    return base + [1.0, 0.5] if version == V2 else base


# user_id -> (candidate_movie_ids, action, movie_id, chosen_at_slot, distinct_candidates)
PER_ARM_EVENTS = {
    101: ([10, 20, 30], 0, 10, 1, 3),  # slot 0: 1-based indexing would miss it
    102: ([10, 20, 30], 2, 30, 1, 3),  # the last slot
    103: ([10, 20, 30], 1, 10, 0, 3),  # movie 10 is at slot 0, not 1
    104: ([20, 10, 30], 2, 10, 0, 3),  # slot 2 holds 30; 1-based offsets would say 1
    105: ([20, 20, 40], 0, 20, 1, 2),  # a repeated candidate
    106: ([50, 10, 20], 0, 50, 1, 3),  # no V1 features for movie 50
}
CLASSIC_USERS = (201, 202)


def _event(event_id: str, user_id: int, **extra) -> dict:
    return {
        "event_id": event_id,
        "event_time": TIME,
        "user_id": user_id,
        "observation": [0.25, float(user_id)],
        "action": 0,
        "reward": user_id / 100.0,
        "propensity": 0.5,
        "policy_id": "p",
        "source": "generator",
        **extra,
    }


def _per_arm_extra(user_id: int) -> dict:
    candidates, action, movie_id, _, _ = PER_ARM_EVENTS[user_id]
    return {"action": action, "candidate_movie_ids": candidates, "movie_id": movie_id}


@pytest.fixture(scope="module")
def client():
    with BigQueryEmulator() as emulator:
        yield make_bigquery_client(emulator.endpoints)


def _insert(client: bigquery.Client, table_id: str, rows: List[dict]) -> None:
    assert client.insert_rows_json(table_id, rows) == []


def _table(client: bigquery.Client, dataset: str, name: str, schema) -> str:
    return ensure_table(client, dataset, name, schema)


@pytest.fixture(scope="module")
def tables(client) -> Dict[str, str]:
    """Logged events (per-arm and classic), items of two versions, serving logs."""
    dataset = f"perarm_{uuid.uuid4().hex[:8]}"
    ids = {
        "events": _table(client, dataset, "logged_interactions", LOGGED_INTERACTIONS_SCHEMA),
        "items": _table(client, dataset, "items", ITEMS_SCHEMA),
        "predictions": _table(client, dataset, "predictions", PREDICTIONS_SCHEMA),
        "rewards": _table(client, dataset, "rewards", REWARDS_SCHEMA),
    }
    _insert(
        client,
        ids["events"],
        [_event(f"pa-{u}", u, **_per_arm_extra(u)) for u in PER_ARM_EVENTS]
        + [_event(f"cl-{u}", u) for u in CLASSIC_USERS],
    )
    _insert(
        client,
        ids["items"],
        [
            {"movie_id": m, "feature_version": v, "features": _features(m, v), "genres": ["Drama"]}
            for v, movies in ((V1, MOVIES_V1), (V2, MOVIES_V2))
            for m in movies
        ],
    )
    prediction = {k: v for k, v in _event("", 0).items() if k not in ("reward", "source")}
    _insert(
        client,
        ids["predictions"],
        [
            # 301 is logged twice (a resent batch) and rewarded once.
            {**prediction, **_per_arm_extra(102), "event_id": "sp-301", "user_id": 301},
            {
                **prediction, **_per_arm_extra(102), "event_id": "sp-301", "user_id": 301,
                "event_time": "2026-11-25T08:00:05+00:00",
            },
            # 302 is never rewarded.
            {**prediction, **_per_arm_extra(101), "event_id": "sp-302", "user_id": 302},
            # 303's reward arrives twice; the first one counts.
            {**prediction, **_per_arm_extra(104), "event_id": "sp-303", "user_id": 303},
            # 304 served a movie without V1 features.
            {**prediction, **_per_arm_extra(106), "event_id": "sp-304", "user_id": 304},
            # A classic prediction, rewarded.
            {**prediction, "event_id": "sc-305", "user_id": 305},
        ],
    )
    _insert(
        client,
        ids["rewards"],
        [
            {"event_id": "sp-301", "reward_time": "2026-11-25T09:00:00+00:00", "reward": 4.0},
            {"event_id": "sp-303", "reward_time": "2026-11-25T09:00:00+00:00", "reward": 2.0},
            {"event_id": "sp-303", "reward_time": "2026-11-25T09:30:00+00:00", "reward": -1.0},
            {"event_id": "sp-304", "reward_time": "2026-11-25T09:00:00+00:00", "reward": 1.0},
            {"event_id": "sc-305", "reward_time": "2026-11-25T09:00:00+00:00", "reward": 3.0},
        ],
    )
    return ids


def _rows_by_user(client: bigquery.Client, query: str) -> Dict[int, dict]:
    rows = [dict(row) for row in client.query(query).result()]
    by_user = {row[columns.USER_ID]: row for row in rows}
    assert len(by_user) == len(rows), "an event came out more than once"
    return by_user


def test_classic_query_leaves_per_arm_rows_out(client, tables):
    rows = _rows_by_user(client, build_examples_query(tables["events"]))
    assert set(rows) == set(CLASSIC_USERS)
    assert set(rows[201]) == {EVENT_ID, *columns.EXAMPLE_FEATURES}


@pytest.mark.parametrize("version, movies", [(V1, MOVIES_V1), (V2, MOVIES_V2)])
def test_per_arm_query_joins_the_served_movies_features_of_the_version(
    client, tables, version, movies
):
    query = build_per_arm_examples_query(tables["events"], tables["items"], version)
    rows = _rows_by_user(client, query)
    assert set(rows) == {u for u, event in PER_ARM_EVENTS.items() if event[2] in movies}
    for user_id, row in rows.items():
        candidates, action, movie_id, _, _ = PER_ARM_EVENTS[user_id]
        assert set(row) == {EVENT_ID, *columns.PER_ARM_EXAMPLE_FEATURES}
        assert row[columns.CANDIDATE_MOVIE_IDS] == candidates
        assert (row[columns.ACTION], row[columns.MOVIE_ID]) == (action, movie_id)
        assert row[columns.ARM_FEATURES] == _features(movie_id, version)
        assert row[columns.REWARD] == user_id / 100.0
        assert row[columns.OBSERVATION] == [0.25, float(user_id)]


def test_per_arm_check_columns_count_from_zero_and_count_distinct_ids(client, tables):
    query = build_per_arm_examples_query(tables["events"], tables["items"], V2)
    rows = _rows_by_user(client, query)
    assert {u: row[columns.CHOSEN_AT_SLOT] for u, row in rows.items()} == {
        u: event[3] for u, event in PER_ARM_EVENTS.items()
    }
    assert {u: row[columns.DISTINCT_CANDIDATES] for u, row in rows.items()} == {
        u: event[4] for u, event in PER_ARM_EVENTS.items()
    }


def test_per_arm_query_applies_the_source_filter(client, tables):
    query = build_per_arm_examples_query(tables["events"], tables["items"], V1, source="server")
    assert _rows_by_user(client, query) == {}


def test_serving_logs_query_deduplicates_and_drops_unrewarded_and_unjoinable_predictions(
    client, tables
):
    query = build_per_arm_serving_logs_query(
        tables["predictions"], tables["rewards"], tables["items"], V1
    )
    rows = _rows_by_user(client, query)
    assert set(rows) == {301, 303}
    assert rows[301][columns.REWARD] == 4.0
    assert rows[303][columns.REWARD] == 2.0
    assert rows[301][columns.ARM_FEATURES] == _features(30, V1)
    assert (rows[301][columns.CHOSEN_AT_SLOT], rows[303][columns.CHOSEN_AT_SLOT]) == (1, 0)
    assert set(rows[301]) == {EVENT_ID, *columns.PER_ARM_EXAMPLE_FEATURES}


def test_items_query_returns_each_movie_of_the_version_once(client, tables):
    dataset = tables["items"].split(".")[1]
    items = _table(client, dataset, f"items_{uuid.uuid4().hex[:6]}", ITEMS_SCHEMA)
    rows = [
        {"movie_id": m, "feature_version": v, "features": _features(m, v)}
        for v, movies in ((V1, MOVIES_V1), (V2, MOVIES_V2))
        for m in movies
    ]
    # A movie written twice (a retried insert) is still one catalogue entry.
    _insert(client, items, rows + rows[:1])
    for version, movies in ((V1, MOVIES_V1), (V2, MOVIES_V2)):
        result = [dict(row) for row in client.query(build_items_query(items, version)).result()]
        assert sorted(row[columns.MOVIE_ID] for row in result) == sorted(movies)
        for row in result:
            assert set(row) == {columns.MOVIE_ID, columns.FEATURES}
            assert row[columns.FEATURES] == _features(row[columns.MOVIE_ID], version)


@pytest.mark.parametrize("version", ["v1' OR '1'='1", "", "k20; DROP TABLE items", "a.b"])
def test_malformed_feature_versions_are_refused(version):
    with pytest.raises(QueryConfigError, match="feature version"):
        build_per_arm_examples_query("p.d.events", "p.d.items", version)
    with pytest.raises(QueryConfigError, match="feature version"):
        build_per_arm_serving_logs_query("p.d.predictions", "p.d.rewards", "p.d.items", version)
    with pytest.raises(QueryConfigError, match="feature version"):
        build_items_query("p.d.items", version)


def test_a_duplicated_items_row_does_not_duplicate_events(client, tables):
    """The emulator, like BigQuery after its best-effort insertId window, keeps both copies."""
    dataset = tables["items"].split(".")[1]
    items = _table(client, dataset, f"items_{uuid.uuid4().hex[:6]}", ITEMS_SCHEMA)
    rows = [{"movie_id": m, "feature_version": V1, "features": _features(m, V1)} for m in MOVIES_V1]
    _insert(client, items, rows + rows[:1])
    query = build_per_arm_examples_query(tables["events"], items, V1)
    # Raises inside _rows_by_user when an event comes out twice.
    assert set(_rows_by_user(client, query)) == {101, 102, 103, 104, 105}
