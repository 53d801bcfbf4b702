"""From a train split on disk to a trained policy, without holding the split in memory.

One Beam pass (`statistics_pipeline`) sums what the trainer records and the
linear agents' sufficient statistics, on as many workers as the pipeline's
runner gives it; the linear agent is built from the sums. A neural agent then
trains in this process on a tf.data stream of the split's files
(`split_stream`), whose shuffle buffer bounds its memory. The functions take a
Beam pipeline instead of making one, so that the executor hands them one built
from the TFX pipeline's `beam_pipeline_args`.
"""

import dataclasses
import time
from typing import Any, Dict, Sequence, Tuple, TypeVar

import apache_beam as beam
import tensorflow as tf

from bandit_core import agent_names, columns, logged_examples
from custom_components.bandit_trainer import per_arm_training, split_stream, training
from custom_components.bandit_trainer.per_arm_training import PerArmTrainedPolicy
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bandit_trainer.statistics_pipeline import (
    ClassicSums,
    PerArmSums,
    classic_sums_fn,
    per_arm_sums_fn,
)
from custom_components.bandit_trainer.training import TrainedPolicy
from custom_components.split_batches import combine_split

CLASSIC_COLUMNS = (
    (columns.OBSERVATION, tf.float32),
    (columns.ACTION, tf.int32),
    (columns.REWARD, tf.float32),
)
PER_ARM_COLUMNS = (
    (columns.OBSERVATION, tf.float32),
    (columns.ARM_FEATURES, tf.float32),
    (columns.REWARD, tf.float32),
)
Trained = TypeVar("Trained", TrainedPolicy, PerArmTrainedPolicy)


def train_classic(
    pipeline: beam.Pipeline,
    result_dir: str,
    split_dir: str,
    settings: TrainerSettings,
    observation_dim: int,
    num_actions: int,
    shuffle_buffer_rows: int = split_stream.SHUFFLE_BUFFER_ROWS,
) -> Tuple[TrainedPolicy, ClassicSums]:
    """Trains a classic agent on a split; also returns the split's sums.

    Args:
      pipeline: a Beam pipeline not yet run; this runs it.
      result_dir: where the combined sums come back (see
        `split_batches.combine_split`).
      split_dir: the train split's directory.
      settings: a classic agent and its hyper-parameters.
      observation_dim: d.
      num_actions: K.
      shuffle_buffer_rows: the neural agents' shuffle buffer.
    """
    _require_agent(settings, agent_names.AGENTS, "classic")
    spec = logged_examples.classic_spec(observation_dim)
    linear = settings.agent in agent_names.LINEAR_AGENTS
    started = time.perf_counter()
    sums = combine_split(
        pipeline, split_dir, spec, classic_sums_fn(num_actions, observation_dim, linear), result_dir
    )
    _require_rows(sums.rows, split_dir)
    if linear:
        trained = training.policy_from_statistics(settings, sums.statistics)
        return _fitted_since(trained, started), sums
    batches, rows = _streams(split_dir, spec, CLASSIC_COLUMNS, settings, shuffle_buffer_rows)
    trained = training.train_policy_on_stream(
        settings, batches, rows, observation_dim, sums.rows_per_arm
    )
    return trained, sums


def train_per_arm(
    pipeline: beam.Pipeline,
    result_dir: str,
    split_dir: str,
    settings: TrainerSettings,
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    shuffle_buffer_rows: int = split_stream.SHUFFLE_BUFFER_ROWS,
) -> Tuple[PerArmTrainedPolicy, PerArmSums]:
    """Trains a per-arm agent on a split; also returns the split's sums.

    Args:
      pipeline: a Beam pipeline not yet run; this runs it.
      result_dir: where the combined sums come back (see
        `split_batches.combine_split`).
      split_dir: the train split's directory.
      settings: a per-arm agent and its hyper-parameters.
      global_dim: dg, the users' feature length.
      arm_dim: da, the movies' feature length.
      num_candidates: C, the candidates per round.
      shuffle_buffer_rows: the neural agents' shuffle buffer.
    """
    _require_agent(settings, agent_names.PER_ARM_AGENTS, "per-arm")
    spec = logged_examples.per_arm_spec(global_dim, arm_dim, num_candidates)
    linear_agent = settings.agent if settings.agent in agent_names.PER_ARM_LINEAR_AGENTS else None
    started = time.perf_counter()
    sums = combine_split(
        pipeline, split_dir, spec, per_arm_sums_fn(linear_agent, global_dim, arm_dim), result_dir
    )
    _require_rows(sums.rows, split_dir)
    if linear_agent is not None:
        trained = per_arm_training.per_arm_policy_from_statistics(
            settings, sums.statistics, global_dim, num_candidates
        )
        return _fitted_since(trained, started), sums
    batches, rows = _streams(split_dir, spec, PER_ARM_COLUMNS, settings, shuffle_buffer_rows)
    trained = per_arm_training.train_per_arm_policy_on_stream(
        settings, batches, rows, global_dim, arm_dim, num_candidates
    )
    return trained, sums


def _require_agent(settings: TrainerSettings, agents: Sequence[str], problem: str) -> None:
    """Raises ValueError unless the settings name an agent of `problem`."""
    if settings.agent not in agents:
        raise ValueError(
            f"{settings.agent!r} is not an agent of the {problem} problem; choose one of "
            f"{', '.join(agents)}, or train it on the problem it belongs to"
        )


def _require_rows(rows: int, split_dir: str) -> None:
    if rows == 0:
        raise ValueError(
            f"split {split_dir} holds no examples; the trainer needs at least one logged row"
        )


def _fitted_since(trained: Trained, started: float) -> Trained:
    """A linear agent's fit is its sums: the Beam pass counts toward its training seconds."""
    return dataclasses.replace(trained, training_seconds=time.perf_counter() - started)


def _streams(
    split_dir: str,
    spec: Dict[str, Any],
    stream_columns: split_stream.Columns,
    settings: TrainerSettings,
    shuffle_buffer_rows: int,
) -> Tuple[tf.data.Dataset, tf.data.Dataset]:
    """(shuffled training batches for the epochs, one pass of row chunks) over the split."""
    batches = split_stream.shuffled_batches(
        split_dir,
        spec,
        stream_columns,
        settings.batch_size,
        settings.epochs,
        settings.seed,
        shuffle_buffer_rows,
    )
    return batches, split_stream.row_chunks(split_dir, spec, stream_columns)
