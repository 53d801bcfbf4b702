"""PolicyEvaluator's Beam pipeline: the two passes of `evaluation_passes` over a split.

    files -> read batches, key rows -> pass 1 per batch -> sum -> fit the reward model
                                    -> shard by key -> group -> pass 2 per shard -> sum

Pass 2 needs equal rows together (they share bootstrap weights, see
`poisson_bootstrap`), so rows go to one of 2^SHARD_BITS shards by their
key's top bits and each shard merges its equal rows: a worker holds one
shard, never the split. Everything else is per batch, and only sums cross
workers, so the same pipeline runs on the DirectRunner (one process or
several) and on Dataflow. The summed results are written as one small file
under `result_dir` and read back by the caller.
"""

import os
import pickle
from typing import Any, Iterable, Iterator, List, Optional, Tuple

import apache_beam as beam
import numpy as np
import tensorflow as tf

from bandit_core import logged_examples
from custom_components.policy_evaluator import evaluation_passes, ope_sums, row_hashing
from custom_components.policy_evaluator.evaluation_passes import FirstPass, Passes

SHARD_BITS = 6
_UNREADABLE = "unreadable"
_RESULT_FILE = "sums.pickle"


class _SumCombineFn(beam.CombineFn):
    """Adds up values that support +; None when there are none."""

    def create_accumulator(self) -> Any:
        return None

    def add_input(self, total: Any, value: Any) -> Any:
        return value if total is None else total + value

    def merge_accumulators(self, totals: Iterable[Any]) -> Any:
        merged = None
        for total in totals:
            if total is not None:
                merged = self.add_input(merged, total)
        return merged

    def extract_output(self, total: Any) -> Any:
        return total


class _ReadFile(beam.DoFn):
    """A split file -> (columns, keys) batches; a file TensorFlow cannot parse -> its error."""

    def __init__(self, passes: Passes):
        self._passes = passes

    def process(self, path: str) -> Iterator[Any]:
        spec = self._passes.parse_spec()
        dataset = (
            tf.data.TFRecordDataset([path], compression_type="GZIP")
            .batch(evaluation_passes.BLOCK_ROWS)
            .map(lambda records: tf.io.parse_example(records, spec))
        )
        try:
            for parsed in dataset.as_numpy_iterator():
                columns = self._passes.columns(parsed)
                yield columns, row_hashing.row_keys(self._passes.key_columns(columns))
        except tf.errors.OpError as e:
            yield beam.pvalue.TaggedOutput(_UNREADABLE, f"{os.path.basename(path)}: {e.message}")


def _by_shard(batch: Tuple[Any, np.ndarray]) -> Iterator[Tuple[int, Tuple[Any, np.ndarray]]]:
    columns, keys = batch
    shards = (keys >> np.uint64(64 - SHARD_BITS)).astype(np.int64)
    for shard in np.unique(shards):
        rows = shards == shard
        yield int(shard), (evaluation_passes.take(columns, rows), keys[rows])


def _second_pass(
    shard: Tuple[int, Iterable[Tuple[Any, np.ndarray]]], passes: Any, fitted: Any
) -> Iterator[ope_sums.Sums]:
    """Pass 2 over one shard's rows; nothing when pass 1 found the data unusable.

    `passes` is a `Passes`, typed Any: Beam checks the hints of what it calls.
    """
    if fitted is None:
        return
    parts = list(shard[1])
    columns = evaluation_passes.concatenate([columns for columns, _ in parts])
    keys = np.concatenate([keys for _, keys in parts])
    yield evaluation_passes.second_pass(passes, columns, keys, fitted)


def _write(first: Optional[FirstPass], second: Any, unreadable: List[str], path: str) -> None:
    with tf.io.gfile.GFile(path, "wb") as f:
        pickle.dump((first, second, sorted(unreadable)), f)


def build(
    pipeline: beam.Pipeline, split_dir: str, passes: Passes, result_path: str
) -> None:
    """Adds the evaluation of the split's files to `pipeline`, writing its sums to `result_path`."""
    files = logged_examples.split_files(split_dir)
    read = (
        pipeline
        | "Files" >> beam.Create(sorted(files))
        | "Read" >> beam.ParDo(_ReadFile(passes)).with_outputs(_UNREADABLE, main="batches")
    )
    batches = read.batches
    first = (
        batches
        | "FirstPass" >> beam.Map(lambda batch: passes.first(*batch))
        | "SumFirst" >> beam.CombineGlobally(_SumCombineFn())
    )
    fitted = first | "Fit" >> beam.Map(
        lambda total: None if total is None else passes.fitted(total)
    )
    second = (
        batches
        | "Shard" >> beam.FlatMap(_by_shard)
        | "GroupShards" >> beam.GroupByKey()
        | "SecondPass"
        >> beam.FlatMap(_second_pass, passes=passes, fitted=beam.pvalue.AsSingleton(fitted))
        | "SumSecond" >> beam.CombineGlobally(_SumCombineFn())
    )
    unreadable = read[_UNREADABLE] | "ListUnreadable" >> beam.combiners.ToList()
    _ = first | "Write" >> beam.Map(
        _write,
        second=beam.pvalue.AsSingleton(second),
        unreadable=beam.pvalue.AsSingleton(unreadable),
        path=result_path,
    )


def run(
    pipeline: beam.Pipeline, split_dir: str, passes: Passes, result_dir: str
) -> Tuple[FirstPass, Optional[ope_sums.Sums]]:
    """Runs the evaluation pipeline and returns (pass 1's sums, pass 2's or None).

    Raises:
      ValueError: the split has no files, a file cannot be parsed, or it holds no examples.
    """
    result_path = os.path.join(result_dir, _RESULT_FILE)
    tf.io.gfile.makedirs(result_dir)
    with pipeline:
        build(pipeline, split_dir, passes, result_path)
    with tf.io.gfile.GFile(result_path, "rb") as f:
        first, second, unreadable = pickle.load(f)
    tf.io.gfile.remove(result_path)
    if unreadable:
        raise ValueError(f"split {split_dir} could not be parsed: {'; '.join(unreadable)}")
    if first is None:
        raise ValueError(f"split {split_dir} holds no examples")
    return first, second
