"""Off-policy evaluation over candidate sets: slots, a case computed by hand, the reward model."""

import numpy as np
import pytest

from custom_components.policy_evaluator import ope
from custom_components.policy_evaluator.candidate_sets import (
    candidate_set_problems,
    cross_fitted_candidate_predictions,
)


def _found(candidates, chosen, slots):
    """{problem: (rows, lowest, highest)} of the candidate-set checks that found something."""
    problems = candidate_set_problems(np.array(candidates), np.array(chosen), np.array(slots))
    return {p.what: (p.count, p.low, p.high) for p in problems if p.count}


def test_consistent_candidate_sets_have_no_problems():
    assert _found([[10, 20, 30], [7, 10, 5]], [20, 5], [1, 2]) == {}


@pytest.mark.parametrize(
    "candidates, chosen, slots, found",
    [
        (
            [[10, 20, 30], [7, 10, 5]], [20, 6], [1, 2],
            {"served a movie that is not among their candidates": (1, 6.0, 6.0)},
        ),
        (
            [[10, 20, 10], [7, 10, 5]], [20, 5], [1, 2],
            {"a repeated candidate movie; a candidate set holds distinct movies":
                (1, np.inf, -np.inf)},
        ),
        (
            [[10, 20, 30], [7, 10, 5]], [20, 5], [2, 2],
            {"a position that does not hold their served movie": (1, np.inf, -np.inf)},
        ),
    ],
)
def test_candidate_set_problems_count_the_rows_that_cannot_be_evaluated(
    candidates, chosen, slots, found
):
    assert _found(candidates, chosen, slots) == found


def test_estimators_over_candidate_sets_match_a_hand_computed_case():
    # Two rows of three candidates, each logged uniformly (propensity 1/3).
    # Row 0 offers movies [10, 20, 30] and served 20, row 1 [7, 10, 5] and served 5.
    slots = np.array([1, 2])
    data = ope.validate_logged_data(slots, np.array([4.0, 1.0]), np.full(2, 1 / 3), num_actions=3)
    pi = np.array([[0.0, 1.0, 0.0], [0.5, 0.5, 0.0]])
    q = np.array([[1.0, 3.0, 2.0], [2.0, 4.0, 0.0]])
    # Row 0: weight 1 / (1/3) = 3, so w r = 12; row 1: pi gives its slot 2 nothing, w = 0.
    assert ope.ips(pi, data) == pytest.approx((12.0 + 0.0) / 2)
    assert ope.snips(pi, data) == pytest.approx(12.0 / 3.0)
    # DM: sum_c pi q is 3 for row 0 and 0.5 * 2 + 0.5 * 4 = 3 for row 1.
    assert ope.direct_method(pi, data, q) == pytest.approx(3.0)
    # DR: 3 + 3 * (4 - 3) = 6 and 3 + 0 * (1 - 0) = 3.
    assert ope.doubly_robust(pi, data, q) == pytest.approx(4.5)


def _bilinear_rounds(n: int, seed: int):
    rng = np.random.default_rng(seed)
    interaction = rng.normal(size=(4, 3))
    users = rng.normal(size=(n, 4))
    candidates = rng.normal(size=(n, 6, 3))
    expected = np.einsum("ni,ij,ncj->nc", users, interaction, candidates)
    slots = rng.integers(0, 6, size=n)
    rewards = expected[np.arange(n), slots] + rng.normal(scale=0.5, size=n)
    return users, candidates, slots, rewards, expected


@pytest.mark.parametrize("scale", [1.0, 0.01])
def test_the_reward_model_learns_a_bilinear_reward_for_every_candidate(scale):
    # MovieLens' SVD vectors have entries of about 0.03: the fit must not depend on scale.
    users, candidates, slots, rewards, expected = _bilinear_rounds(4000, seed=0)
    q = cross_fitted_candidate_predictions(
        users * scale, candidates * scale, slots, rewards, num_folds=5
    )
    assert q.shape == expected.shape
    assert np.corrcoef(q.ravel(), expected.ravel())[0, 1] > 0.99


def test_a_rows_own_reward_never_reaches_its_prediction():
    users, candidates, slots, rewards, _ = _bilinear_rounds(500, seed=1)
    before = cross_fitted_candidate_predictions(users, candidates, slots, rewards, seed=3)
    changed = rewards.copy()
    changed[17] += 100.0
    after = cross_fitted_candidate_predictions(users, candidates, slots, changed, seed=3)
    np.testing.assert_allclose(after[17], before[17])
    assert not np.allclose(after, before)


def test_with_few_rows_per_feature_the_model_chooses_a_heavier_penalty():
    # 40 rows for 1 + 20 + 20 + 400 features: the lightest penalty overfits the noise.
    rng = np.random.default_rng(4)
    users, candidates = rng.normal(size=(40, 20)), rng.normal(size=(40, 5, 20))
    expected = 0.05 * np.einsum("ni,nci->nc", users, candidates)
    slots = rng.integers(0, 5, size=40)
    rewards = expected[np.arange(40), slots] + rng.normal(scale=2.0, size=40)

    def error(ridge: float) -> float:
        q = cross_fitted_candidate_predictions(users, candidates, slots, rewards, ridge=ridge)
        return float(np.mean((q - expected) ** 2))

    # The smallest ridge's choices stop at 1; the default's reach 10,000.
    assert error(1.0) < 0.5 * error(1e-4)
