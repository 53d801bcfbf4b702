"""How good a saved policy is on the simulator, next to random and the oracle."""

import dataclasses

import numpy as np

from bandit_core.saved_policy import load_saved_policy, policy_actions
from custom_components.policy_evaluator.per_arm_target_policy import PerArmSavedPolicy
from simulation import movielens_environment, movielens_per_arm
from simulation.movielens_environment import MovieLensBandit
from simulation.movielens_per_arm import MovieLensPerArmBandit


@dataclasses.dataclass(frozen=True)
class PolicyValues:
    """Average reward per user: the policy, uniform random and the oracle."""

    policy: float
    uniform_random: float
    oracle: float

    @property
    def fraction_of_oracle(self) -> float:
        return self.policy / self.oracle


def evaluate_saved_policy(bandit: MovieLensBandit, policy_dir: str) -> PolicyValues:
    """Exact expected reward of the policy's action for every user, averaged."""
    actions = policy_actions(load_saved_policy(policy_dir), bandit.observations)
    users = np.arange(bandit.num_users)
    return PolicyValues(
        policy=float(movielens_environment.expected_reward(bandit, users, actions).mean()),
        uniform_random=movielens_environment.uniform_random_value(bandit),
        oracle=movielens_environment.oracle_value(bandit),
    )


def evaluate_saved_per_arm_policy(
    bandit: MovieLensPerArmBandit,
    policy_dir: str,
    num_candidates: int,
    rounds: int = 20_000,
    seed: int = 0,
) -> PolicyValues:
    """Expected reward of the policy's choice on `rounds` fresh seeded rounds.

    Each round offers one user `num_candidates` movies from the whole
    catalogue, as in the pipeline; stochastic policies count their exact (or,
    for Thompson sampling, sampled) probability of every candidate.
    """
    batch = movielens_per_arm.sample_round(
        bandit, rounds, num_candidates, np.random.default_rng([seed, 20])
    )
    policy = PerArmSavedPolicy(policy_dir)
    pi = policy.probabilities(
        movielens_per_arm.global_features(bandit, batch.user_ids),
        batch.candidate_ids,
        samples=16,
        rng=np.random.default_rng(seed),
    )
    expected = movielens_per_arm.expected_rewards(bandit, batch.user_ids, batch.candidate_ids)
    return PolicyValues(
        policy=float(np.mean(np.sum(pi * expected, axis=1))),
        uniform_random=movielens_per_arm.uniform_random_value(
            bandit, batch.user_ids, batch.candidate_ids
        ),
        oracle=movielens_per_arm.oracle_value(bandit, batch.user_ids, batch.candidate_ids),
    )
