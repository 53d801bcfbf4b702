"""The per-arm feature maps, the shared model's statistics and its NumPy scores."""

import numpy as np
import pytest

from bandit_core import agent_names, per_arm_features, per_arm_linear_policy, per_arm_statistics
from bandit_core.linear_statistics import LinearArmStatistics
from bandit_core.per_arm_statistics import (
    PerArmStatistics,
    zero_per_arm_statistics,
)
from bandit_core.per_arm_statistics import (
    per_arm_statistics as statistics_of,
)

DG, DA, C = 4, 3, 5


def _round(seed: int = 0, n: int = 6):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, DG)), rng.normal(size=(n, C, DA))


# --- feature maps -------------------------------------------------------------------------------


def test_concatenated_puts_the_user_before_each_candidate():
    u, v = _round()
    x = per_arm_features.concatenated(u, v)
    assert x.shape == (6, C, DG + DA)
    for n in range(6):
        for c in range(C):
            np.testing.assert_array_equal(x[n, c], np.concatenate([u[n], v[n, c]]))
    np.testing.assert_array_equal(per_arm_features.concatenated(u, v[:, 2]), x[:, 2])


def test_interaction_is_the_row_major_outer_product():
    u, v = _round()
    z = per_arm_features.interaction(u, v)
    assert z.shape == (6, C, DG * DA)
    for n in range(6):
        for c in range(C):
            np.testing.assert_allclose(z[n, c], np.kron(u[n], v[n, c]), rtol=1e-15)
            np.testing.assert_allclose(
                z[n, c].reshape(DG, DA), np.outer(u[n], v[n, c]), rtol=1e-15
            )
    np.testing.assert_array_equal(per_arm_features.interaction(u, v[:, 1]), z[:, 1])
    # A bilinear reward u^T W v is linear in the interaction features.
    w = np.random.default_rng(1).normal(size=(DG, DA))
    np.testing.assert_allclose(z @ w.ravel(), np.einsum("ni,ij,ncj->nc", u, w, v), atol=1e-12)


def test_feature_maps_keep_float32_and_reject_bad_shapes():
    u, v = _round()
    assert per_arm_features.interaction(u.astype(np.float32), v.astype(np.float32)).dtype == (
        np.float32
    )
    assert per_arm_features.concatenated(u.astype(np.float32), v).dtype == np.float64
    for bad_u, bad_v in ((u[0], v), (u, v[0, 0]), (u[:5], v), (u, v[..., None])):
        with pytest.raises(ValueError, match=r"\[N, dg\]"):
            per_arm_features.interaction(bad_u, bad_v)


def test_each_agent_sees_its_own_arm_features():
    u, v = _round()
    for agent in agent_names.PER_ARM_AGENTS:
        seen = per_arm_features.policy_arm_features(agent, u, v)
        if agent in agent_names.INTERACTION_AGENTS:
            np.testing.assert_array_equal(seen, per_arm_features.interaction(u, v))
        else:
            np.testing.assert_array_equal(seen, v)
    np.testing.assert_array_equal(
        per_arm_features.linear_contexts(agent_names.INTERACTION_LINTS, u, v),
        per_arm_features.concatenated(u, per_arm_features.interaction(u, v)),
    )
    with pytest.raises(ValueError, match="not a per-arm agent"):
        per_arm_features.policy_arm_features(agent_names.LINUCB, u, v)
    with pytest.raises(ValueError, match="not a per-arm linear agent"):
        per_arm_features.linear_contexts(agent_names.PER_ARM_NEURAL_LINUCB, u, v)


# --- statistics ---------------------------------------------------------------------------------


def test_statistics_are_the_sums_of_the_rows():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(50, 7)).astype(np.float32)
    r = rng.normal(size=50).astype(np.float32)
    stats = statistics_of(x, r)
    x64, r64 = x.astype(np.float64), r.astype(np.float64)
    np.testing.assert_allclose(stats.cov_matrix, x64.T @ x64, rtol=1e-12)
    np.testing.assert_allclose(stats.data_vector, x64.T @ r64, rtol=1e-12)
    assert stats.num_samples == 50.0 and stats.context_dim == 7
    assert stats.cov_matrix.dtype == stats.data_vector.dtype == np.float64


def test_statistics_are_summed_block_by_block(monkeypatch):
    rng = np.random.default_rng(3)
    x, r = rng.normal(size=(23, 4)), rng.normal(size=23)
    whole = statistics_of(x, r)
    monkeypatch.setattr(per_arm_statistics, "_BLOCK_ROWS", 5)
    blocked = statistics_of(x, r)
    np.testing.assert_allclose(blocked.cov_matrix, whole.cov_matrix, rtol=1e-12)
    np.testing.assert_allclose(blocked.data_vector, whole.data_vector, rtol=1e-12)
    assert blocked.num_samples == 23


