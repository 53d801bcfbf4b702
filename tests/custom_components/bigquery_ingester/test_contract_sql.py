"""The data contract's SQL on a real bqemulator: it judges every row as the Python rules do.

Rows are written straight into the tables, one per broken rule plus good
ones, then read back through the ingestion queries with one flag column per
rule. Each row must break exactly the rules it was built to break, by SQL and
by Python alike, and `build_accepted_query` must return exactly the others.
A seeded batch of randomly spoiled rows holds SQL and Python to the same
answers beyond the hand-made cases.
"""

import math
import uuid
from typing import Dict, List, Set

import numpy as np
import pytest
from google.cloud import bigquery

from bandit_core import columns
from bandit_core.bigquery.clients import make_bigquery_client
from bandit_core.bigquery.tables import ITEMS_SCHEMA, LOGGED_INTERACTIONS_SCHEMA, ensure_table
from bandit_core.data_contract import DataContract
from custom_components.bigquery_ingester.queries import (
    build_accepted_query,
    build_examples_query,
    build_per_arm_examples_query,
)
from tfx_pipeline.local.emulator import BigQueryEmulator

CLASSIC = DataContract(observation_dim=2, num_actions=3)
PER_ARM = DataContract(observation_dim=2, num_actions=3, arm_dim=2)
VERSION = "v1"
# Movie 40's features are too short; movie 2000 lies outside the catalogue's id range.
ITEM_FEATURES = {10: [0.1, 0.2], 20: [0.3, 0.4], 30: [0.5, 0.6], 40: [0.7], 2000: [0.1, 0.1]}

# event id -> (column overrides, rules the row breaks); user ids are unique per row.
CLASSIC_CASES = {
    "good-1": (dict(user_id=1), set()),
    "good-2": (dict(user_id=None, action=2, reward=10.0, propensity=1.0), set()),
    "good-3": (dict(user_id=3, action=0, reward=-5.0, propensity=1e-6), set()),
    "user-0": (dict(user_id=0), {columns.USER_ID}),
    "user-neg": (dict(user_id=-7), {columns.USER_ID}),
    "obs-short": (dict(user_id=11, observation=[0.5]), {"observation_length"}),
    "obs-nan": (dict(user_id=12, observation=[0.5, math.nan]), {"observation_finite"}),
    "obs-big": (dict(user_id=13, observation=[1e39, 0.5]), {"observation_finite"}),
    "action-high": (dict(user_id=14, action=3), {columns.ACTION}),
    "action-null": (dict(user_id=15, action=None), {columns.ACTION}),
    "reward-huge": (dict(user_id=16, reward=1e300), {columns.REWARD}),
    "reward-inf": (dict(user_id=17, reward=-math.inf), {columns.REWARD}),
    "reward-null": (dict(user_id=18, reward=None), {columns.REWARD}),
    "propensity-0": (dict(user_id=19, propensity=0.0), {columns.PROPENSITY}),
    "propensity-nan": (dict(user_id=20, propensity=math.nan), {columns.PROPENSITY}),
    "e" * 129: (dict(user_id=21), {"event_id"}),
    "two-rules": (dict(user_id=0, reward=11.0), {columns.USER_ID, columns.REWARD}),
}
PER_ARM_CASES = {
    "pa-good": (dict(user_id=101), set()),
    "pa-count": (dict(user_id=102, candidate_movie_ids=[10, 20, 30, 40]), {"candidate_count"}),
    "pa-range": (
        dict(user_id=103, candidate_movie_ids=[10, 20, 2000], action=2, movie_id=2000),
        {"candidate_ids"},
    ),
    "pa-repeat": (dict(user_id=104, candidate_movie_ids=[20, 20, 30]), {"candidates_distinct"}),
    "pa-slot": (dict(user_id=105, movie_id=30), {"served_movie"}),
    "pa-features": (
        dict(user_id=106, candidate_movie_ids=[10, 40, 30], movie_id=40),
        {columns.ARM_FEATURES},
    ),
    "pa-reward": (dict(user_id=107, reward=-6.0), {columns.REWARD}),
}


def _row(event_id: str, **overrides) -> dict:
    row = {
        "event_id": event_id,
        "event_time": "2026-11-25T08:00:00+00:00",
        "user_id": 5,
        "observation": [0.25, -0.5],
        "action": 1,
        "reward": 2.0,
        "propensity": 0.5,
        "policy_id": "p",
        "source": "test",
    }
    return {**row, **overrides}


