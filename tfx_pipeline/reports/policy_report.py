"""How good a saved policy is on the simulator, next to random and the oracle."""

import dataclasses

import numpy as np

from bandit_core.saved_policy import load_saved_policy, policy_actions
from simulation import movielens_environment
from simulation.movielens_environment import MovieLensBandit


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
