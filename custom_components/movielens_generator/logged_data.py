"""Simulated logged interactions: what a uniform-random logging policy records.

Pure NumPy, seeded: the same (bandit, seed) always gives the same events and
event ids, which is what makes the Generator's reruns idempotent.
"""

import dataclasses
import datetime
from typing import Iterator, Tuple, TypeVar

import numpy as np

from simulation.movielens_environment import MovieLensBandit

UNIFORM_RANDOM_POLICY_ID = "uniform-random"
GENERATOR_SOURCE = "generator"
Batch = TypeVar("Batch")


@dataclasses.dataclass(frozen=True)
class LoggedBatch:
    """Column arrays of one batch of logged interactions."""

    event_ids: np.ndarray
    user_ids: np.ndarray
    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray

    def __len__(self) -> int:
        return len(self.event_ids)


def event_id_prefix(seed: int, num_actions: int, rank_k: int) -> str:
    """Names a generated batch; a different problem or seed never collides."""
    return f"gen-{UNIFORM_RANDOM_POLICY_ID}-a{num_actions}-k{rank_k}-s{seed}-"


def simulate_uniform_logging(bandit: MovieLensBandit, num_events: int, seed: int) -> LoggedBatch:
    """Samples users uniformly, acts uniformly at random and records the reward.

    The logging policy picks each action with probability 1/num_actions, so
    every propensity is known exactly and positive. Users and actions come
    from separate streams of the seed, so a longer batch extends a shorter
    one and an event id always names the same event.
    """
    users = np.random.default_rng([seed, 0]).integers(0, bandit.num_users, size=num_events)
    actions = np.random.default_rng([seed, 1]).integers(0, bandit.num_actions, size=num_events)
    prefix = event_id_prefix(seed, bandit.num_actions, bandit.observation_dim)
    return LoggedBatch(
        event_ids=np.array([f"{prefix}{i:09d}" for i in range(num_events)]),
        user_ids=bandit.user_ids[users],
        observations=bandit.observations[users],
        actions=actions,
        rewards=bandit.reward_table[users, actions],
        propensities=np.full(num_events, 1.0 / bandit.num_actions),
    )


def clip_rewards(batch: Batch, reward_min: float, reward_max: float) -> Tuple[Batch, int]:
    """(the batch with rewards clipped to [reward_min, reward_max], how many were clipped).

    Simulated rewards are ratings, bounded like any rating scale; the data
    contract's range is that scale. SVD estimates can overshoot it and rating
    noise is unbounded, so the few rewards beyond it are set to the nearer
    bound, and counted so the Generator can report them.
    """
    clipped = np.clip(batch.rewards, reward_min, reward_max)
    return dataclasses.replace(batch, rewards=clipped), int(np.sum(clipped != batch.rewards))


def to_bigquery_rows(
    batch: LoggedBatch, event_time: datetime.datetime, skip_event_ids: frozenset = frozenset()
) -> Iterator[dict]:
    """Yields JSON rows for the logged-interactions table, skipping known events."""
    timestamp = event_time.isoformat()
    for i, event_id in enumerate(batch.event_ids.tolist()):
        if event_id in skip_event_ids:
            continue
        yield generated_row(
            event_id,
            timestamp,
            batch.user_ids[i],
            batch.observations[i],
            batch.actions[i],
            batch.rewards[i],
            batch.propensities[i],
        )


def generated_row(
    event_id: str,
    event_time: str,
    user_id: int,
    observation: np.ndarray,
    action: int,
    reward: float,
    propensity: float,
) -> dict:
    """One JSON row of the logged-interactions table as the Generator writes it."""
    return {
        "event_id": event_id,
        "event_time": event_time,
        "user_id": int(user_id),
        "observation": observation.tolist(),
        "action": int(action),
        "reward": float(reward),
        "propensity": float(propensity),
        "policy_id": UNIFORM_RANDOM_POLICY_ID,
        "source": GENERATOR_SOURCE,
    }
