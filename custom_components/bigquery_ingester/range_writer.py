"""The Beam step of the emulator ExampleGen: one row range in, its examples written per split.

A Beam element is a whole row range (a few MB of rows), not a row, so the
runner's per-element cost is paid a few hundred times per million rows; the
rows are read as Arrow, encoded a batch at a time and hash-split with the
stock executor's function. Each range writes one gzipped TFRecord file per
split under a name fixed by its index, so a retried range overwrites its
own files.
"""

import os
from typing import List, Optional, Sequence, Tuple

import apache_beam as beam
import tensorflow as tf

from bandit_core.bigquery import clients
from custom_components.bigquery_ingester import arrow_examples, hash_split, table_reader

# The stock ExampleGen's file prefix, so split directories look the same.
FILE_PREFIX = "data_tfrecord"


def range_file(split_dir: str, index: int, count: int) -> str:
    """The file of range `index` of `count` in a split directory."""
    return os.path.join(split_dir, f"{FILE_PREFIX}-{index:05d}-of-{count:05d}.gz")


def write_records(path: str, records: Sequence[bytes]) -> None:
    """A gzipped TFRecord file of the records (an empty file for none), as the stock writer."""
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.TFRecordWriter(path, tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for record in records:
            writer.write(record)


class WriteRangeExamples(beam.DoFn):
    """Reads (index, RowRange) of a scratch table and writes its examples to the split dirs.

    Args:
      endpoints: the emulator.
      table: the materialised query.
      split_dirs: one directory per output split, in split order.
      buckets: cumulative hash buckets of the splits, or None to write every
        row to the single split dir (an input split kept as it is).
      num_ranges: how many ranges the table was planned in, for file names.
    """

    def __init__(
        self,
        endpoints: clients.BigQueryEndpoints,
        table: table_reader.ScratchTable,
        split_dirs: List[str],
        buckets: Optional[List[int]],
        num_ranges: int,
    ):
        super().__init__()
        self._endpoints = endpoints
        self._table = table
        self._split_dirs = split_dirs
        self._buckets = buckets
        self._num_ranges = num_ranges
        self._rows = beam.metrics.Metrics.counter("EmulatorExampleGen", "num_instances")

    def setup(self) -> None:
        self._read_client = clients.make_read_client(self._endpoints)

    def teardown(self) -> None:
        self._read_client.transport.close()

    def process(self, element: Tuple[int, table_reader.RowRange]) -> None:
        index, rows = element
        examples: List[bytes] = []
        for batch in table_reader.read_range(self._read_client, self._table, rows).to_batches():
            examples.extend(arrow_examples.encode_examples(batch))
        per_split: List[List[bytes]] = [[] for _ in self._split_dirs]
        if self._buckets is None:
            per_split[0] = examples
        else:
            for example in examples:
                per_split[hash_split.split_index(example, self._buckets)].append(example)
        for split_dir, records in zip(self._split_dirs, per_split):
            write_records(range_file(split_dir, index, self._num_ranges), records)
        self._rows.inc(len(examples))
