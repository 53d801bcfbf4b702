"""The per-arm Generator's simulated rounds: uniform logging with exact propensities, seeded."""

import datetime

import numpy as np
import pytest

from bandit_core.data_contract import ContractViolation, DataContract
from custom_components.movielens_generator.logged_data import clip_rewards
from custom_components.movielens_generator.per_arm_logged_data import (
    simulate_uniform_per_arm_logging,
    to_per_arm_bigquery_rows,
)
from simulation import movielens_per_arm


@pytest.fixture(scope="module")
def bandit():
    rng = np.random.default_rng(0)
    ratings = rng.integers(0, 6, size=(30, 40)).astype(np.float64)
    return movielens_per_arm.build_per_arm_bandit(ratings, rank_k=4)


def test_rows_serve_a_candidate_with_propensity_one_over_the_candidate_count(bandit):
    batch = simulate_uniform_per_arm_logging(bandit, 2000, 8, noise_sd=0.0, seed=3)
    rows = np.arange(len(batch))
    np.testing.assert_array_equal(batch.candidate_ids[rows, batch.chosen_slots], batch.movie_ids)
    np.testing.assert_array_equal(batch.propensities, np.full(2000, 1 / 8))
    assert all(len(set(row)) == 8 for row in batch.candidate_ids.tolist())
    # Uniform logging: every slot is served about equally often.
    counts = np.bincount(batch.chosen_slots, minlength=8)
    assert counts.min() > 2000 / 8 * 0.7
    np.testing.assert_allclose(
        batch.rewards, movielens_per_arm.expected_rewards(bandit, batch.user_ids, batch.movie_ids)
    )
    np.testing.assert_allclose(
        batch.global_features, movielens_per_arm.global_features(bandit, batch.user_ids)
    )
    assert len(set(batch.event_ids.tolist())) == 2000


def test_the_same_seed_gives_the_same_events_and_noise_changes_only_rewards(bandit):
    quiet = simulate_uniform_per_arm_logging(bandit, 300, 5, noise_sd=0.0, seed=7)
    again = simulate_uniform_per_arm_logging(bandit, 300, 5, noise_sd=0.0, seed=7)
    noisy = simulate_uniform_per_arm_logging(bandit, 300, 5, noise_sd=1.0, seed=7)
    for name in ("event_ids", "user_ids", "candidate_ids", "chosen_slots", "rewards"):
        np.testing.assert_array_equal(getattr(quiet, name), getattr(again, name))
    np.testing.assert_array_equal(quiet.candidate_ids, noisy.candidate_ids)
    residual = noisy.rewards - quiet.rewards
    assert 0.8 < residual.std() < 1.2


def test_batches_of_another_size_or_seed_never_share_an_event_id(bandit):
    ids = [
        set(simulate_uniform_per_arm_logging(bandit, n, 5, 0.0, seed).event_ids.tolist())
        for n, seed in ((100, 1), (200, 1), (100, 2))
    ]
    assert not (ids[0] & ids[1]) and not (ids[0] & ids[2])


def test_noisy_rewards_beyond_the_contract_are_clipped_and_counted_so_every_row_keeps_it(bandit):
    """Rating noise is unbounded; the Generator writes rewards on the contract's scale."""
    contract = DataContract(
        bandit.global_dim, 5, reward_min=-1.0, reward_max=4.0, arm_dim=bandit.arm_dim
    )
    noisy = simulate_uniform_per_arm_logging(bandit, 500, 5, noise_sd=3.0, seed=4)
    now = datetime.datetime(2026, 11, 25, tzinfo=datetime.timezone.utc)
    with pytest.raises(ContractViolation, match="reward: reward must be a number in"):
        list(contract.checked(to_per_arm_bigquery_rows(noisy, now)))

    clipped, count = clip_rewards(noisy, contract.reward_min, contract.reward_max)
    outside = (noisy.rewards < -1.0) | (noisy.rewards > 4.0)
    assert count == outside.sum() > 0
    assert clipped.rewards.min() == -1.0 and clipped.rewards.max() == 4.0
    np.testing.assert_array_equal(clipped.rewards[~outside], noisy.rewards[~outside])
    np.testing.assert_array_equal(clipped.movie_ids, noisy.movie_ids)
    assert len(list(contract.checked(to_per_arm_bigquery_rows(clipped, now)))) == 500
