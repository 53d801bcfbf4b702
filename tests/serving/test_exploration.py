"""Exploration probabilities are distributions and logged propensities are exact."""

import numpy as np
import pytest

from bandit_core.data_contract import MIN_PROPENSITY
from serving.exploration import (
    action_probabilities,
    boltzmann,
    epsilon_greedy,
    policy_id_suffix,
    sample_actions,
    with_contract_floor,
)
from serving.settings import ServingSettings


def test_epsilon_greedy_puts_the_rest_on_the_argmax():
    scores = np.array([[0.1, 0.9, 0.3, 0.2], [5.0, 5.0, 1.0, 5.0]])
    probabilities = epsilon_greedy(scores, 0.2)
    np.testing.assert_allclose(probabilities[0], [0.05, 0.85, 0.05, 0.05])
    # Ties go to the lowest index, as TF-Agents' argmax does.
    np.testing.assert_allclose(probabilities[1], [0.85, 0.05, 0.05, 0.05])


def test_epsilon_extremes_are_greedy_and_uniform():
    scores = np.random.default_rng(0).normal(size=(10, 7))
    np.testing.assert_array_equal(epsilon_greedy(scores, 0.0), np.eye(7)[np.argmax(scores, axis=1)])
    np.testing.assert_allclose(epsilon_greedy(scores, 1.0), np.full((10, 7), 1 / 7))


def test_boltzmann_is_a_stable_softmax():
    scores = np.array([[0.0, np.log(3.0)], [1000.0, 1000.0 + np.log(3.0)]])
    np.testing.assert_allclose(boltzmann(scores, 1.0), [[0.25, 0.75], [0.25, 0.75]])
    np.testing.assert_allclose(boltzmann(scores, 1e9), np.full((2, 2), 0.5), atol=1e-8)
    cold = boltzmann(np.array([[1.0, 2.0, 0.0]]), 1e-3)
    np.testing.assert_allclose(cold, [[0.0, 1.0, 0.0]], atol=1e-300)


@pytest.mark.parametrize(
    "settings",
    [
        ServingSettings(exploration="epsilon_greedy", epsilon=0.1),
        ServingSettings(exploration="epsilon_greedy", epsilon=0.0),
        ServingSettings(exploration="boltzmann", temperature=0.5),
        ServingSettings(exploration="boltzmann", temperature=1e-4),
    ],
)
def test_probabilities_sum_to_one_and_propensities_are_exact(settings):
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(2000, 100)) * 3
    probabilities = action_probabilities(settings, scores)
    assert probabilities.shape == scores.shape
    assert (probabilities >= 0).all()
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    actions, propensities = sample_actions(probabilities, rng)
    assert actions.dtype.kind == "i" and ((0 <= actions) & (actions < 100)).all()
    np.testing.assert_array_equal(propensities, probabilities[np.arange(2000), actions])
    assert (propensities > 0).all(), "a zero-probability action was drawn"


@pytest.mark.parametrize(
    "probabilities",
    [
        [0.5, 0.25, 0.125, 0.125],
        [0.0, 0.7, 0.0, 0.3],
        [0.025, 0.025, 0.925, 0.025],
    ],
)
def test_empirical_frequencies_match_probabilities(probabilities):
    rng = np.random.default_rng(2)
    n = 200_000
    rows = np.tile(np.array(probabilities), (n, 1))
    actions, propensities = sample_actions(rows, rng)
    frequencies = np.bincount(actions, minlength=4) / n
    # Five binomial standard deviations: fails by chance with probability ~1e-6.
    tolerance = 5 * np.sqrt(np.array(probabilities) * (1 - np.array(probabilities)) / n)
    np.testing.assert_array_less(np.abs(frequencies - probabilities), tolerance + 1e-12)
    np.testing.assert_array_equal(propensities, np.array(probabilities)[actions])


def test_sampling_epsilon_greedy_over_real_scores_matches_its_distribution():
    rng = np.random.default_rng(3)
    scores = np.array([[0.2, 0.1, 0.4, 0.3, 0.0]])
    probabilities = epsilon_greedy(np.repeat(scores, 100_000, axis=0), 0.3)
    actions, propensities = sample_actions(probabilities, rng)
    frequencies = np.bincount(actions, minlength=5) / len(actions)
    np.testing.assert_allclose(frequencies, [0.06, 0.06, 0.76, 0.06, 0.06], atol=0.005)
    assert set(np.round(propensities, 12)) == {0.06, 0.76}


def test_zero_probability_arms_at_the_end_are_never_drawn():
    rows = np.tile([0.3, 0.7, 0.0, 0.0], (10_000, 1))
    actions, _ = sample_actions(rows, np.random.default_rng(4))
    assert set(actions) <= {0, 1}


def test_scores_must_be_a_matrix():
    with pytest.raises(ValueError, match=r"\[N, K\]"):
        epsilon_greedy(np.zeros(4), 0.1)


def test_policy_id_suffix_names_strategy_and_parameter():
    assert policy_id_suffix(ServingSettings()) == "epsilon_greedy(epsilon=0.1)"
    assert (
        policy_id_suffix(ServingSettings(exploration="boltzmann", temperature=0.5))
        == "boltzmann(temperature=0.5)"
    )


@pytest.mark.parametrize(
    "settings",
    [
        ServingSettings(exploration="boltzmann", temperature=0.01),
        ServingSettings(exploration="epsilon_greedy", epsilon=1e-9),
    ],
)
def test_no_served_propensity_falls_below_the_contracts_minimum(settings):
    scores = np.random.default_rng(4).normal(scale=3.0, size=(50, 1682))
    if settings.exploration == "boltzmann":
        raw = boltzmann(scores, settings.temperature)
    else:
        raw = epsilon_greedy(scores, settings.epsilon)
    assert 0.0 < raw[raw > 0.0].min() < MIN_PROPENSITY
    probabilities = action_probabilities(settings, scores)
    # Arms of probability 0 (underflow) are never drawn, so never logged.
    assert probabilities[probabilities > 0.0].min() >= MIN_PROPENSITY
    np.testing.assert_allclose(probabilities.sum(axis=1), 1.0)
    # The floor only lifts: the policy's favourite stays the favourite.
    np.testing.assert_array_equal(probabilities.argmax(axis=1), scores.argmax(axis=1))


@pytest.mark.parametrize("epsilon", [0.2, 0.0])
def test_rows_above_the_minimum_are_left_exactly_as_they_were(epsilon):
    scores = np.array([[0.1, 0.9, 0.3, 0.2]])
    expected = epsilon_greedy(scores, epsilon)
    np.testing.assert_array_equal(with_contract_floor(expected), expected)
