"""Off-policy estimators: closed forms, unbiasedness over seeds, bootstrap, bad input."""

import numpy as np
import pytest

from custom_components.policy_evaluator import ope, reward_model, row_hashing
from custom_components.policy_evaluator.ope import OPEInputError, validate_logged_data

# --- a three-row, two-action example worked by hand ---------------------------------------
#
# w = pi(a_n | x_n) / p_n = [1/0.5, 0.5/0.25, 0.25/0.5] = [2, 2, 0.5]
# IPS   = (2*1 + 2*2 + 0.5*3) / 3 = 2.5
# SNIPS = 7.5 / (2 + 2 + 0.5) = 5/3
# DM    = (1*1 + (0.5*1 + 0.5*2) + (0.25*2 + 0.75*4)) / 3 = (1 + 1.5 + 3.5) / 3 = 2
# DR    = DM rows + w * (r - q[a]) = (1 + 2*0) + (1.5 + 2*0) + (3.5 + 0.5*1) = 6.5 -> 13/6

ACTIONS = np.array([0, 1, 0])
REWARDS = np.array([1.0, 2.0, 3.0])
PROPENSITIES = np.array([0.5, 0.25, 0.5])
PI = np.array([[1.0, 0.0], [0.5, 0.5], [0.25, 0.75]])
Q = np.array([[1.0, 0.0], [1.0, 2.0], [2.0, 4.0]])


@pytest.fixture
def tiny():
    return validate_logged_data(ACTIONS, REWARDS, PROPENSITIES, num_actions=2)


def test_estimators_match_closed_forms(tiny):
    assert ope.ips(PI, tiny) == pytest.approx(2.5)
    assert ope.snips(PI, tiny) == pytest.approx(5 / 3)
    assert ope.direct_method(PI, tiny, Q) == pytest.approx(2.0)
    assert ope.doubly_robust(PI, tiny, Q) == pytest.approx(13 / 6)


def test_point_estimates_of_off_policy_estimates_match_closed_forms(tiny):
    estimates = ope.off_policy_estimates(PI, tiny, Q, num_bootstrap=50, seed=1)
    expected = {"ips": 2.5, "snips": 5 / 3, "dm": 2.0, "dr": 13 / 6}
    for name, value in expected.items():
        assert estimates[name].value == pytest.approx(value)
        assert estimates[name].lower <= estimates[name].upper


def test_dr_reduces_to_ips_with_a_zero_model_and_to_dm_with_an_exact_one(tiny):
    assert ope.doubly_robust(PI, tiny, np.zeros_like(Q)) == pytest.approx(ope.ips(PI, tiny))
    exact_on_logged = Q.copy()
    exact_on_logged[np.arange(3), ACTIONS] = REWARDS
    assert ope.doubly_robust(PI, tiny, exact_on_logged) == pytest.approx(
        ope.direct_method(PI, tiny, exact_on_logged)
    )


def test_on_policy_evaluation_is_the_mean_reward():
    """pi = logging policy: every weight is 1, so IPS = SNIPS = mean reward."""
    rng = np.random.default_rng(0)
    actions = rng.integers(0, 4, size=500)
    rewards = rng.normal(size=500)
    data = validate_logged_data(actions, rewards, np.full(500, 0.25), 4)
    pi = np.full((500, 4), 0.25)
    assert ope.ips(pi, data) == pytest.approx(rewards.mean())
    assert ope.snips(pi, data) == pytest.approx(rewards.mean())


def test_snips_is_undefined_without_overlap(tiny):
    never_logged = np.array([[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]])
    estimates = ope.off_policy_estimates(never_logged, tiny, Q, num_bootstrap=20)
    assert np.isnan(estimates["snips"].value) and np.isnan(estimates["snips"].lower)
    assert estimates["ips"].value == 0.0
    assert np.isfinite(estimates["dr"].value)


# --- a simulated bandit with known value --------------------------------------------------

NUM_CONTEXTS, NUM_ARMS, DIM = 40, 5, 3


def _problem(seed: int = 123):
    """Contexts, linear mean rewards, a softmax logging policy and a greedy target."""
    rng = np.random.default_rng(seed)
    contexts = rng.normal(size=(NUM_CONTEXTS, DIM))
    means = contexts @ rng.normal(size=(DIM, NUM_ARMS)) + 1.0
    logits = contexts @ rng.normal(size=(DIM, NUM_ARMS))
    logging = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    target = np.eye(NUM_ARMS)[np.argmax(contexts @ rng.normal(size=(DIM, NUM_ARMS)), axis=1)]
    true_value = float(np.mean(np.sum(target * means, axis=1)))
    return contexts, means, logging, target, true_value


