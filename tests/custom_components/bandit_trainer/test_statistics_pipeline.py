"""The trainer's combinable sums: any split into batches and any merge order give the same sums.

The sample is checked against its definition (the rows with the smallest
random keys) and for uniformity with a seeded generator.
"""

import itertools

import numpy as np
import pytest

from bandit_core import agent_names, columns, per_arm_features
from bandit_core.linear_statistics import arm_statistics
from bandit_core.per_arm_statistics import per_arm_statistics
from custom_components.bandit_trainer import statistics_pipeline
from custom_components.bandit_trainer.row_sample import empty_sample, sample_rows

D, K = 3, 4


def _classic_batches(n: int, parts: int):
    rng = np.random.default_rng(0)
    batch = {
        columns.OBSERVATION: rng.normal(size=(n, D)).astype(np.float32),
        columns.ACTION: rng.integers(0, K, size=n),
        columns.REWARD: rng.normal(size=n).astype(np.float32),
    }
    bounds = np.linspace(0, n, parts + 1).astype(int)
    return batch, [{k: v[s:e] for k, v in batch.items()} for s, e in zip(bounds, bounds[1:])]


def test_classic_sums_of_batches_merged_in_any_order_are_the_sums_of_all_rows():
    whole, batches = _classic_batches(900, 6)
    combine = statistics_pipeline.classic_sums_fn(K, D, linear=True, sample_size=50)
    # Two "workers", each adding three batches, merged in both orders.
    workers = [
        combine.add_inputs(combine.create_accumulator(), batches[i::2]) for i in range(2)
    ]
    expected = arm_statistics(
        whole[columns.OBSERVATION], whole[columns.ACTION], whole[columns.REWARD], K
    )
    for merged in (workers, workers[::-1]):
        sums = combine.extract_output(combine.merge_accumulators(merged))
        assert sums.rows == 900
        assert sums.reward_sum == pytest.approx(float(whole[columns.REWARD].sum()), rel=1e-6)
        np.testing.assert_array_equal(
            sums.rows_per_arm, np.bincount(whole[columns.ACTION], minlength=K)
        )
        np.testing.assert_allclose(sums.statistics.cov_matrices, expected.cov_matrices, rtol=1e-12)
        np.testing.assert_allclose(sums.statistics.data_vectors, expected.data_vectors, rtol=1e-12)
        assert len(sums.sample) == 50
        logged = {tuple(row) for row in whole[columns.OBSERVATION]}
        assert {tuple(row) for row in sums.sample.columns[0]} <= logged


def test_neural_agents_sum_counts_but_no_statistics():
    _, batches = _classic_batches(100, 2)
    combine = statistics_pipeline.classic_sums_fn(K, D, linear=False)
    sums = combine.add_inputs(combine.create_accumulator(), batches)
    assert sums.statistics is None and sums.rows == 100


def test_per_arm_sums_count_rows_per_served_movie_and_sum_the_agents_contexts():
    rng = np.random.default_rng(1)
    n, dg, da = 400, 2, 3
    users = rng.normal(size=(n, dg)).astype(np.float32)
    served = rng.normal(size=(n, da)).astype(np.float32)
    movies = rng.choice([11, 23, 57], size=n, p=[0.2, 0.3, 0.5])
    rewards = rng.normal(size=n).astype(np.float32)
    user_ids = np.r_[rng.integers(0, 3, size=n - 1), 3]
    agent = agent_names.INTERACTION_LINTS
    combine = statistics_pipeline.per_arm_sums_fn(agent, dg, da)
    batches = [
        {
            columns.OBSERVATION: users[rows],
            columns.ARM_FEATURES: served[rows],
            columns.REWARD: rewards[rows],
            columns.MOVIE_ID: movies[rows],
            columns.USER_ID: user_ids[rows],
            columns.EVENT_TIME_US: np.arange(n)[rows],
        }
        for rows in (slice(0, 150), slice(150, 400))
    ]
    sums = combine.add_inputs(combine.create_accumulator(), batches)
    assert sums.users.table().user_ids.tolist() == [1, 2, 3]
    np.testing.assert_array_equal(sums.users.table().features_of([3]), users[[n - 1]])

    assert dict(sums.rows_per_movie) == {m: int((movies == m).sum()) for m in (11, 23, 57)}
    np.testing.assert_array_equal(
        sums.served_movie_rows(), np.sort([(movies == m).sum() for m in (11, 23, 57)])
    )
    expected = per_arm_statistics(per_arm_features.linear_contexts(agent, users, served), rewards)
    np.testing.assert_allclose(sums.statistics.cov_matrix, expected.cov_matrix, rtol=1e-12)
    np.testing.assert_allclose(sums.statistics.data_vector, expected.data_vector, rtol=1e-12)
    assert [c.shape for c in sums.sample.columns] == [(n, dg), (n, da)]


def test_a_merged_sample_keeps_the_rows_with_the_smallest_keys():
    rng = np.random.default_rng(2)
    values = np.arange(60, dtype=np.float32)[:, None]
    parts = [sample_rows(10, [values[i : i + 20]], rng) for i in (0, 20, 40)]
    for order in itertools.permutations(parts):
        merged = empty_sample(10, [(1,)])
        for part in order:
            merged = merged + part
        keys = np.concatenate([p.keys for p in parts])
        kept = np.concatenate([p.columns[0] for p in parts])[np.argsort(keys)[:10]]
        assert sorted(merged.columns[0][:, 0]) == sorted(kept[:, 0])
        assert len(merged) == 10


def test_a_merged_sample_is_uniform_over_all_rows():
    rng = np.random.default_rng(3)
    values = np.arange(1000, dtype=np.float32)[:, None]
    times_kept = np.zeros(1000)
    for _ in range(2000):
        merged = empty_sample(100, [(1,)])
        for start in range(0, 1000, 150):
            merged = merged + sample_rows(100, [values[start : start + 150]], rng)
        times_kept[merged.columns[0][:, 0].astype(int)] += 1
    # Each row is kept with probability 0.1: 200 times in expectation, sd about 13.4.
    assert np.all(np.abs(times_kept - 200) < 70), (times_kept.min(), times_kept.max())


def test_a_sample_keeps_at_least_one_row():
    with pytest.raises(ValueError, match="a sample keeps at least one row; got capacity 0"):
        empty_sample(0, [(1,)])
