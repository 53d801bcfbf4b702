"""Tests for simulation.simulated_users: what each request carries and how users reward."""

import numpy as np
import pytest

from bandit_core import data_contract
from simulation import movielens_per_arm
from simulation.movielens_environment import build_movielens_bandit
from simulation.simulated_users import ClassicUsers, PerArmUsers, PredictionError

RNG = np.random.default_rng(0)


@pytest.fixture(scope="module")
def ratings():
    matrix = np.zeros((12, 30))
    rng = np.random.default_rng(3)
    rated = rng.random(matrix.shape) < 0.5
    matrix[rated] = rng.integers(1, 6, size=rated.sum())
    return matrix


@pytest.fixture(scope="module")
def per_arm(ratings):
    bandit = movielens_per_arm.build_per_arm_bandit(ratings, rank_k=4)
    return PerArmUsers(bandit, num_candidates=5, noise_sd=0.0, reference_rounds=500)


def test_per_arm_instance_carries_the_users_features_and_no_candidates(per_arm):
    instance = per_arm.instance(3)
    assert instance["user_id"] == 4
    np.testing.assert_allclose(
        instance["global_features"],
        movielens_per_arm.global_features(per_arm.bandit, np.array([4]))[0],
    )
    assert "candidates" not in instance


def test_per_arm_outcome_is_the_served_movies_rating_and_its_regret(per_arm):
    candidates = [3, 7, 11, 20, 29]
    expected = movielens_per_arm.expected_rewards(
        per_arm.bandit, np.array([5]), np.array([candidates])
    )[0]
    reward, regret = per_arm.outcome(4, {"movie_id": 11, "candidates": candidates}, RNG)
    assert reward == pytest.approx(expected[2])
    assert regret == pytest.approx(expected.max() - expected[2])
    best = candidates[int(np.argmax(expected))]
    assert per_arm.outcome(4, {"movie_id": best, "candidates": candidates}, RNG)[1] == 0.0


def test_per_arm_noise_has_the_configured_spread(per_arm):
    noisy = PerArmUsers(per_arm.bandit, 5, noise_sd=1.0)
    prediction = {"movie_id": 2, "candidates": [1, 2, 3, 4, 5]}
    rng = np.random.default_rng(1)
    rewards = [noisy.outcome(0, prediction, rng)[0] for _ in range(4000)]
    exact = per_arm.outcome(0, prediction, rng)[0]
    assert np.mean(rewards) == pytest.approx(exact, abs=0.06)
    assert np.std(rewards) == pytest.approx(1.0, abs=0.05)


def test_per_arm_rewards_stay_within_the_data_contract(per_arm):
    loud = PerArmUsers(per_arm.bandit, 5, noise_sd=50.0)
    prediction = {"movie_id": 2, "candidates": [1, 2, 3, 4, 5]}
    rng = np.random.default_rng(2)
    rewards = np.array([loud.outcome(0, prediction, rng)[0] for _ in range(200)])
    assert rewards.min() == data_contract.REWARD_MIN
    assert rewards.max() == data_contract.REWARD_MAX


@pytest.mark.parametrize(
    "prediction, fragment",
    [
        ({"movie_id": 9, "candidates": [1, 2, 3]}, "not among the candidates"),
        ({"movie_id": "9", "candidates": [9]}, "not an integer"),
        ({"candidates": [1, 2]}, "'movie_id' is None"),
        ({"movie_id": 31, "candidates": [31, 1]}, "no ratings for"),
    ],
)
def test_per_arm_outcome_rejects_what_it_cannot_rate(per_arm, prediction, fragment):
    with pytest.raises(PredictionError, match=fragment):
        per_arm.outcome(0, prediction, RNG)


def test_classic_outcome_is_the_exact_reward_and_its_regret(ratings):
    bandit = build_movielens_bandit(ratings, rank_k=4, num_actions=6)
    users = ClassicUsers(bandit)
    reward, regret = users.outcome(2, {"action": 1}, RNG)
    assert reward == bandit.reward_table[2, 1]
    assert regret == pytest.approx(bandit.optimal_rewards[2] - bandit.reward_table[2, 1])
    assert users.instance(2)["observation"] == bandit.observations[2].tolist()
    with pytest.raises(PredictionError, match="not one of the 6"):
        users.outcome(2, {"action": 6}, RNG)