def _log(problem, n: int, seed: int):
    contexts, means, logging, _, _ = problem
    rng = np.random.default_rng(seed)
    users = rng.integers(0, NUM_CONTEXTS, size=n)
    u = rng.random(n)[:, None]
    actions = np.minimum((u > np.cumsum(logging[users], axis=1)).sum(axis=1), NUM_ARMS - 1)
    rewards = means[users, actions] + rng.normal(scale=1.0, size=n)
    return users, actions, rewards, logging[users, actions]


def test_ips_and_dr_are_unbiased_over_seeds():
    """Means over 300 logs are within 4 standard errors of the true value.

    DR is unbiased with a correct model (cross-fitted ridge) and with a badly
    wrong one (a constant 10): the importance-weighted residual corrects it.
    """
    problem = _problem()
    contexts, _, _, target, truth = problem
    estimates = {"ips": [], "dr_ridge": [], "dr_wrong": [], "snips": []}
    n = 400
    for seed in range(300):
        users, actions, rewards, propensities = _log(problem, n, seed)
        data = validate_logged_data(actions, rewards, propensities, NUM_ARMS)
        pi = target[users]
        ridge = reward_model.cross_fitted_predictions(
            contexts[users], actions, rewards, NUM_ARMS, _folds(n, 2, seed), num_folds=2
        )
        estimates["ips"].append(ope.ips(pi, data))
        estimates["snips"].append(ope.snips(pi, data))
        estimates["dr_ridge"].append(ope.doubly_robust(pi, data, ridge))
        estimates["dr_wrong"].append(ope.doubly_robust(pi, data, np.full((n, NUM_ARMS), 10.0)))
    for name in ("ips", "dr_ridge", "dr_wrong"):
        values = np.asarray(estimates[name])
        standard_error = values.std(ddof=1) / np.sqrt(len(values))
        assert abs(values.mean() - truth) < 4 * standard_error, name
    # SNIPS is biased for finite n but consistent: close at n = 400.
    assert abs(np.mean(estimates["snips"]) - truth) < 0.05 * abs(truth)
    # A good reward model makes DR far less variable than IPS.
    assert np.std(estimates["dr_ridge"]) < 0.5 * np.std(estimates["ips"])


def test_bootstrap_intervals_cover_the_true_value():
    problem = _problem()
    contexts, _, _, target, truth = problem
    covered = {name: 0 for name in ope.ESTIMATORS if name != "dm"}
    runs = 60
    for seed in range(runs):
        users, actions, rewards, propensities = _log(problem, 800, 1000 + seed)
        data = validate_logged_data(actions, rewards, propensities, NUM_ARMS)
        q = reward_model.cross_fitted_predictions(
            contexts[users], actions, rewards, NUM_ARMS, _folds(800, 5, seed)
        )
        estimates = ope.off_policy_estimates(target[users], data, q, num_bootstrap=200, seed=seed)
        for name in covered:
            covered[name] += estimates[name].lower <= truth <= estimates[name].upper
    for name, hits in covered.items():
        assert hits / runs >= 0.8, (name, hits)


def test_bootstrap_is_reproducible_and_narrows_with_more_rows():
    problem = _problem()
    contexts, _, _, target, _ = problem

    def interval(n, seed):
        users, actions, rewards, propensities = _log(problem, n, 5)
        data = validate_logged_data(actions, rewards, propensities, NUM_ARMS)
        q = reward_model.cross_fitted_predictions(
            contexts[users], actions, rewards, NUM_ARMS, _folds(n, 5, 0)
        )
        return ope.off_policy_estimates(target[users], data, q, num_bootstrap=300, seed=seed)

    first, again, other = interval(1000, 0), interval(1000, 0), interval(1000, 1)
    assert first == again
    assert first["dr"].value == other["dr"].value and first["dr"].lower != other["dr"].lower
    small, large = interval(250, 0)["ips"], interval(4000, 0)["ips"]
    assert (large.upper - large.lower) < 0.7 * (small.upper - small.lower)


# --- the reward model ------------------------------------------------------------------------


def _folds(n: int, num_folds: int, seed: int) -> np.ndarray:
    """Folds of n rows as the evaluator assigns them, from the rows' keys."""
    return row_hashing.folds(row_hashing.row_keys([np.arange(n)]), seed, num_folds)


