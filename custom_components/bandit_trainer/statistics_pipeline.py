"""The trainer's pass over the train split as one Beam combine of per-batch sums.

Everything the trainer takes from the split's rows, apart from the neural
agents' gradient steps, is a sum: the linear agents' sufficient statistics
(per arm for LinUCB and LinTS, one shared model for the per-arm agents), the
row count and reward sum behind `mean_logged_reward`, the rows per arm or per
served movie, and a bounded uniform sample for the TensorBoard histograms.
Each batch of `split_batches.ReadSplitBatches` is summarised with the same
vectorised functions the in-memory path calls, and summaries add up in any
order, so Beam may combine them on any number of workers and no worker holds
more than a batch of rows plus the sums.
"""

import collections
import dataclasses
import functools
import operator
from typing import Callable, Dict, Optional, TypeVar

import apache_beam as beam
import numpy as np

from bandit_core import columns, per_arm_features
from bandit_core.linear_statistics import LinearArmStatistics, arm_statistics, zero_statistics
from bandit_core.per_arm_statistics import (
    PerArmStatistics,
    per_arm_statistics,
    zero_per_arm_statistics,
)
from bandit_core.user_table import LatestUserRows, latest_user_rows
from custom_components.bandit_trainer.row_sample import RowSample, empty_sample, sample_rows

# Rows kept for the predicted-reward histograms: bounds the sample's memory.
SAMPLE_ROWS = 10_000

Batch = Dict[str, np.ndarray]
Sums = TypeVar("Sums", "ClassicSums", "PerArmSums")


def _add_optional(first, second):
    """Statistics add when the agent keeps them; neural agents carry None on both sides."""
    return None if first is None else first + second


@dataclasses.dataclass(frozen=True)
class ClassicSums:
    """What the trainer records about a classic split.

    Attributes:
      rows: N, the logged rows.
      reward_sum: the sum of their rewards.
      rows_per_arm: [K] logged rows per arm.
      statistics: LinUCB's and LinTS's per-arm sums; None for neural agents.
      sample: up to `SAMPLE_ROWS` of the rows' observations, one column [m, d].
    """

    rows: int
    reward_sum: float
    rows_per_arm: np.ndarray
    statistics: Optional[LinearArmStatistics]
    sample: RowSample

    def __add__(self, other: "ClassicSums") -> "ClassicSums":
        return ClassicSums(
            self.rows + other.rows,
            self.reward_sum + other.reward_sum,
            self.rows_per_arm + other.rows_per_arm,
            _add_optional(self.statistics, other.statistics),
            self.sample + other.sample,
        )


@dataclasses.dataclass(frozen=True)
class PerArmSums:
    """What the trainer records about a per-arm split.

    Attributes:
      rows: N, the logged rows.
      reward_sum: the sum of their rewards.
      rows_per_movie: logged rows per served movie id; at most one entry per
        catalogue movie, however many rows the split holds.
      statistics: a per-arm linear agent's shared-model sums; None for neural agents.
      sample: up to `SAMPLE_ROWS` rows as two columns, the user [m, dg] and the
        served movie's features [m, da].
      users: each named user's latest row, for the version's user table.
    """

    rows: int
    reward_sum: float
    rows_per_movie: collections.Counter
    statistics: Optional[PerArmStatistics]
    sample: RowSample
    users: LatestUserRows

    def served_movie_rows(self) -> np.ndarray:
        """[M] the rows of each movie served at least once, in ascending order."""
        return np.array(sorted(self.rows_per_movie.values()), dtype=np.int64)

    def __add__(self, other: "PerArmSums") -> "PerArmSums":
        return PerArmSums(
            self.rows + other.rows,
            self.reward_sum + other.reward_sum,
            self.rows_per_movie + other.rows_per_movie,
            _add_optional(self.statistics, other.statistics),
            self.sample + other.sample,
            self.users + other.users,
        )


class SumBatches(beam.CombineFn):
    """Beam's combine of a split's batches: `summarise(batch)` each, added up from `zero`."""

    def __init__(self, zero: Sums, summarise: Callable[[Batch], Sums]) -> None:
        super().__init__()
        self._zero = zero
        self._summarise = summarise

    def create_accumulator(self) -> Sums:
        return self._zero

    def add_input(self, accumulator: Sums, batch: Batch) -> Sums:
        return accumulator + self._summarise(batch)

    def merge_accumulators(self, accumulators) -> Sums:
        return functools.reduce(operator.add, accumulators, self._zero)

    def extract_output(self, accumulator: Sums) -> Sums:
        return accumulator


