"""Reads an ExampleGen split in Beam as batches of parsed columns.

The trainer's and evaluator's Beam pipelines start here: each element is a
dict of NumPy arrays for up to `batch_size` examples, parsed with the same
spec as the in-memory readers of `bandit_core.logged_examples`, so a
combiner over the batches sees exactly the rows the in-memory path sees and
no worker ever holds more than one batch of the split.
"""

import os
import pickle
import uuid
from typing import Any, Dict, List

import apache_beam as beam
import numpy as np
import tensorflow as tf
from apache_beam.io.filesystem import CompressionTypes

from bandit_core import logged_examples

DEFAULT_BATCH_SIZE = 8192


def parse_batch(serialized: List[bytes], spec: Dict[str, Any]) -> Dict[str, np.ndarray]:
    """Serialized tf.Examples -> one array per feature of `spec`."""
    parsed = tf.io.parse_example(tf.constant(serialized), spec)
    return {name: values.numpy() for name, values in parsed.items()}


class ReadSplitBatches(beam.PTransform):
    """PBegin -> PCollection of {feature: [rows, ...] array} for one split directory."""

    def __init__(
        self, split_dir: str, spec: Dict[str, Any], batch_size: int = DEFAULT_BATCH_SIZE
    ) -> None:
        super().__init__()
        logged_examples.split_files(split_dir)
        self._pattern = os.path.join(split_dir, "*.gz")
        self._spec = spec
        self._batch_size = batch_size

    def expand(self, pipeline: beam.pvalue.PBegin) -> beam.PCollection:
        return (
            pipeline
            | "ReadRecords"
            >> beam.io.ReadFromTFRecord(
                self._pattern,
                coder=beam.coders.BytesCoder(),
                compression_type=CompressionTypes.GZIP,
            )
            | "Batch"
            >> beam.BatchElements(min_batch_size=self._batch_size, max_batch_size=self._batch_size)
            | "Parse" >> beam.Map(parse_batch, spec=self._spec)
        )


def combine_split(
    pipeline: beam.Pipeline,
    split_dir: str,
    spec: Dict[str, Any],
    combine_fn: beam.CombineFn,
    result_dir: str,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> Any:
    """Runs `pipeline`, combining every batch of the split with `combine_fn`; returns the result.

    A Beam pipeline's output stays with its workers, which on Dataflow are
    other machines: the one combined value comes back through a file in
    `result_dir`, a directory that the workers and the caller both reach
    (e.g. an output artifact's directory under the pipeline root); the file is
    removed once read.
    """
    tf.io.gfile.makedirs(result_dir)
    path = os.path.join(result_dir, f"combined-{uuid.uuid4().hex}.pickle")
    with pipeline:
        _ = (
            pipeline
            | "ReadSplit" >> ReadSplitBatches(split_dir, spec, batch_size)
            | "Combine" >> beam.CombineGlobally(combine_fn)
            | "WriteResult" >> beam.Map(_write_pickle, path)
        )
    with tf.io.gfile.GFile(path, "rb") as f:
        combined = pickle.load(f)
    tf.io.gfile.remove(path)
    return combined


def _write_pickle(value: Any, path: str) -> None:
    with tf.io.gfile.GFile(path, "wb") as f:
        pickle.dump(value, f)
