"""The simulated users a Simulator plays: what each request carries and how its user rewards.

One class per problem, so the Simulator's traffic loop is the same for both:

- `ClassicUsers`: the request carries the user's observation; the reward is
  the user's exact reward for the served movie.
- `PerArmUsers`: the request carries the user's global features and no
  candidates, so the server draws them as it would for a client that sends
  none; the reward is the user's expected rating of the served movie plus
  rating noise. Regret is measured against the best of the candidates the
  server offered, by expected reward.
"""

import dataclasses
from typing import Any, Dict, Tuple, Union

import numpy as np

from bandit_core import data_contract
from simulation import movielens_environment, movielens_per_arm
from simulation.movielens_environment import MovieLensBandit
from simulation.movielens_per_arm import MovieLensPerArmBandit


class PredictionError(ValueError):
    """A prediction the simulated user cannot act on (missing or unknown fields)."""


@dataclasses.dataclass(frozen=True)
class ClassicUsers:
    """Users of the classic problem: the same movies for everyone, exact rewards."""

    bandit: MovieLensBandit

    @property
    def num_users(self) -> int:
        return self.bandit.num_users

    def instance(self, user: int) -> Dict[str, Any]:
        """The prediction request's instance for user row `user`."""
        return {
            "observation": self.bandit.observations[user].tolist(),
            "user_id": int(self.bandit.user_ids[user]),
        }

    def outcome(
        self, user: int, prediction: Dict[str, Any], rng: np.random.Generator
    ) -> Tuple[float, float]:
        """(reward to report, regret) of the served action."""
        action = _int_field(prediction, "action")
        if not 0 <= action < self.bandit.num_actions:
            raise PredictionError(f"action {action} is not one of the {self.bandit.num_actions}")
        reward = float(self.bandit.reward_table[user, action])
        return reward, float(self.bandit.optimal_rewards[user]) - reward

    def uniform_random_regret(self) -> float:
        """Exact, over all users: the oracle's value minus uniform random's."""
        return self.oracle_value() - movielens_environment.uniform_random_value(self.bandit)

    def oracle_value(self) -> float:
        return movielens_environment.oracle_value(self.bandit)


@dataclasses.dataclass(frozen=True)
class PerArmUsers:
    """Users of the per-arm problem: candidates from the whole catalogue, noisy ratings.

    Attributes:
      bandit: the per-arm problem.
      num_candidates: candidates per round, for the reference values.
      noise_sd: rating noise of the reported rewards.
      reference_rounds: rounds the uniform-random and oracle references average over.
    """

    bandit: MovieLensPerArmBandit
    num_candidates: int
    noise_sd: float
    reference_rounds: int = 20_000

    @property
    def num_users(self) -> int:
        return self.bandit.num_users

    def instance(self, user: int) -> Dict[str, Any]:
        """User row `user`'s features and id; the server draws the candidates."""
        user_id = user + 1
        features = movielens_per_arm.global_features(self.bandit, np.array([user_id]))[0]
        return {"global_features": features.tolist(), "user_id": user_id}

    def outcome(
        self, user: int, prediction: Dict[str, Any], rng: np.random.Generator
    ) -> Tuple[float, float]:
        """(noisy rating of the served movie, its regret against the best candidate)."""
        movie = _int_field(prediction, "movie_id")
        candidates = prediction.get("candidates")
        if not isinstance(candidates, list) or movie not in candidates:
            raise PredictionError(f"movie {movie} is not among the candidates {candidates!r}")
        ids = np.asarray(candidates, dtype=np.int64)
        if ids.min() < 1 or ids.max() > self.bandit.num_movies:
            raise PredictionError(
                f"candidates {candidates!r} name movies the simulator has no ratings for"
            )
        users = np.array([user + 1])
        expected = movielens_per_arm.expected_rewards(self.bandit, users, ids[None])[0]
        served = float(expected[candidates.index(movie)])
        noisy = served + self.noise_sd * float(rng.standard_normal())
        # Ratings are bounded; like the Generator, report within the data contract's range.
        reward = min(max(noisy, data_contract.REWARD_MIN), data_contract.REWARD_MAX)
        return reward, float(expected.max()) - served

    def _reference_rounds(self) -> movielens_per_arm.RoundBatch:
        return movielens_per_arm.sample_round(
            self.bandit, self.reference_rounds, self.num_candidates, np.random.default_rng(0)
        )

    def uniform_random_regret(self) -> float:
        """Over `reference_rounds` seeded rounds: the oracle's value minus uniform random's."""
        rounds = self._reference_rounds()
        return movielens_per_arm.oracle_value(
            self.bandit, rounds.user_ids, rounds.candidate_ids
        ) - movielens_per_arm.uniform_random_value(
            self.bandit, rounds.user_ids, rounds.candidate_ids
        )

    def oracle_value(self) -> float:
        rounds = self._reference_rounds()
        return movielens_per_arm.oracle_value(self.bandit, rounds.user_ids, rounds.candidate_ids)


def _int_field(prediction: Dict[str, Any], name: str) -> int:
    value = prediction.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise PredictionError(f"prediction field {name!r} is {value!r}, not an integer")
    return value


SimulatedUsers = Union[ClassicUsers, PerArmUsers]
