"""Splits written as ExampleGen writes them (gzipped TFRecords of tf.Examples), for trainer tests.

Rows are spread over several files, as ExampleGen shards a split, so that
readers meet more than one file.
"""

import os
from typing import Dict, Optional, Sequence

import numpy as np
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.types import artifact_utils, standard_artifacts

from bandit_core import columns


def _feature(values, integer: bool = False) -> tf.train.Feature:
    flat = np.ravel(values)
    if integer:
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in flat]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in flat]))


def write_split(split_dir: str, rows: Sequence[Dict[str, tf.train.Feature]], files: int) -> None:
    """Writes the examples round-robin into `files` gzipped TFRecord files."""
    os.makedirs(split_dir, exist_ok=True)
    writers = [
        tf.io.TFRecordWriter(
            os.path.join(split_dir, f"data_tfrecord-{i:05d}-of-{files:05d}.gz"), options="GZIP"
        )
        for i in range(files)
    ]
    for number, feature in enumerate(rows):
        example = tf.train.Example(features=tf.train.Features(feature=feature))
        writers[number % files].write(example.SerializeToString())
    for writer in writers:
        writer.close()


def classic_rows(x: np.ndarray, a: np.ndarray, r: np.ndarray, num_actions: int):
    """tf.Example features of classic logged rows."""
    for i in range(len(a)):
        yield {
            columns.USER_ID: _feature([i], integer=True),
            columns.EVENT_TIME_US: _feature([i], integer=True),
            columns.OBSERVATION: _feature(x[i]),
            columns.ACTION: _feature([a[i]], integer=True),
            columns.REWARD: _feature([r[i]]),
            columns.PROPENSITY: _feature([1.0 / num_actions]),
        }


def per_arm_rows(
    users: np.ndarray,
    served: np.ndarray,
    movie_ids: np.ndarray,
    rewards: np.ndarray,
    num_candidates: int,
    user_ids: Optional[np.ndarray] = None,
):
    """tf.Example features of per-arm logged rows; the served movie sits at slot 0.

    Row i happens at time i, by user i unless `user_ids` names the users.
    """
    for i in range(len(rewards)):
        candidates = [movie_ids[i]] + [movie_ids[i] + 1 + c for c in range(num_candidates - 1)]
        yield {
            columns.USER_ID: _feature([i if user_ids is None else user_ids[i]], integer=True),
            columns.EVENT_TIME_US: _feature([i], integer=True),
            columns.OBSERVATION: _feature(users[i]),
            columns.ACTION: _feature([0], integer=True),
            columns.REWARD: _feature([rewards[i]]),
            columns.PROPENSITY: _feature([1.0 / num_candidates]),
            columns.CANDIDATE_MOVIE_IDS: _feature(candidates, integer=True),
            columns.MOVIE_ID: _feature([movie_ids[i]], integer=True),
            columns.ARM_FEATURES: _feature(served[i]),
        }


def examples_artifact(root: str, name: str, split: str) -> standard_artifacts.Examples:
    """An Examples artifact at `root/name` with one split."""
    examples = standard_artifacts.Examples()
    examples.uri = os.path.join(root, name)
    examples.split_names = artifact_utils.encode_split_names([split])
    return examples


def items_artifact(root: str, movie_ids: np.ndarray, features: np.ndarray):
    """The items ExampleGen's output: one row per movie."""
    items = examples_artifact(root, "items", columns.ITEMS_SPLIT)
    rows = (
        {columns.MOVIE_ID: _feature([m], integer=True), columns.FEATURES: _feature(f)}
        for m, f in zip(movie_ids, features)
    )
    write_split(os.path.join(items.uri, f"Split-{columns.ITEMS_SPLIT}"), rows, files=1)
    return items


def clean_anomalies(root: str) -> standard_artifacts.ExampleAnomalies:
    """ExampleValidator's report of no anomalies on the train split."""
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = os.path.join(root, "anomalies")
    anomalies.split_names = artifact_utils.encode_split_names(["train"])
    os.makedirs(os.path.join(anomalies.uri, "Split-train"))
    with open(os.path.join(anomalies.uri, "Split-train", DEFAULT_FILE_NAME), "wb") as f:
        f.write(anomalies_pb2.Anomalies().SerializeToString())
    return anomalies


def trainer_outputs(root: str) -> Dict[str, list]:
    """Empty Model and ModelRun artifacts for an executor to fill."""
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = os.path.join(root, "model"), os.path.join(root, "model_run")
    os.makedirs(model_run.uri)
    return {"model": [model], "model_run": [model_run]}
