"""Reads logged-interaction tf.Examples of one split into NumPy columns."""

import dataclasses
import os

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
    files = tf.io.gfile.glob(os.path.join(split_dir, "*.gz"))
    if not files:
        raise ValueError(f"no example files (*.gz) in {split_dir}; did ExampleGen write this split?")
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
    spec = {
        columns.OBSERVATION: tf.io.FixedLenFeature(
            [observation_dim], tf.float32, defaults.get(columns.OBSERVATION)
        ),
        columns.ACTION: tf.io.FixedLenFeature([], tf.int64, defaults.get(columns.ACTION)),
        columns.REWARD: tf.io.FixedLenFeature([], tf.float32, defaults.get(columns.REWARD)),
        columns.PROPENSITY: tf.io.FixedLenFeature(
            [], tf.float32, defaults.get(columns.PROPENSITY)
        ),
    }
    dataset = (
        tf.data.TFRecordDataset(files, compression_type="GZIP")
        .batch(batch_size)
        .map(lambda records: tf.io.parse_example(records, spec))
    )
    parts = {name: [] for name in spec}
    for batch in dataset.as_numpy_iterator():
        for name, values in batch.items():
            parts[name].append(values)
    if not parts[columns.ACTION]:
        raise ValueError(f"split {split_dir} holds no examples")
    return LoggedColumns(
        observations=np.concatenate(parts[columns.OBSERVATION]),
        actions=np.concatenate(parts[columns.ACTION]),
        rewards=np.concatenate(parts[columns.REWARD]),
        propensities=np.concatenate(parts[columns.PROPENSITY]),
    )
