"""A split's rows streamed from its files with tf.data, for the neural agents.

The neural agents take their gradient steps in the trainer's process but never
hold the split: `shuffled_batches` passes the serialized examples through a
shuffle buffer of at most `SHUFFLE_BUFFER_ROWS` rows, repeats for the epochs
and parses a whole batch at a time, so memory is bounded by the buffer
whatever the split's size. The shuffle is local to the buffer; the files are
read in a reshuffled order each epoch and interleaved, so that the buffer
mixes rows of several files. `row_chunks` is one pass in file order, for the
statistics NeuralLinUCB sums over every row after its encoder is trained.
"""

from typing import Any, Dict, Sequence, Tuple

import tensorflow as tf

from bandit_core import logged_examples

# Serialized examples in the shuffle buffer: a few tens of MB of MovieLens rows.
SHUFFLE_BUFFER_ROWS = 65_536
# Files read in parallel; their rows alternate in the stream.
_FILES_AT_ONCE = 4
CHUNK_ROWS = 65_536

# (feature name, dtype of its column) for each column of an element.
Columns = Sequence[Tuple[str, tf.dtypes.DType]]


def shuffled_batches(
    split_dir: str,
    spec: Dict[str, Any],
    columns: Columns,
    batch_size: int,
    epochs: int,
    seed: int,
    shuffle_buffer_rows: int = SHUFFLE_BUFFER_ROWS,
) -> tf.data.Dataset:
    """`epochs` reshuffled passes over the split's rows, a tuple of columns per batch.

    As `neural_training.shuffled_batches`, one stream of epochs cut into
    batches of `batch_size` (a batch may straddle two epochs; the last may be
    smaller), but shuffled within a bounded buffer instead of by a permutation
    of rows held in memory.

    Args:
      split_dir: an ExampleGen split directory of gzipped TFRecords.
      spec: the split's parse spec, e.g. `logged_examples.classic_spec(d)`.
      columns: the features of each element's tuple and their dtypes.
      batch_size: rows per batch.
      epochs: passes over the rows.
      seed: seeds the file order and the shuffle.
      shuffle_buffer_rows: the most rows held for shuffling.
    """
    files = logged_examples.split_files(split_dir)
    records = (
        tf.data.Dataset.from_tensor_slices(files)
        .shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
        .interleave(
            lambda path: tf.data.TFRecordDataset(path, compression_type="GZIP"),
            cycle_length=min(len(files), _FILES_AT_ONCE),
        )
        .shuffle(shuffle_buffer_rows, seed=seed, reshuffle_each_iteration=True)
        .repeat(epochs)
    )
    return _parsed(records.batch(batch_size), spec, columns)


def row_chunks(
    split_dir: str, spec: Dict[str, Any], columns: Columns, chunk_rows: int = CHUNK_ROWS
) -> tf.data.Dataset:
    """One pass over the split's rows in file order, a tuple of columns per chunk."""
    records = tf.data.TFRecordDataset(
        logged_examples.split_files(split_dir), compression_type="GZIP"
    )
    return _parsed(records.batch(chunk_rows), spec, columns)


def _parsed(batches: tf.data.Dataset, spec: Dict[str, Any], columns: Columns) -> tf.data.Dataset:
    def parse(records: tf.Tensor):
        parsed = tf.io.parse_example(records, spec)
        return tuple(tf.cast(parsed[name], dtype) for name, dtype in columns)

    return batches.map(parse, num_parallel_calls=tf.data.AUTOTUNE).prefetch(tf.data.AUTOTUNE)
