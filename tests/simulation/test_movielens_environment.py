"""Tests for simulation.movielens_environment.

The parity tests build TF-Agents' MovieLensPyEnvironment on the real u.data
and skip when it is absent; the rest use tiny hand-made matrices whose policy
values can be computed by hand.
"""

import random
from pathlib import Path

import numpy as np
import pytest

from simulation import movielens_data as md
from simulation import movielens_environment as me

# A 3-user, 2-action table with hand-checkable means:
#   uniform = (1.5 + 3.5 + 5.5) / 3 = 3.5, oracle = (2 + 4 + 6) / 3 = 4.
_TABLE = np.array([[1.0, 2.0], [4.0, 3.0], [5.0, 6.0]])


def _tiny_bandit() -> me.MovieLensBandit:
    return me.MovieLensBandit(
        user_ids=np.array([1, 2, 3]),
        observations=np.eye(3, 2),
        reward_table=_TABLE,
    )


def _real_data_dir() -> Path:
    data_dir = md.default_data_dir()
    if not (data_dir / md.RATINGS_FILE).is_file():
        pytest.skip(
            f"MovieLens 100K not found at {data_dir}; set {md.DATA_DIR_ENV_VAR} "
            f"to a directory containing u.data to run this test."
        )
    return data_dir


@pytest.fixture(scope="module")
def real_matrix() -> np.ndarray:
    return md.ratings_matrix(md.load_ratings(_real_data_dir()))


@pytest.mark.parametrize("rank_k, num_actions", [(20, 20), (10, 100)])
def test_matches_tf_agents_environment(real_matrix, rank_k, num_actions):
    from tf_agents.bandits.environments import movielens_py_environment

    batch_size = 8
    theirs = movielens_py_environment.MovieLensPyEnvironment(
        str(_real_data_dir() / "u.data"),
        rank_k=rank_k,
        batch_size=batch_size,
        num_movies=num_actions,
        csv_delimiter="\t",
    )
    ours = me.build_movielens_bandit(
        real_matrix, rank_k=rank_k, num_actions=num_actions
    )

    tight = dict(rtol=1e-12, atol=1e-12)
    assert ours.num_users == theirs._effective_num_users
    assert ours.num_actions == num_actions
    assert ours.observation_dim == rank_k
    np.testing.assert_allclose(ours.observations, theirs._u_hat, **tight)
    np.testing.assert_allclose(
        ours.reward_table, theirs._approx_ratings_matrix, **tight
    )
    np.testing.assert_array_equal(ours.optimal_actions, theirs._optimal_action_table)
    np.testing.assert_allclose(
        ours.optimal_rewards, theirs._optimal_reward_table, **tight
    )

    # Through the public API: TF-Agents samples rows with `random.sample`.
    random.seed(7)
    observation = theirs.reset().observation
    random.seed(7)
    rows = np.array(random.sample(range(ours.num_users), batch_size))
    np.testing.assert_allclose(observation, ours.observations[rows], **tight)
    actions = np.arange(batch_size, dtype=np.int32) % num_actions
    reward = theirs.step(actions).reward
    # TF-Agents casts step rewards to its float32 reward spec.
    np.testing.assert_allclose(
        reward, me.expected_reward(ours, rows, actions), rtol=1e-6, atol=1e-6
    )
    np.testing.assert_array_equal(
        theirs.compute_optimal_action(), ours.optimal_actions[rows]
    )


def test_user_ids_are_original_one_based_ids(real_matrix):
    bandit = me.build_movielens_bandit(real_matrix, rank_k=20, num_actions=20)
    rated = np.flatnonzero(real_matrix[:, :20].sum(axis=1) > 0) + 1
    np.testing.assert_array_equal(bandit.user_ids, rated)
    assert me.uniform_random_value(bandit) < me.oracle_value(bandit)


def test_build_drops_unrated_users_and_full_rank_reconstructs():
    matrix = np.array(
        [
            [5.0, 0.0, 3.0, 1.0],
            [0.0, 0.0, 0.0, 4.0],  # Nothing among the first 3 movies: dropped.
            [1.0, 2.0, 0.0, 0.0],
            [0.0, 4.0, 3.0, 2.0],
        ]
    )
    bandit = me.build_movielens_bandit(matrix, rank_k=3, num_actions=3)
    np.testing.assert_array_equal(bandit.user_ids, [1, 3, 4])
    np.testing.assert_allclose(bandit.reward_table, matrix[[0, 2, 3], :3], atol=1e-12)
    np.testing.assert_array_equal(bandit.optimal_actions, [0, 1, 1])
    np.testing.assert_allclose(bandit.optimal_rewards, [5.0, 2.0, 4.0])
    assert bandit.observations.shape == (3, 3)


def test_rank_one_matches_leading_singular_triplet():
    matrix = np.array([[3.0, 1.0], [1.0, 3.0], [2.0, 2.0]])
    bandit = me.build_movielens_bandit(matrix, rank_k=1, num_actions=2)
    u, s, vh = np.linalg.svd(matrix, full_matrices=False)
    np.testing.assert_allclose(bandit.reward_table, s[0] * np.outer(u[:, 0], vh[0]))
    np.testing.assert_allclose(bandit.observations[:, 0], u[:, 0] * np.sqrt(s[0]))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(rank_k=0), "rank_k must be in 1..3"),
        (dict(rank_k=4), "rank_k must be in 1..3"),
        (dict(rank_k=2.0), "rank_k must be an integer"),
        (dict(rank_k=True), "rank_k must be an integer"),
        (dict(num_actions=0), "num_actions must be in 1..4"),
        (dict(num_actions=5), "num_actions must be in 1..4"),
    ],
)
def test_build_rejects_bad_arguments(kwargs, match):
    matrix = np.arange(1.0, 17.0).reshape(4, 4)
    arguments = dict(rank_k=1, num_actions=3)
    arguments.update(kwargs)
    with pytest.raises(ValueError, match=match):
        me.build_movielens_bandit(matrix, **arguments)


