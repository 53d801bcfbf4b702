"""The Beam reader of a split: batches of parsed columns, and one combined value back.

Splits are gzipped TFRecords in several files, as ExampleGen writes them; the
batches are compared with the in-memory reader on the same files.
"""

import os

import apache_beam as beam
import numpy as np
import pytest

from bandit_core import columns, logged_examples
from custom_components.split_batches import ReadSplitBatches, combine_split
from tests.custom_components.bandit_trainer import logged_splits

D, K, N = 3, 4, 950


def _split(root) -> str:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    a = rng.integers(0, K, size=N)
    r = np.arange(N, dtype=np.float32)  # the reward names the row
    split_dir = os.path.join(str(root), "Split-train")
    logged_splits.write_split(split_dir, logged_splits.classic_rows(x, a, r, K), files=3)
    return split_dir


def test_the_batches_hold_every_row_of_the_split_once(tmp_path):
    split_dir = _split(tmp_path)
    batches = combine_split(
        beam.Pipeline(),
        split_dir,
        logged_examples.classic_spec(D),
        beam.combiners.ToListCombineFn(),
        str(tmp_path),
        batch_size=100,
    )
    assert len(batches) >= N // 100 and max(len(b[columns.ACTION]) for b in batches) <= 100
    combined = {
        name: np.concatenate([batch[name] for batch in batches]) for name in batches[0]
    }
    order = np.argsort(combined[columns.REWARD])
    expected = logged_examples.read_split(split_dir, D)
    by_row = np.argsort(expected.rewards)
    np.testing.assert_array_equal(
        combined[columns.OBSERVATION][order], expected.observations[by_row]
    )
    np.testing.assert_array_equal(combined[columns.ACTION][order], expected.actions[by_row])
    np.testing.assert_array_equal(combined[columns.REWARD][order], np.arange(N))
    np.testing.assert_array_equal(combined[columns.PROPENSITY], np.full(N, 1.0 / K, np.float32))
    assert os.listdir(str(tmp_path)) == ["Split-train"]  # the result's file is removed


def test_a_split_without_example_files_fails_by_name(tmp_path):
    with pytest.raises(ValueError, match=r"no example files \(\*\.gz\) in .*empty; did ExampleGen"):
        ReadSplitBatches(str(tmp_path / "empty"), logged_examples.classic_spec(D))
