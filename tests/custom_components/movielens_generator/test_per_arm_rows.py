"""The per-arm Generator's BigQuery rows: logged events and the items table.

A tiny synthetic ratings matrix and hand-made `u.item` metadata stand in for
MovieLens, so the expected features can be worked out from the SVD factors
and the metadata directly.
"""

import datetime
import json

import numpy as np
import pytest

from bandit_core.bigquery.tables import ITEMS_SCHEMA, LOGGED_INTERACTIONS_SCHEMA
from custom_components.movielens_generator.logged_data import (
    GENERATOR_SOURCE,
    UNIFORM_RANDOM_POLICY_ID,
)
from custom_components.movielens_generator.per_arm_logged_data import (
    PerArmLoggedBatch,
    item_rows,
    simulate_uniform_per_arm_logging,
    to_per_arm_bigquery_rows,
)
from simulation import movielens_data, movielens_per_arm

NUM_USERS, NUM_MOVIES, RANK_K = 12, 6, 3
EVENT_TIME = datetime.datetime(2026, 11, 25, 8, 30, tzinfo=datetime.timezone.utc)
GENRES = movielens_data.GENRES
# Listed out of id order, so features must follow the id rather than the row.
FLAGS_OF_ID = {
    3: {"Sci-Fi", "Action"}, 1: {"unknown"}, 2: set(), 6: {"Children's"}, 5: set(), 4: set()
}
YEAR_OF_ID = {3: 1995, 1: None, 2: 1950, 6: 2000, 5: 1980, 4: 1975}
ITEMS = movielens_data.Items(
    item_id=np.array(list(FLAGS_OF_ID), dtype=np.int64),
    release_year=np.array([YEAR_OF_ID[i] or movielens_data.MISSING_YEAR for i in FLAGS_OF_ID]),
    genres=np.array([[int(g in FLAGS_OF_ID[i]) for g in GENRES] for i in FLAGS_OF_ID]),
)
VERSION = movielens_per_arm.item_feature_version(RANK_K, movie_metadata=True)


@pytest.fixture(scope="module")
def bandit() -> movielens_per_arm.MovieLensPerArmBandit:
    ratings = np.random.default_rng(0).integers(0, 6, size=(NUM_USERS, NUM_MOVIES)).astype(float)
    return movielens_per_arm.build_per_arm_bandit(ratings, rank_k=RANK_K, items=ITEMS)


def _hand_made_batch() -> PerArmLoggedBatch:
    """Two events whose served movies sit at slots 0 and 2."""
    return PerArmLoggedBatch(
        event_ids=np.array(["e-0", "e-1"]),
        user_ids=np.array([4, 9], dtype=np.int64),
        global_features=np.array([[0.5, -1.0, 2.0], [1.5, 0.0, -0.25]]),
        candidate_ids=np.array([[5, 3, 6], [2, 1, 4]], dtype=np.int64),
        chosen_slots=np.array([0, 2], dtype=np.int64),
        movie_ids=np.array([5, 4], dtype=np.int64),
        rewards=np.array([3.5, -0.75]),
        propensities=np.array([1 / 3, 1 / 3]),
    )


def test_event_rows_fit_the_table_and_survive_json():
    rows = list(to_per_arm_bigquery_rows(_hand_made_batch(), EVENT_TIME))
    columns = {field.name for field in LOGGED_INTERACTIONS_SCHEMA}
    required = {f.name for f in LOGGED_INTERACTIONS_SCHEMA if f.mode == "REQUIRED"}
    for row in rows:
        assert required <= set(row) <= columns
        assert json.loads(json.dumps(row)) == row
    assert rows[0] == {
        "event_id": "e-0",
        "event_time": "2026-11-25T08:30:00+00:00",
        "user_id": 4,
        "observation": [0.5, -1.0, 2.0],
        "action": 0,
        "reward": 3.5,
        "propensity": 1 / 3,
        "policy_id": UNIFORM_RANDOM_POLICY_ID,
        "source": GENERATOR_SOURCE,
        "candidate_movie_ids": [5, 3, 6],
        "movie_id": 5,
    }
    assert (rows[1]["action"], rows[1]["movie_id"]) == (2, 4)


