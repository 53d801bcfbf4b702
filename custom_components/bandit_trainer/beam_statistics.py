"""The linear agents' sufficient statistics as a Beam CombineFn.

The statistics are sums, so they combine associatively: each worker folds its
rows into partial sums and Beam merges them. Rows are buffered and folded in
blocks with the vectorised `arm_statistics`, so a worker does NumPy matrix
products instead of one outer product per row. The same transform runs on the
DirectRunner locally and on Dataflow.
"""

from typing import Iterable, List, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf

from bandit_core.linear_statistics import (
    LinearArmStatistics,
    arm_statistics,
    zero_statistics,
)
from bandit_core import columns

# (observation [d], action, reward)
Row = Tuple[np.ndarray, int, float]


class _Accumulator:
    """Partial sums plus rows not folded in yet."""

    def __init__(self, statistics: LinearArmStatistics):
        self.statistics = statistics
        self.pending: List[Row] = []


class ArmStatisticsCombineFn(beam.CombineFn):
    """Combines (observation, action, reward) rows into LinearArmStatistics.

    Args:
      num_actions: K; actions must lie in [0, K).
      observation_dim: d, the length of every observation.
      block_size: rows buffered before they are folded in with one
        vectorised `arm_statistics` call.
    """

    def __init__(self, num_actions: int, observation_dim: int, block_size: int = 8192):
        self._num_actions = num_actions
        self._observation_dim = observation_dim
        self._block_size = block_size

    def create_accumulator(self) -> _Accumulator:
        return _Accumulator(zero_statistics(self._num_actions, self._observation_dim))

    def add_input(self, accumulator: _Accumulator, row: Row) -> _Accumulator:
        accumulator.pending.append(row)
        if len(accumulator.pending) >= self._block_size:
            self._fold(accumulator)
        return accumulator

    def merge_accumulators(self, accumulators: Iterable[_Accumulator]) -> _Accumulator:
        merged = self.create_accumulator()
        for accumulator in accumulators:
            self._fold(accumulator)
            merged.statistics = merged.statistics + accumulator.statistics
        return merged

    def compact(self, accumulator: _Accumulator) -> _Accumulator:
        self._fold(accumulator)
        return accumulator

    def extract_output(self, accumulator: _Accumulator) -> LinearArmStatistics:
        self._fold(accumulator)
        return accumulator.statistics

    def _fold(self, accumulator: _Accumulator) -> None:
        if not accumulator.pending:
            return
        observations, actions, rewards = zip(*accumulator.pending)
        observations = np.asarray(observations, dtype=np.float64)
        if observations.shape[1:] != (self._observation_dim,):
            raise ValueError(
                f"observations must have length {self._observation_dim}; "
                f"got shape {observations.shape[1:]}"
            )
        accumulator.statistics = accumulator.statistics + arm_statistics(
            observations, np.asarray(actions), np.asarray(rewards), self._num_actions
        )
        accumulator.pending = []


def parse_logged_example(serialized: bytes) -> Row:
    """(observation, action, reward) of one serialized logged-interaction tf.Example."""
    feature = tf.train.Example.FromString(serialized).features.feature
    return (
        np.asarray(feature[columns.OBSERVATION].float_list.value, dtype=np.float32),
        int(feature[columns.ACTION].int64_list.value[0]),
        float(feature[columns.REWARD].float_list.value[0]),
    )


class ArmStatisticsFromExamples(beam.PTransform):
    """Serialized tf.Examples -> a single LinearArmStatistics."""

    def __init__(self, num_actions: int, observation_dim: int):
        super().__init__()
        self._num_actions = num_actions
        self._observation_dim = observation_dim

    def expand(self, serialized_examples):
        return (
            serialized_examples
            | "Parse" >> beam.Map(parse_logged_example)
            | "Combine"
            >> beam.CombineGlobally(
                ArmStatisticsCombineFn(self._num_actions, self._observation_dim)
            )
        )