def test_build_rejects_bad_matrices():
    with pytest.raises(ValueError, match="2-D"):
        me.build_movielens_bandit(np.ones(4), rank_k=1, num_actions=1)
    with pytest.raises(ValueError, match="NaN"):
        me.build_movielens_bandit(np.full((2, 2), np.nan), rank_k=1, num_actions=1)
    with pytest.raises(ValueError, match="No user rated"):
        me.build_movielens_bandit(np.zeros((2, 2)), rank_k=1, num_actions=1)


def test_bandit_properties_and_immutability():
    bandit = _tiny_bandit()
    assert (bandit.num_users, bandit.num_actions, bandit.observation_dim) == (3, 2, 2)
    np.testing.assert_array_equal(bandit.optimal_actions, [1, 0, 1])
    np.testing.assert_array_equal(bandit.optimal_rewards, [2.0, 4.0, 6.0])
    with pytest.raises(ValueError):
        bandit.reward_table[0, 0] = 9.0
    with pytest.raises(AttributeError):
        bandit.reward_table = _TABLE


def test_bandit_rejects_inconsistent_shapes():
    with pytest.raises(ValueError, match="user_ids"):
        me.MovieLensBandit(np.array([1, 2]), np.eye(3, 2), _TABLE)
    with pytest.raises(ValueError, match="observations"):
        me.MovieLensBandit(np.array([1, 2, 3]), np.eye(2), _TABLE)


def test_uniform_and_oracle_values_closed_form():
    bandit = _tiny_bandit()
    assert me.uniform_random_value(bandit) == pytest.approx(3.5)
    assert me.oracle_value(bandit) == pytest.approx(4.0)


def test_policy_value_closed_forms():
    bandit = _tiny_bandit()
    uniform = np.full((3, 2), 0.5)
    assert me.policy_value(bandit, uniform) == pytest.approx(3.5)
    oracle = np.eye(2)[bandit.optimal_actions]
    assert me.policy_value(bandit, oracle) == pytest.approx(4.0)
    # Always action 0: (1 + 4 + 5) / 3.
    assert me.policy_value(bandit, np.array([1.0, 0.0])) == pytest.approx(10 / 3)
    # Per-user mixtures: (0.25*1 + 0.75*2 + 1*3 + 0.1*5 + 0.9*6) / 3.
    mixed = np.array([[0.25, 0.75], [0.0, 1.0], [0.1, 0.9]])
    assert me.policy_value(bandit, mixed) == pytest.approx((1.75 + 3.0 + 5.9) / 3)


@pytest.mark.parametrize(
    "probabilities, match",
    [
        (np.full((3, 3), 1 / 3), "shape"),
        (np.array([[1.5, -0.5]] * 3), "non-negative"),
        (np.array([[0.5, 0.4]] * 3), "sum to 1"),
        (np.array([[np.nan, 1.0]] * 3), "finite"),
    ],
)
def test_policy_value_rejects_invalid_probabilities(probabilities, match):
    with pytest.raises(ValueError, match=match):
        me.policy_value(_tiny_bandit(), probabilities)


def test_expected_reward_and_regret():
    bandit = _tiny_bandit()
    users = np.array([0, 1, 2, 2])
    actions = np.array([0, 0, 0, 1])
    rewards = me.expected_reward(bandit, users, actions)
    np.testing.assert_array_equal(rewards, [1, 4, 5, 6])
    np.testing.assert_array_equal(me.regret(bandit, users, actions), [1, 0, 1, 0])
    np.testing.assert_array_equal(me.expected_reward(bandit, users, 1), [2, 3, 6, 6])


@pytest.mark.parametrize(
    "users, actions, match",
    [
        ([-1], [0], "users must be in 0..2"),
        ([3], [0], "users must be in 0..2"),
        ([0], [2], "actions must be in 0..1"),
        ([0.0], [0], "users must be integers"),
        ([0], [True], "actions must be integers"),
    ],
)
def test_expected_reward_rejects_bad_indices(users, actions, match):
    with pytest.raises(ValueError, match=match):
        me.expected_reward(_tiny_bandit(), np.array(users), np.array(actions))


def test_sample_users_is_seeded_and_uniform():
    bandit = _tiny_bandit()
    first = me.sample_users(bandit, 30_000, np.random.default_rng(0))
    again = me.sample_users(bandit, 30_000, np.random.default_rng(0))
    np.testing.assert_array_equal(first, again)
    assert first.min() == 0 and first.max() == 2
    np.testing.assert_allclose(np.bincount(first) / first.size, 1 / 3, atol=0.01)
    # Averaging regret of a fixed policy over sampled users estimates
    # oracle_value - policy_value.
    estimate = me.regret(bandit, first, np.zeros_like(first)).mean()
    assert estimate == pytest.approx(4.0 - 10 / 3, abs=0.02)


def test_sample_users_without_replacement():
    bandit = _tiny_bandit()
    rows = me.sample_users(bandit, 3, np.random.default_rng(1), replace=False)
    assert sorted(rows.tolist()) == [0, 1, 2]
    with pytest.raises(ValueError, match="n must be in 0..3"):
        me.sample_users(bandit, 4, np.random.default_rng(1), replace=False)
