"""Logged rows of a small linear bandit, written the way ExampleGen writes them, and policies.

Shared by the executor tests: the local `Do` calls and the run through TFX's
Vertex entry point read the same examples and score the same trained policies.
"""

import os
from typing import Callable, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tfx.types import artifact_utils, standard_artifacts
from tfx.utils import path_utils

from bandit_core import columns
from custom_components.bandit_trainer import training
from custom_components.bandit_trainer.settings import TrainerSettings

D, K = 5, 4
Rows = Tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def log_rows(n: int, seed: int) -> Rows:
    """(contexts, actions, rewards, propensities) logged uniformly on one fixed bandit."""
    rng = np.random.default_rng(0)
    theta, bias = rng.normal(size=(K, D)), rng.normal(size=K)
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    a = rng.integers(0, K, size=n)
    r = (x @ theta.T + bias)[np.arange(n), a] + rng.normal(scale=0.5, size=n)
    return x, a, r.astype(np.float32), np.full(n, 1.0 / K, dtype=np.float32)


def example(x, a=None, r=None, p=None, user=1) -> tf.train.Example:
    """One logged row; a None column is left out, as a writer that lost it would."""
    feature = {
        columns.USER_ID: tf.train.Feature(int64_list=tf.train.Int64List(value=[user])),
        columns.OBSERVATION: tf.train.Feature(float_list=tf.train.FloatList(value=x)),
        columns.EVENT_TIME_US: tf.train.Feature(int64_list=tf.train.Int64List(value=[1])),
    }
    for name, value, kind in (
        (columns.ACTION, a, "int"),
        (columns.REWARD, r, "float"),
        (columns.PROPENSITY, p, "float"),
    ):
        if value is None:
            continue
        feature[name] = (
            tf.train.Feature(int64_list=tf.train.Int64List(value=[int(value)]))
            if kind == "int"
            else tf.train.Feature(float_list=tf.train.FloatList(value=[float(value)]))
        )
    return tf.train.Example(features=tf.train.Features(feature=feature))


def write_examples(
    path: str, x, a, r, p, users: Optional[Sequence[int]] = None, gzip: bool = True
) -> None:
    with tf.io.TFRecordWriter(path, options="GZIP" if gzip else None) as writer:
        for i in range(len(x)):
            user = 1 if users is None else int(users[i])
            writer.write(example(x[i], a[i], r[i], p[i], user).SerializeToString())


def examples_artifact(
    root, rows: Optional[Rows] = None, write: Optional[Callable[[str], None]] = None
) -> standard_artifacts.Examples:
    """An Examples artifact whose one split, "eval", holds `rows` or what `write` writes."""
    artifact = standard_artifacts.Examples()
    artifact.uri = str(root)
    artifact.split_names = artifact_utils.encode_split_names(["eval"])
    split_dir = os.path.join(str(root), "Split-eval")
    os.makedirs(split_dir)
    if rows is not None:
        write_examples(os.path.join(split_dir, "data.gz"), *rows)
    if write is not None:
        write(os.path.join(split_dir, "data.gz"))
    return artifact


def trained_model(root, settings: TrainerSettings, rows: Rows, model_id: int):
    """A Model artifact holding a policy trained on `rows` and exported as BanditTrainer does."""
    model = standard_artifacts.Model()
    model.uri = str(root)
    model.id = model_id
    x, a, r, _ = rows
    trained = training.train_policy(settings, x, a, r, K)
    training.save_policy(trained, path_utils.serving_model_dir(model.uri))
    return model