def test_statistics_add_and_start_from_zero():
    rng = np.random.default_rng(4)
    x, r = rng.normal(size=(40, 5)), rng.normal(size=40)
    first, second = statistics_of(x[:15], r[:15]), statistics_of(x[15:], r[15:])
    total = zero_per_arm_statistics(5) + first + second
    whole = statistics_of(x, r)
    assert isinstance(total, PerArmStatistics)
    np.testing.assert_allclose(total.cov_matrix, whole.cov_matrix, rtol=1e-12)
    np.testing.assert_allclose(total.data_vector, whole.data_vector, rtol=1e-12)
    assert total.num_samples == 40
    empty = statistics_of(np.zeros((0, 5)), np.zeros(0))
    np.testing.assert_array_equal(empty.cov_matrix, zero_per_arm_statistics(5).cov_matrix)
    assert empty.num_samples == 0


def test_statistics_as_the_one_model_of_a_per_arm_agent():
    stats = statistics_of(np.array([[1.0, 2.0], [3.0, 0.0]]), np.array([1.0, -1.0]))
    model = stats.as_model_statistics()
    assert isinstance(model, LinearArmStatistics)
    np.testing.assert_array_equal(model.cov_matrices, [[[10.0, 2.0], [2.0, 4.0]]])
    np.testing.assert_array_equal(model.data_vectors, [[-2.0, 2.0]])
    np.testing.assert_array_equal(model.num_samples, [2.0])


@pytest.mark.parametrize(
    "x, r",
    [
        (np.zeros(3), np.zeros(3)),
        (np.zeros((3, 2)), np.zeros(2)),
        (np.zeros((3, 2)), np.zeros((3, 1))),
    ],
)
def test_statistics_reject_bad_shapes(x, r):
    with pytest.raises(ValueError, match=r"contexts \[N, d\]"):
        statistics_of(x, r)


# --- NumPy scores -------------------------------------------------------------------------------


def _model(seed: int = 5, d: int = DG + DA):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(200, d))
    return statistics_of(x, x @ rng.normal(size=d) + rng.normal(size=200))


def test_mean_and_std_are_the_ridge_posterior_of_every_candidate():
    stats = _model()
    u, v = _round(6, n=300)
    contexts = per_arm_features.concatenated(u, v)
    means, stds = per_arm_linear_policy.mean_and_std(
        stats.cov_matrix, stats.data_vector, 2.0, contexts
    )
    inverse = np.linalg.inv(stats.cov_matrix + 2.0 * np.eye(DG + DA))
    np.testing.assert_allclose(means, contexts @ (inverse @ stats.data_vector), rtol=1e-10)
    np.testing.assert_allclose(
        stds, np.sqrt(np.einsum("nci,ij,ncj->nc", contexts, inverse, contexts)), rtol=1e-10
    )
    scores = per_arm_linear_policy.ucb_scores(
        stats.cov_matrix, stats.data_vector, 2.0, 0.5, contexts
    )
    np.testing.assert_allclose(scores, means + 0.5 * stds, rtol=1e-12)
    greedy = per_arm_linear_policy.ucb_scores(
        stats.cov_matrix, stats.data_vector, 2.0, 0.0, contexts
    )
    np.testing.assert_allclose(greedy, means, rtol=1e-12)


def test_stds_are_computed_block_by_block(monkeypatch):
    stats = _model()
    contexts = per_arm_features.concatenated(*_round(7, n=11))
    whole = per_arm_linear_policy.mean_and_std(stats.cov_matrix, stats.data_vector, 1.0, contexts)
    monkeypatch.setattr(per_arm_linear_policy, "_STD_ROWS", 4)
    blocked = per_arm_linear_policy.mean_and_std(
        stats.cov_matrix, stats.data_vector, 1.0, contexts
    )
    np.testing.assert_allclose(blocked[1], whole[1], rtol=1e-14)


def test_scores_reject_mismatched_shapes():
    stats = _model()
    contexts = per_arm_features.concatenated(*_round())
    for a, b, x in (
        (stats.cov_matrix[None], stats.data_vector, contexts),
        (stats.cov_matrix, stats.data_vector[None], contexts),
        (stats.cov_matrix, stats.data_vector, contexts[0]),
        (stats.cov_matrix, stats.data_vector, contexts[..., :-1]),
    ):
        with pytest.raises(ValueError, match=r"contexts \[N, C, d\]"):
            per_arm_linear_policy.ucb_scores(a, b, 1.0, 1.0, x)
