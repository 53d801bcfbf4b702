"""The Beam CombineFn computes exactly the vectorised `arm_statistics`, on the DirectRunner."""

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from apache_beam.testing.util import assert_that

from custom_components.bandit_trainer.beam_statistics import (
    ArmStatisticsCombineFn,
    ArmStatisticsFromExamples,
    parse_logged_example,
)
from bandit_core.linear_statistics import arm_statistics
from bandit_core import columns

D, K = 4, 6


def _rows(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    a = rng.integers(0, K - 1, size=n)  # the last arm never appears
    r = rng.normal(size=n).astype(np.float32)
    return x, a, r


def _matches(expected):
    def check(outputs):
        assert len(outputs) == 1
        (actual,) = outputs
        for name in ("cov_matrices", "data_vectors"):
            np.testing.assert_allclose(
                getattr(actual, name), getattr(expected, name), rtol=1e-12, atol=1e-12
            )
        np.testing.assert_array_equal(actual.num_samples, expected.num_samples)

    return check


@pytest.mark.parametrize("n, block_size", [(0, 8), (5, 8), (1000, 7), (1000, 4096)])
def test_combine_fn_equals_arm_statistics(n, block_size):
    x, a, r = _rows(n)
    rows = [(x[i], int(a[i]), float(r[i])) for i in range(n)]
    with beam.Pipeline("DirectRunner") as pipeline:
        result = (
            pipeline
            | beam.Create(rows, reshuffle=True)
            | beam.CombineGlobally(ArmStatisticsCombineFn(K, D, block_size=block_size))
        )
        assert_that(result, _matches(arm_statistics(x.reshape(n, D), a, r, K)))


def _example(x, a, r) -> bytes:
    return tf.train.Example(
        features=tf.train.Features(
            feature={
                columns.OBSERVATION: tf.train.Feature(float_list=tf.train.FloatList(value=x)),
                columns.ACTION: tf.train.Feature(int64_list=tf.train.Int64List(value=[a])),
                columns.REWARD: tf.train.Feature(float_list=tf.train.FloatList(value=[r])),
                columns.PROPENSITY: tf.train.Feature(float_list=tf.train.FloatList(value=[0.2])),
            }
        )
    ).SerializeToString()


def test_transform_over_serialized_examples_equals_arm_statistics(tmp_path):
    x, a, r = _rows(700, seed=1)
    path = str(tmp_path / "data.tfrecord.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(len(a)):
            writer.write(_example(x[i], int(a[i]), float(r[i])))
    with beam.Pipeline("DirectRunner") as pipeline:
        result = (
            pipeline
            | beam.io.ReadFromTFRecord(
                path, compression_type=beam.io.filesystem.CompressionTypes.GZIP
            )
            | ArmStatisticsFromExamples(K, D)
        )
        assert_that(result, _matches(arm_statistics(x, a, r, K)))


def test_parse_logged_example_reads_the_training_columns():
    observation, action, reward = parse_logged_example(_example([1.0, 2.0, 3.0, 4.0], 3, 0.5))
    np.testing.assert_array_equal(observation, [1.0, 2.0, 3.0, 4.0])
    assert (action, reward) == (3, 0.5)


def test_wrong_observation_length_is_a_clear_error():
    fn = ArmStatisticsCombineFn(K, D)
    accumulator = fn.add_input(fn.create_accumulator(), (np.zeros(D + 1), 0, 1.0))
    with pytest.raises(ValueError, match=f"observations must have length {D}"):
        fn.extract_output(accumulator)


def test_merging_partial_accumulators_equals_one_pass():
    """What Beam does across workers: partial sums, some with unfolded rows, merged."""
    x, a, r = _rows(50, seed=2)
    fn = ArmStatisticsCombineFn(K, D, block_size=8)
    parts = []
    for rows in (range(0, 20), range(20, 23), range(23, 50)):
        accumulator = fn.create_accumulator()
        for i in rows:
            accumulator = fn.add_input(accumulator, (x[i], int(a[i]), float(r[i])))
        parts.append(accumulator)
    merged = fn.merge_accumulators([parts[0], fn.merge_accumulators(parts[1:])])
    _matches(arm_statistics(x, a, r, K))([fn.extract_output(fn.compact(merged))])
