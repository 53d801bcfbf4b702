"""Simulated logged rounds of the per-arm problem under a uniform-random logging policy.

Each event offers one user a candidate set drawn from the whole catalogue and
serves one candidate chosen uniformly, so its propensity is exactly
1 / num_candidates. Logged rows carry movie ids, not movie features: features
live once per movie in the items table, and ingestion joins them.

Pure NumPy and seeded: the same (bandit, settings, seed) always gives the same
events and event ids, which is what makes the Generator's reruns idempotent.
"""

import dataclasses
import datetime
from typing import Iterator

import numpy as np

from custom_components.movielens_generator.logged_data import (
    UNIFORM_RANDOM_POLICY_ID,
    generated_row,
)
from simulation import movielens_data, movielens_per_arm
from simulation.movielens_per_arm import MovieLensPerArmBandit


@dataclasses.dataclass(frozen=True)
class PerArmLoggedBatch:
    """Column arrays of one batch of logged per-arm rounds.

    Attributes:
      event_ids: [N] unique ids.
      user_ids: [N] MovieLens user ids.
      global_features: [N, global_dim] the user's features as served.
      candidate_ids: [N, C] the movies offered, distinct within a row.
      chosen_slots: [N] position of the served movie among its candidates.
      movie_ids: [N] the served movie's id.
      rewards: [N] observed rewards (expected reward plus rating noise).
      propensities: [N] the logging policy's probability of the served movie.
    """

    event_ids: np.ndarray
    user_ids: np.ndarray
    global_features: np.ndarray
    candidate_ids: np.ndarray
    chosen_slots: np.ndarray
    movie_ids: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray

    def __len__(self) -> int:
        return len(self.event_ids)


def per_arm_event_id_prefix(
    bandit: MovieLensPerArmBandit, num_events: int, num_candidates: int, noise_sd: float, seed: int
) -> str:
    """Names a generated batch; a different problem, size, noise or seed never collides.

    The size is part of the name because one seed's rounds depend on the batch
    size (users are drawn before candidates), so event i of two sizes differs;
    the user features' width and the noise change what a row holds.
    """
    return (
        f"gen-{UNIFORM_RANDOM_POLICY_ID}-perarm-n{num_events}-c{num_candidates}"
        f"-k{bandit.rank_k}-g{bandit.global_dim}-sd{noise_sd:g}-s{seed}-"
    )


def simulate_uniform_per_arm_logging(
    bandit: MovieLensPerArmBandit,
    num_events: int,
    num_candidates: int,
    noise_sd: float,
    seed: int,
) -> PerArmLoggedBatch:
    """Samples rounds, serves a uniformly random candidate and records its noisy reward.

    Rounds, choices and noise come from separate streams of the seed, so a
    change of noise level keeps the same users, candidates and choices.
    """
    rounds = movielens_per_arm.sample_round(
        bandit, num_events, num_candidates, np.random.default_rng([seed, 0])
    )
    slots = np.random.default_rng([seed, 1]).integers(0, num_candidates, size=num_events)
    movie_ids = movielens_per_arm.chosen_movie_ids(rounds.candidate_ids, slots)
    rewards = movielens_per_arm.observed_rewards(
        bandit, rounds.user_ids, movie_ids, np.random.default_rng([seed, 2]), noise_sd
    )
    prefix = per_arm_event_id_prefix(bandit, num_events, num_candidates, noise_sd, seed)
    return PerArmLoggedBatch(
        event_ids=np.array([f"{prefix}{i:09d}" for i in range(num_events)]),
        user_ids=rounds.user_ids,
        global_features=movielens_per_arm.global_features(bandit, rounds.user_ids),
        candidate_ids=rounds.candidate_ids,
        chosen_slots=slots.astype(np.int64),
        movie_ids=movie_ids,
        rewards=rewards,
        propensities=np.full(num_events, 1.0 / num_candidates),
    )


def to_per_arm_bigquery_rows(
    batch: PerArmLoggedBatch,
    event_time: datetime.datetime,
    skip_event_ids: frozenset = frozenset(),
) -> Iterator[dict]:
    """Yields JSON rows for the logged-interactions table, skipping known events.

    `observation` holds the user's global features and `action` the served
    movie's position among `candidate_movie_ids`, as the server logs them.
    """
    timestamp = event_time.isoformat()
    for i, event_id in enumerate(batch.event_ids.tolist()):
        if event_id in skip_event_ids:
            continue
        yield {
            **generated_row(
                event_id,
                timestamp,
                batch.user_ids[i],
                batch.global_features[i],
                batch.chosen_slots[i],
                batch.rewards[i],
                batch.propensities[i],
            ),
            "candidate_movie_ids": batch.candidate_ids[i].tolist(),
            "movie_id": int(batch.movie_ids[i]),
        }


def item_rows(
    bandit: MovieLensPerArmBandit,
    items: movielens_data.Items,
    feature_version: str,
    skip_movie_ids: frozenset = frozenset(),
) -> Iterator[dict]:
    """Yields one items-table row per movie of `items` not in `skip_movie_ids`.

    Features are the bandit's arm features; genres and year describe the movie
    for people and queries, whether or not the features include them.
    """
    features = movielens_per_arm.arm_features(bandit, items.item_id)
    for row, movie_id in enumerate(items.item_id.tolist()):
        if movie_id in skip_movie_ids:
            continue
        year = int(items.release_year[row])
        yield {
            "movie_id": movie_id,
            "feature_version": feature_version,
            "features": features[row].tolist(),
            "genres": [
                genre
                for genre, flag in zip(movielens_data.GENRES, items.genres[row].tolist())
                if flag
            ],
            "year": None if year == movielens_data.MISSING_YEAR else year,
        }
