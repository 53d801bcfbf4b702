"""Reads logged-interaction tf.Examples of one split into NumPy columns."""

import dataclasses
import os
from typing import Any, Dict, List, Tuple

import numpy as np
import tensorflow as tf

from bandit_core import columns


@dataclasses.dataclass(frozen=True)
class LoggedColumns:
    """The columns the trainer and evaluator need, row-aligned."""

    observations: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray

    def __len__(self) -> int:
        return len(self.actions)


# Stand-in for an absent action with `allow_missing`; never a valid arm.
MISSING_ACTION = -1


def read_split(
    split_dir: str, observation_dim: int, batch_size: int = 8192, allow_missing: bool = False
) -> LoggedColumns:
    """Parses every gzipped TFRecord file in an ExampleGen split directory.

    By default a row missing a feature fails the parse. With `allow_missing`
    it reads as NaN (observation, reward, propensity) or MISSING_ACTION, so the
    policy evaluator can say which column is missing in how many rows instead
    of failing inside TensorFlow.

    Raises ValueError naming the directory when it holds no examples.
    """
    parsed = _parse_split(split_dir, classic_spec(observation_dim, allow_missing), batch_size)
    return classic_columns(parsed)


def classic_spec(observation_dim: int, allow_missing: bool = False) -> Dict[str, Any]:
    """The parse spec of a classic split's columns (see `read_split` for `allow_missing`)."""
    defaults = (
        {
            columns.OBSERVATION: [np.nan] * observation_dim,
            columns.ACTION: MISSING_ACTION,
            columns.REWARD: np.nan,
            columns.PROPENSITY: np.nan,
        }
        if allow_missing
        else {}
    )
    return {
        columns.OBSERVATION: tf.io.FixedLenFeature(
            [observation_dim], tf.float32, defaults.get(columns.OBSERVATION)
        ),
        columns.ACTION: tf.io.FixedLenFeature([], tf.int64, defaults.get(columns.ACTION)),
        columns.REWARD: tf.io.FixedLenFeature([], tf.float32, defaults.get(columns.REWARD)),
        columns.PROPENSITY: tf.io.FixedLenFeature(
            [], tf.float32, defaults.get(columns.PROPENSITY)
        ),
    }


def classic_columns(parsed: Dict[str, np.ndarray]) -> LoggedColumns:
    """Parsed classic features (`classic_spec`) as row-aligned columns."""
    return LoggedColumns(
        observations=parsed[columns.OBSERVATION],
        actions=parsed[columns.ACTION],
        rewards=parsed[columns.REWARD],
        propensities=parsed[columns.PROPENSITY],
    )


@dataclasses.dataclass(frozen=True)
class PerArmColumns:
    """A per-arm split's columns, row-aligned.

    Attributes:
      user_ids: [N] MovieLens user ids, 0 where a row has none.
      global_features: [N, dg] each row's user (the `observation` column).
      slots: [N] the served movie's position among its candidates (`action`).
      rewards: [N] observed rewards.
      propensities: [N] the logging policy's probability of the served movie.
      candidate_ids: [N, C] the movies offered.
      movie_ids: [N] the movie served.
      arm_features: [N, da] the served movie's features, joined at ingestion.
    """

    user_ids: np.ndarray
    global_features: np.ndarray
    slots: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    candidate_ids: np.ndarray
    movie_ids: np.ndarray
    arm_features: np.ndarray

    def __len__(self) -> int:
        return len(self.slots)


def read_per_arm_split(
    split_dir: str, global_dim: int, arm_dim: int, num_candidates: int, batch_size: int = 8192
) -> PerArmColumns:
    """Parses a per-arm split (see `columns.PER_ARM_EXAMPLE_FEATURES`).

    Raises ValueError naming the directory when it holds no examples; a row
    missing a feature or of another length fails the parse.
    """
    spec = per_arm_spec(global_dim, arm_dim, num_candidates)
    return per_arm_columns(_parse_split(split_dir, spec, batch_size))