def classic_sums_fn(
    num_actions: int, observation_dim: int, linear: bool, sample_size: int = SAMPLE_ROWS
) -> SumBatches:
    """The combine of a classic split's batches (`logged_examples.classic_spec`).

    Args:
      num_actions: K; every logged action must lie in [0, K).
      observation_dim: d.
      linear: whether to sum LinUCB's and LinTS's per-arm statistics.
      sample_size: the most observations kept for the histograms.
    """
    zero = ClassicSums(
        rows=0,
        reward_sum=0.0,
        rows_per_arm=np.zeros(num_actions),
        statistics=zero_statistics(num_actions, observation_dim) if linear else None,
        sample=empty_sample(sample_size, [(observation_dim,)]),
    )
    return SumBatches(
        zero,
        functools.partial(
            classic_batch_sums, num_actions=num_actions, linear=linear, sample_size=sample_size
        ),
    )


def classic_batch_sums(
    batch: Batch, num_actions: int, linear: bool, sample_size: int
) -> ClassicSums:
    """One batch's `ClassicSums`; raises ValueError naming logged actions outside [0, K)."""
    observations = batch[columns.OBSERVATION]
    actions = batch[columns.ACTION]
    rewards = batch[columns.REWARD]
    if actions.size and (actions.min() < 0 or actions.max() >= num_actions):
        raise ValueError(
            f"logged actions must lie in [0, {num_actions}), the trainer's num_actions; got "
            f"{actions.min()}..{actions.max()}: set num_actions to the number of arms the "
            "logging policy chose from"
        )
    return ClassicSums(
        rows=len(actions),
        reward_sum=float(np.sum(rewards, dtype=np.float64)),
        rows_per_arm=np.bincount(actions, minlength=num_actions).astype(np.float64),
        statistics=arm_statistics(observations, actions, rewards, num_actions) if linear else None,
        sample=sample_rows(sample_size, [observations], np.random.default_rng()),
    )


def per_arm_sums_fn(
    linear_agent: Optional[str], global_dim: int, arm_dim: int, sample_size: int = SAMPLE_ROWS
) -> SumBatches:
    """The combine of a per-arm split's batches (`logged_examples.per_arm_spec`).

    Args:
      linear_agent: the per-arm linear agent whose contexts
        (`per_arm_features.linear_contexts`) to sum, or None for a neural agent.
      global_dim: dg.
      arm_dim: da, the length of the served movie's features.
      sample_size: the most rows kept for the histograms.
    """
    statistics = None
    if linear_agent is not None:
        context_dim = per_arm_features.linear_contexts(
            linear_agent, np.zeros((0, global_dim)), np.zeros((0, arm_dim))
        ).shape[-1]
        statistics = zero_per_arm_statistics(context_dim)
    zero = PerArmSums(
        rows=0,
        reward_sum=0.0,
        rows_per_movie=collections.Counter(),
        statistics=statistics,
        sample=empty_sample(sample_size, [(global_dim,), (arm_dim,)]),
        users=latest_user_rows(np.zeros(0), np.zeros(0), np.zeros((0, global_dim))),
    )
    return SumBatches(
        zero,
        functools.partial(per_arm_batch_sums, linear_agent=linear_agent, sample_size=sample_size),
    )


def per_arm_batch_sums(
    batch: Batch, linear_agent: Optional[str], sample_size: int
) -> PerArmSums:
    """One batch's `PerArmSums`."""
    users = batch[columns.OBSERVATION]
    served = batch[columns.ARM_FEATURES]
    rewards = batch[columns.REWARD]
    movies, counts = np.unique(batch[columns.MOVIE_ID], return_counts=True)
    statistics = None
    if linear_agent is not None:
        contexts = per_arm_features.linear_contexts(linear_agent, users, served)
        statistics = per_arm_statistics(contexts, rewards)
    return PerArmSums(
        rows=len(rewards),
        reward_sum=float(np.sum(rewards, dtype=np.float64)),
        rows_per_movie=collections.Counter(dict(zip(movies.tolist(), counts.tolist()))),
        statistics=statistics,
        sample=sample_rows(sample_size, [users, served], np.random.default_rng()),
        users=latest_user_rows(batch[columns.USER_ID], batch[columns.EVENT_TIME_US], users),
    )