def test_action_is_the_served_movies_position_among_the_candidates(bandit):
    batch = simulate_uniform_per_arm_logging(bandit, 50, 4, noise_sd=1.0, seed=5)
    rows = list(to_per_arm_bigquery_rows(batch, EVENT_TIME))
    assert [row["event_id"] for row in rows] == batch.event_ids.tolist()
    for row in rows:
        assert row["candidate_movie_ids"].index(row["movie_id"]) == row["action"]
        assert len(set(row["candidate_movie_ids"])) == 4
    served = np.array([row["movie_id"] for row in rows])
    users = np.array([row["user_id"] for row in rows])
    np.testing.assert_allclose(
        [row["observation"] for row in rows], movielens_per_arm.global_features(bandit, users)
    )
    # Rewards are logged as observed: noisy around the served movie's expected reward.
    residuals = np.array([row["reward"] for row in rows]) - movielens_per_arm.expected_rewards(
        bandit, users, served
    )
    assert 0.0 < np.abs(residuals).max() < 5.0


def test_known_events_are_skipped_and_the_rest_kept_in_order():
    rows = to_per_arm_bigquery_rows(_hand_made_batch(), EVENT_TIME, frozenset({"e-0", "other"}))
    assert [row["event_id"] for row in rows] == ["e-1"]
    everything = frozenset({"e-0", "e-1"})
    assert list(to_per_arm_bigquery_rows(_hand_made_batch(), EVENT_TIME, everything)) == []


def test_one_item_row_per_movie_with_the_bandits_arm_features(bandit):
    rows = list(item_rows(bandit, ITEMS, VERSION))
    assert [row["movie_id"] for row in rows] == ITEMS.item_id.tolist()
    columns = {field.name for field in ITEMS_SCHEMA}
    for row in rows:
        assert set(row) <= columns
        assert json.loads(json.dumps(row)) == row
        assert row["feature_version"] == VERSION
    features = np.array([row["features"] for row in rows])
    np.testing.assert_allclose(features, movielens_per_arm.arm_features(bandit, ITEMS.item_id))
    # Worked out from the factors and the metadata: V_k row, genre flags, scaled year,
    # the mean known year standing in for movie 1's missing one.
    mean_year = (np.mean([1995, 1950, 2000, 1980, 1975]) - 1900) / 100
    for row, movie_id in zip(features, ITEMS.item_id.tolist()):
        np.testing.assert_allclose(row[:RANK_K], bandit.movie_vectors[movie_id - 1])
        flags = [GENRES[i] for i in np.flatnonzero(row[RANK_K:-1])]
        assert set(flags) == FLAGS_OF_ID[movie_id]
        year = YEAR_OF_ID[movie_id]
        assert row[-1] == pytest.approx(mean_year if year is None else (year - 1900) / 100)


def test_item_rows_name_genres_and_leave_missing_years_empty(bandit):
    rows = {row["movie_id"]: row for row in item_rows(bandit, ITEMS, VERSION)}
    for movie_id, row in rows.items():
        assert set(row["genres"]) == FLAGS_OF_ID[movie_id]
        assert row["year"] == YEAR_OF_ID[movie_id]
    # Genres keep GENRES order, whatever order they are set in.
    assert rows[3]["genres"] == ["Action", "Sci-Fi"]


def test_item_rows_skip_known_movies_and_work_without_metadata_features():
    ratings = np.random.default_rng(1).integers(0, 6, size=(NUM_USERS, NUM_MOVIES)).astype(float)
    plain = movielens_per_arm.build_per_arm_bandit(ratings, rank_k=RANK_K)
    version = movielens_per_arm.item_feature_version(RANK_K)
    rows = list(item_rows(plain, ITEMS, version, skip_movie_ids=frozenset({1, 6})))
    assert [row["movie_id"] for row in rows] == [3, 2, 5, 4]
    for row in rows:
        # Without metadata features the row still describes the movie for people.
        np.testing.assert_allclose(row["features"], plain.movie_vectors[row["movie_id"] - 1])
        assert row["year"] == YEAR_OF_ID[row["movie_id"]]
        assert row["feature_version"] == "movielens-svd-k3"
