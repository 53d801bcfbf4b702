"""A uniform sample of at most k rows that adds up across batches and workers.

Each row gets an independent uniform random key and a sample keeps the k rows
with the smallest keys (bottom-k sampling, as Beam's `Sample.FixedSizeGlobally`
does with its random top-k): the k smallest keys of a union are the k smallest
of the parts' k smallest, so samples of batches merge in any order into a
uniform sample without replacement of all rows. It works on whole batches of
columns, so no row becomes a Python object of its own.
"""

import dataclasses
from typing import Sequence, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class RowSample:
    """At most `capacity` rows of some columns, with their random keys.

    Attributes:
      capacity: k, the most rows kept.
      keys: [m] the kept rows' keys, m <= k.
      columns: row-aligned arrays, each [m, ...].
    """

    capacity: int
    keys: np.ndarray
    columns: Tuple[np.ndarray, ...]

    def __add__(self, other: "RowSample") -> "RowSample":
        keys = np.concatenate([self.keys, other.keys])
        columns = tuple(np.concatenate(pair) for pair in zip(self.columns, other.columns))
        return _smallest_keys(self.capacity, keys, columns)

    def __len__(self) -> int:
        return len(self.keys)


def empty_sample(capacity: int, row_shapes: Sequence[Tuple[int, ...]]) -> RowSample:
    """The sample of no rows; `row_shapes` are the shapes of one row of each column."""
    if capacity < 1:
        raise ValueError(f"a sample keeps at least one row; got capacity {capacity}")
    columns = tuple(np.zeros((0,) + tuple(shape), np.float32) for shape in row_shapes)
    return RowSample(capacity, np.zeros(0), columns)


def sample_rows(
    capacity: int, columns: Sequence[np.ndarray], rng: np.random.Generator
) -> RowSample:
    """A uniform sample of at most `capacity` of the rows of equally long `columns`."""
    keys = rng.random(len(columns[0]))
    return _smallest_keys(capacity, keys, tuple(np.asarray(c, np.float32) for c in columns))


def _smallest_keys(
    capacity: int, keys: np.ndarray, columns: Tuple[np.ndarray, ...]
) -> RowSample:
    if len(keys) <= capacity:
        return RowSample(capacity, keys, columns)
    kept = np.argpartition(keys, capacity - 1)[:capacity]
    return RowSample(capacity, keys[kept], tuple(column[kept] for column in columns))
