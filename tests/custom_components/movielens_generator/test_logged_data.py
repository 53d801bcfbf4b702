"""Tests for the Generator's simulated uniform-random logging."""

import datetime
import json

import numpy as np
import pytest

from bandit_core.bigquery.tables import LOGGED_INTERACTIONS_SCHEMA
from custom_components.movielens_generator.logged_data import (
    GENERATOR_SOURCE,
    UNIFORM_RANDOM_POLICY_ID,
    LoggedBatch,
    event_id_prefix,
    simulate_uniform_logging,
    to_bigquery_rows,
)
from simulation.movielens_environment import build_movielens_bandit

# 7 MovieLens users x 5 movies; users 2 and 6 rated none of the first 4 movies,
# so they are dropped and the kept ids are not 1..n.
RATINGS = np.array(
    [
        [5, 3, 0, 1, 2],
        [0, 0, 0, 0, 4],
        [4, 0, 0, 1, 0],
        [1, 1, 0, 5, 0],
        [0, 0, 5, 4, 1],
        [0, 0, 0, 0, 0],
        [2, 4, 3, 0, 5],
    ],
    dtype=float,
)
NUM_ACTIONS = 4
RANK_K = 3


@pytest.fixture(scope="module")
def bandit():
    bandit = build_movielens_bandit(RATINGS, rank_k=RANK_K, num_actions=NUM_ACTIONS)
    assert bandit.user_ids.tolist() == [1, 3, 4, 5, 7]
    return bandit


@pytest.fixture(scope="module")
def batch(bandit) -> LoggedBatch:
    return simulate_uniform_logging(bandit, 2000, seed=11)


def _row_of(bandit, user_id):
    return int(np.flatnonzero(bandit.user_ids == user_id)[0])


def test_same_seed_gives_identical_batches(bandit, batch):
    again = simulate_uniform_logging(bandit, 2000, seed=11)
    for name in ("event_ids", "user_ids", "observations", "actions", "rewards", "propensities"):
        np.testing.assert_array_equal(getattr(again, name), getattr(batch, name))


def test_different_seeds_differ(bandit, batch):
    other = simulate_uniform_logging(bandit, 2000, seed=12)
    assert not np.array_equal(other.actions, batch.actions)
    assert not np.array_equal(other.user_ids, batch.user_ids)
    assert set(other.event_ids.tolist()).isdisjoint(batch.event_ids.tolist())


def test_shapes_and_length(bandit, batch):
    assert len(batch) == 2000
    assert batch.observations.shape == (2000, RANK_K)
    for name in ("user_ids", "actions", "rewards", "propensities"):
        assert getattr(batch, name).shape == (2000,)


def test_event_ids_unique_and_prefixed(bandit, batch):
    prefix = event_id_prefix(11, NUM_ACTIONS, RANK_K)
    assert prefix == f"gen-{UNIFORM_RANDOM_POLICY_ID}-a{NUM_ACTIONS}-k{RANK_K}-s11-"
    ids = batch.event_ids.tolist()
    assert len(set(ids)) == len(ids)
    assert all(event_id.startswith(prefix) for event_id in ids)
    assert ids[0] == prefix + "000000000"
    assert ids[-1] == prefix + "000001999"


def test_event_id_prefix_separates_problems_and_seeds():
    prefixes = {
        event_id_prefix(seed, actions, rank)
        for seed in (1, 11)
        for actions in (1, 11, 20)
        for rank in (1, 11, 20)
    }
    assert len(prefixes) == 18
    # No prefix is a prefix of another, so STARTS_WITH never mixes two batches.
    for a in prefixes:
        for b in prefixes - {a}:
            assert not b.startswith(a)


def test_propensities_are_exactly_one_over_k(batch):
    assert np.all(batch.propensities == 1.0 / NUM_ACTIONS)


def test_rewards_come_from_the_reward_table(bandit, batch):
    rows = np.array([_row_of(bandit, u) for u in batch.user_ids])
    np.testing.assert_array_equal(batch.rewards, bandit.reward_table[rows, batch.actions])
    np.testing.assert_array_equal(batch.observations, bandit.observations[rows])


def test_user_ids_are_original_movielens_ids_and_all_arms_are_used(bandit, batch):
    assert set(batch.user_ids.tolist()) == {1, 3, 4, 5, 7}
    assert set(batch.actions.tolist()) == set(range(NUM_ACTIONS))


def test_users_and_actions_are_roughly_uniform(batch):
    # 2000 draws over 5 users / 4 actions: each count within 5 sd of its mean.
    for values, k in ((batch.user_ids, 5), (batch.actions, NUM_ACTIONS)):
        counts = np.unique(values, return_counts=True)[1]
        n, p = len(values), 1.0 / k
        assert np.all(np.abs(counts - n * p) < 5 * np.sqrt(n * p * (1 - p)))


def test_zero_events(bandit):
    empty = simulate_uniform_logging(bandit, 0, seed=1)
    assert len(empty) == 0
    assert list(to_bigquery_rows(empty, datetime.datetime(2026, 1, 1))) == []


def test_a_longer_batch_extends_a_shorter_one_with_the_same_seed(bandit):
    short = simulate_uniform_logging(bandit, 10, seed=7)
    long = simulate_uniform_logging(bandit, 20, seed=7)
    np.testing.assert_array_equal(long.event_ids[:10], short.event_ids)
    np.testing.assert_array_equal(long.user_ids[:10], short.user_ids)
    np.testing.assert_array_equal(long.actions[:10], short.actions)


EVENT_TIME = datetime.datetime(2026, 11, 25, 12, 30, 15, 123456, tzinfo=datetime.timezone.utc)


def test_to_bigquery_rows_has_the_flat_schema_keys_and_json_values(bandit):
    small = simulate_uniform_logging(bandit, 5, seed=3)
    rows = list(to_bigquery_rows(small, EVENT_TIME))
    assert len(rows) == 5
    per_arm_only = {"candidate_movie_ids", "movie_id"}
    schema_names = [f.name for f in LOGGED_INTERACTIONS_SCHEMA if f.name not in per_arm_only]
    for i, row in enumerate(rows):
        assert list(row) == schema_names
        assert json.loads(json.dumps(row)) == row
        assert row["event_id"] == small.event_ids[i]
        assert row["event_time"] == "2026-11-25T12:30:15.123456+00:00"
        assert type(row["user_id"]) is int and row["user_id"] == small.user_ids[i]
        assert type(row["action"]) is int and row["action"] == small.actions[i]
        assert type(row["reward"]) is float and row["reward"] == small.rewards[i]
        assert row["propensity"] == 0.25
        assert row["observation"] == small.observations[i].tolist()
        assert all(type(v) is float for v in row["observation"])
        assert row["policy_id"] == UNIFORM_RANDOM_POLICY_ID
        assert row["source"] == GENERATOR_SOURCE


def test_to_bigquery_rows_skips_known_event_ids(bandit):
    small = simulate_uniform_logging(bandit, 6, seed=3)
    known = frozenset({small.event_ids[0], small.event_ids[4], "some-other-id"})
    rows = list(to_bigquery_rows(small, EVENT_TIME, skip_event_ids=known))
    assert [r["event_id"] for r in rows] == [small.event_ids[i] for i in (1, 2, 3, 5)]
    # Skipping does not shift the other columns.
    assert [r["action"] for r in rows] == [int(small.actions[i]) for i in (1, 2, 3, 5)]
    everything = frozenset(small.event_ids.tolist())
    assert list(to_bigquery_rows(small, EVENT_TIME, skip_event_ids=everything)) == []
