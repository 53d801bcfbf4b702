"""Deterministic 64-bit row keys and the counter-based random numbers drawn from them.

The evaluator's folds, bootstrap weights and policy-sampling noise must come
out the same whichever worker sees a row and in whatever batch: a key made
from the row's own content (splitmix64's finaliser over the bit patterns of
its columns) and numbers that are pure functions of (key, seed, stream,
counter) give exactly that, vectorised in NumPy with no per-row loop.
"""

from typing import Sequence

import numpy as np

# splitmix64's increment, the 64-bit golden ratio.
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_TWO_TO_MINUS_53 = 2.0**-53
_TWO_TO_MINUS_32 = 2.0**-32

# Independent uses of one row key.
FOLD_STREAM = 1
BOOTSTRAP_STREAM = 2
NOISE_STREAM = 3


def mix64(values: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: a uint64 bijection; every output bit depends on every input bit."""
    z = np.asarray(values, dtype=np.uint64)
    with np.errstate(over="ignore"):
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def _column_bits(array: np.ndarray, rows: int) -> np.ndarray:
    """[rows, c] uint64 bit patterns: floats as float64, integers as int64."""
    values = np.asarray(array).reshape(rows, -1)
    if np.issubdtype(values.dtype, np.floating):
        return values.astype(np.float64).view(np.uint64)
    return values.astype(np.int64).view(np.uint64)


def row_keys(columns: Sequence[np.ndarray]) -> np.ndarray:
    """[N] uint64 keys of rows given as column arrays of leading size N.

    Equal rows get equal keys; float32 and float64 copies of one value are equal.
    """
    rows = len(columns[0])
    bits = np.concatenate([_column_bits(c, rows) for c in columns], axis=1)
    positions = np.arange(1, bits.shape[1] + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        mixed = mix64(bits + positions * _GOLDEN)
        return mix64(np.sum(mixed, axis=1, dtype=np.uint64))


def stream_bases(keys: np.ndarray, seed: int, stream: int) -> np.ndarray:
    """[N] per-row starting states of one (seed, stream)."""
    with np.errstate(over="ignore"):
        salt = mix64(np.uint64(seed) * _GOLDEN + np.uint64(stream))
    return mix64(np.asarray(keys, dtype=np.uint64) ^ salt)


def counter_bits(bases: np.ndarray, start: int, count: int) -> np.ndarray:
    """[N, count] outputs start..start+count-1 of splitmix64 seeded with each row's base."""
    counters = np.arange(start + 1, start + count + 1, dtype=np.uint64)
    with np.errstate(over="ignore"):
        return mix64(bases[:, None] + counters[None, :] * _GOLDEN)


def uniforms(bases: np.ndarray, start: int, count: int) -> np.ndarray:
    """[N, count] uniforms in [0, 1) with 53 random bits each."""
    return (counter_bits(bases, start, count) >> np.uint64(11)).astype(np.float64) * (
        _TWO_TO_MINUS_53
    )


def folds(keys: np.ndarray, seed: int, num_folds: int) -> np.ndarray:
    """[N] int64 fold of each row in [0, num_folds): equal rows share a fold."""
    return (stream_bases(keys, seed, FOLD_STREAM) % np.uint64(num_folds)).astype(np.int64)


def standard_normals(keys: np.ndarray, seed: int, count: int) -> np.ndarray:
    """[N, count] standard normals per row (Box-Muller on the two halves of each draw)."""
    bits = counter_bits(stream_bases(keys, seed, NOISE_STREAM), 0, count)
    radius_uniform = ((bits >> np.uint64(32)).astype(np.float64) + 1.0) * _TWO_TO_MINUS_32
    angle_uniform = (bits & np.uint64(0xFFFFFFFF)).astype(np.float64) * _TWO_TO_MINUS_32
    return np.sqrt(-2.0 * np.log(radius_uniform)) * np.cos(2.0 * np.pi * angle_uniform)