def _per_arm_row(event_id: str, **overrides) -> dict:
    return _row(event_id, **{"candidate_movie_ids": [10, 20, 30], "movie_id": 20, **overrides})


@pytest.fixture(scope="module")
def client():
    with BigQueryEmulator() as emulator:
        yield make_bigquery_client(emulator.endpoints)


@pytest.fixture(scope="module")
def tables(client) -> Dict[str, str]:
    dataset = f"contract_{uuid.uuid4().hex[:8]}"
    events = ensure_table(client, dataset, "logged_interactions", LOGGED_INTERACTIONS_SCHEMA)
    items = ensure_table(client, dataset, "items", ITEMS_SCHEMA)
    rows = [_row(e, **o) for e, (o, _) in CLASSIC_CASES.items()]
    rows += [_per_arm_row(e, **o) for e, (o, _) in PER_ARM_CASES.items()]
    assert client.insert_rows_json(events, rows) == []
    features = [
        {"movie_id": m, "feature_version": VERSION, "features": f} for m, f in ITEM_FEATURES.items()
    ]
    assert client.insert_rows_json(items, features) == []
    return {"events": events, "items": items}


def _judged(client: bigquery.Client, source: str, contract: DataContract) -> List[dict]:
    """The source rows, each with `sql` (rules its SQL flags) and `python` (rules Python finds)."""
    flags = ", ".join(f"{rule.sql} AS flag_{i}" for i, rule in enumerate(contract.rules))
    judged = []
    for result in client.query(f"SELECT s.*, {flags} FROM ({source}) AS s").result():
        row = dict(result)
        sql = {rule.name for i, rule in enumerate(contract.rules) if row.pop(f"flag_{i}")}
        python = {rule.name for rule in contract.broken_rules(row)}
        judged.append({**row, "sql": sql, "python": python})
    return judged


def _accepted_users(client: bigquery.Client, source: str, contract: DataContract) -> Set:
    rows = [dict(row) for row in client.query(build_accepted_query(source, contract)).result()]
    features = columns.PER_ARM_EXAMPLE_FEATURES if contract.per_arm else columns.EXAMPLE_FEATURES
    assert all(tuple(row) == features for row in rows)
    return {row[columns.USER_ID] for row in rows}


def test_sql_and_python_break_the_same_classic_rules(client, tables):
    source = build_examples_query(tables["events"])
    judged = {row["event_id"]: row for row in _judged(client, source, CLASSIC)}
    assert set(judged) == set(CLASSIC_CASES)
    for event_id, (_, rules) in CLASSIC_CASES.items():
        assert judged[event_id]["sql"] == judged[event_id]["python"] == rules, event_id
    good_users = {o["user_id"] for o, rules in CLASSIC_CASES.values() if not rules}
    assert _accepted_users(client, source, CLASSIC) == good_users


def test_sql_and_python_break_the_same_per_arm_rules(client, tables):
    source = build_per_arm_examples_query(tables["events"], tables["items"], VERSION)
    judged = {row["event_id"]: row for row in _judged(client, source, PER_ARM)}
    assert set(judged) == set(PER_ARM_CASES)
    for event_id, (_, rules) in PER_ARM_CASES.items():
        assert judged[event_id]["sql"] == judged[event_id]["python"] == rules, event_id
    assert _accepted_users(client, source, PER_ARM) == {101}


def test_randomly_spoiled_rows_are_judged_alike(client, tables):
    """200 seeded rows, each value spoiled with probability 0.15 from a list of bad values."""
    rng = np.random.default_rng(14)
    spoilers = {
        "user_id": [0, -1, None, 2**62],
        "observation": [[0.1], [0.1, 0.2, 0.3], [math.nan, 0.0], [0.0, math.inf], [3.5e38, 0.0]],
        "action": [-1, 3, None, 2],
        "reward": [-5.0, 10.0, 10.5, -1e9, math.nan, None],
        "propensity": [0.0, 1.0, 1.0001, 5e-7, math.nan, None],
    }
    rows = []
    for i in range(200):
        row = _row(f"rand-{i}", user_id=1000 + i)
        for column, values in spoilers.items():
            if rng.random() < 0.15:
                row[column] = values[rng.integers(len(values))]
        rows.append(row)
    table = ensure_table(client, tables["events"].split(".")[1], "random_rows")
    assert client.insert_rows_json(table, rows) == []
    judged = _judged(client, build_examples_query(table), CLASSIC)
    assert len(judged) == 200
    assert [row["sql"] for row in judged] == [row["python"] for row in judged]
    assert 0 < sum(1 for row in judged if row["sql"]) < 200