def per_arm_spec(global_dim: int, arm_dim: int, num_candidates: int) -> Dict[str, Any]:
    """The parse spec of a per-arm split's columns."""
    return {
        columns.USER_ID: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        columns.EVENT_TIME_US: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        columns.OBSERVATION: tf.io.FixedLenFeature([global_dim], tf.float32),
        columns.ACTION: tf.io.FixedLenFeature([], tf.int64),
        columns.REWARD: tf.io.FixedLenFeature([], tf.float32),
        columns.PROPENSITY: tf.io.FixedLenFeature([], tf.float32),
        columns.CANDIDATE_MOVIE_IDS: tf.io.FixedLenFeature([num_candidates], tf.int64),
        columns.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
        columns.ARM_FEATURES: tf.io.FixedLenFeature([arm_dim], tf.float32),
    }


def per_arm_columns(parsed: Dict[str, np.ndarray]) -> PerArmColumns:
    """Parsed per-arm features (`per_arm_spec`) as row-aligned columns."""
    return PerArmColumns(
        user_ids=parsed[columns.USER_ID],
        global_features=parsed[columns.OBSERVATION],
        slots=parsed[columns.ACTION],
        rewards=parsed[columns.REWARD],
        propensities=parsed[columns.PROPENSITY],
        candidate_ids=parsed[columns.CANDIDATE_MOVIE_IDS],
        movie_ids=parsed[columns.MOVIE_ID],
        arm_features=parsed[columns.ARM_FEATURES],
    )


def read_items_split(split_dir: str, batch_size: int = 8192) -> Tuple[np.ndarray, np.ndarray]:
    """([M] movie ids, [M, da] features) of an items split, which ExampleGen wrote.

    Raises ValueError when the split is empty or its movies' feature lengths differ.
    """
    spec = {
        columns.MOVIE_ID: tf.io.FixedLenFeature([], tf.int64),
        columns.FEATURES: tf.io.RaggedFeature(tf.float32),
    }
    files = split_files(split_dir)
    ids, features = [], []
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec))
    )
    for batch in dataset:
        ids.append(batch[columns.MOVIE_ID].numpy())
        lengths = set(batch[columns.FEATURES].row_lengths().numpy().tolist())
        if len(lengths) != 1:
            raise ValueError(
                f"movies in {split_dir} have features of lengths {sorted(lengths)}; "
                "one feature version has one length"
            )
        features.append(batch[columns.FEATURES].to_tensor().numpy())
    if not ids:
        raise ValueError(f"split {split_dir} holds no movies")
    widths = {f.shape[1] for f in features}
    if len(widths) != 1:
        raise ValueError(f"movies in {split_dir} have features of lengths {sorted(widths)}")
    return np.concatenate(ids), np.concatenate(features)


def split_files(split_dir: str) -> List[str]:
    """The split's gzipped TFRecord files; raises ValueError naming the directory if none."""
    files = tf.io.gfile.glob(os.path.join(split_dir, "*.gz"))
    if not files:
        raise ValueError(
            f"no example files (*.gz) in {split_dir}; did ExampleGen write this split?"
        )
    return files


def _parse_split(split_dir: str, spec: Dict[str, Any], batch_size: int) -> Dict[str, np.ndarray]:
    """Every example of the split, parsed with `spec`, as one array per feature."""
    dataset = (
        tf.data.TFRecordDataset(split_files(split_dir), compression_type="GZIP")
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec))
    )
    parts: Dict[str, list] = {name: [] for name in spec}
    for batch in dataset.as_numpy_iterator():
        for name, values in batch.items():
            parts[name].append(values)
    if not parts[columns.ACTION]:
        raise ValueError(f"split {split_dir} holds no examples")
    return {name: np.concatenate(values) for name, values in parts.items()}