def test_cross_fitted_predictions_never_see_their_own_reward():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(60, 2))
    a = rng.integers(0, 3, size=60)
    r = rng.normal(size=60)
    folds = _folds(60, 3, 7)
    base = reward_model.cross_fitted_predictions(x, a, r, 3, folds, num_folds=3)
    changed = r.copy()
    changed[10] += 100.0
    moved = reward_model.cross_fitted_predictions(x, a, changed, 3, folds, num_folds=3)
    np.testing.assert_allclose(moved[10], base[10], rtol=1e-12)
    assert np.abs(moved - base).max() > 1.0


def test_cross_fitted_ridge_recovers_linear_rewards():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(6000, 3))
    a = rng.integers(0, 4, size=6000)
    theta = rng.normal(size=(4, 3))
    intercept = np.array([1.0, -2.0, 0.5, 3.0])
    mean = x @ theta.T + intercept
    r = mean[np.arange(6000), a] + rng.normal(scale=0.1, size=6000)
    q = reward_model.cross_fitted_predictions(x, a, r, 4, _folds(6000, 5, 0))
    assert np.abs(q - mean).max() < 0.05


@pytest.mark.parametrize("folds, ridge, match", [(1, 1.0, "num_folds"), (2, 0.0, "ridge")])
def test_reward_model_rejects_bad_settings(folds, ridge, match):
    with pytest.raises(ValueError, match=match):
        reward_model.cross_fitted_predictions(
            np.zeros((4, 1)), np.zeros(4, dtype=int), np.zeros(4), 1, np.arange(4) % folds,
            folds, ridge
        )


# --- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "actions, rewards, propensities, reward_range, match",
    [
        ([], [], [], None, "no rows"),
        ([0, 1], [1.0, 2.0], [0.5, 0.0], None, r"1 of 2 logged rows have propensities <= 0"),
        ([0, 1], [1.0, 2.0], [-0.1, 0.5], None, r"propensities <= 0.*\(observed -0.1\)"),
        ([0, 1], [1.0, 2.0], [0.5, np.nan], None, r"propensities missing"),
        ([0, 1], [1.0, 2.0], [1.5, 0.5], None, r"propensities > 1"),
        ([0, 1], [np.nan, 2.0], [0.5, 0.5], None, r"rewards missing or not finite"),
        ([0, 1], [np.inf, 2.0], [0.5, 0.5], None, r"rewards missing or not finite"),
        ([0, 1], [1.0, 20.0], [0.5, 0.5], (-5.0, 10.0), r"rewards outside \[-5.0, 10.0\]"),
        ([0, 2], [1.0, 2.0], [0.5, 0.5], None, r"actions missing or outside \[0, 2\)"),
        ([0, -1], [1.0, 2.0], [0.5, 0.5], None, r"actions missing or outside"),
        ([0, 1], [1.0], [0.5, 0.5], None, "1-D of one length"),
        ([0.0, 1.0], [1.0, 2.0], [0.5, 0.5], None, "integers"),
    ],
)
def test_bad_logged_data_is_rejected_with_a_clear_message(
    actions, rewards, propensities, reward_range, match
):
    with pytest.raises(OPEInputError, match=match):
        validate_logged_data(
            np.asarray(actions, dtype=int if match != "integers" else float),
            np.asarray(rewards, dtype=float),
            np.asarray(propensities, dtype=float),
            num_actions=2,
            reward_range=reward_range,
        )


@pytest.mark.parametrize(
    "pi, q, match",
    [
        (PI[:2], Q, r"target probabilities must have shape \(3, 2\)"),
        (PI * 2.0, Q, "sum to 1"),
        (np.array([[1.5, -0.5], [0.5, 0.5], [0.5, 0.5]]), Q, "non-negative"),
        (np.where(PI == 1.0, np.nan, PI), Q, "NaN or infinite"),
        (PI, np.full((3, 2), np.nan), "reward predictions contain NaN"),
        (PI, Q[:, :1], r"reward predictions must have shape \(3, 2\)"),
    ],
)
def test_bad_policy_or_model_inputs_are_rejected(tiny, pi, q, match):
    with pytest.raises(OPEInputError, match=match):
        ope.off_policy_estimates(pi, tiny, q, num_bootstrap=10)


@pytest.mark.parametrize(
    "kwargs, match", [({"num_bootstrap": 0}, "num_bootstrap"), ({"confidence": 1.0}, "confidence")]
)
def test_bad_bootstrap_settings_are_rejected(tiny, kwargs, match):
    with pytest.raises(ValueError, match=match):
        ope.off_policy_estimates(PI, tiny, Q, **kwargs)
