"""Turns policy scores into action probabilities and samples logged actions.

LinUCB's own choice is deterministic, so its logs would hold propensity 1 for
one arm and 0 for the rest and off-policy training could not learn about the
others. Serving therefore samples from a distribution that gives every arm a
known, positive probability, and logs that probability as the propensity.
No probability falls below the data contract's minimum propensity: a row
logged with less would be quarantined at ingestion, so the little uniform
exploration that lifts the lowest arm to the minimum is mixed in here, and
the logged propensity is still the exact probability the action was drawn with.
"""

from typing import Tuple

import numpy as np

from bandit_core.data_contract import MIN_PROPENSITY
from serving.settings import ServingSettings

# Mixing lands the lowest arm on the minimum up to rounding; aim this much above it.
_FLOOR_MARGIN = 1.0 + 1e-6


def policy_id_suffix(settings: ServingSettings) -> str:
    """The strategy and its parameter, for the logged `policy_id`."""
    if settings.exploration == "epsilon_greedy":
        return f"epsilon_greedy(epsilon={settings.epsilon:g})"
    return f"boltzmann(temperature={settings.temperature:g})"


def action_probabilities(settings: ServingSettings, scores: np.ndarray) -> np.ndarray:
    """[N, K] scores -> [N, K] probabilities under the configured strategy."""
    if settings.exploration == "epsilon_greedy":
        return with_contract_floor(epsilon_greedy(scores, settings.epsilon))
    return with_contract_floor(boltzmann(scores, settings.temperature))


def with_contract_floor(probabilities: np.ndarray) -> np.ndarray:
    """Each row mixed with the least uniform share that lifts its lowest arm to MIN_PROPENSITY.

    Only arms that can be drawn count: an arm of probability 0 is never served,
    so never logged, and stays at 0 (greedy epsilon = 0 keeps propensity 1).
    Rows already at or above the minimum are returned unchanged; with more
    arms than 1 / MIN_PROPENSITY the floor is the uniform 1 / K instead.
    """
    support = probabilities > 0.0
    k = support.sum(axis=1, keepdims=True)
    floor = np.minimum(MIN_PROPENSITY * _FLOOR_MARGIN, 1.0 / k)
    lowest = np.where(support, probabilities, np.inf).min(axis=1, keepdims=True)
    below = lowest < floor
    if not below.any():
        return probabilities
    share = np.where(below, (floor - lowest) / np.maximum(1.0 / k - lowest, 1e-300), 0.0)
    share = np.clip(share, 0.0, 1.0)
    return (1.0 - share) * probabilities + share * support / k


def epsilon_greedy(scores: np.ndarray, epsilon: float) -> np.ndarray:
    """(1 - epsilon) on each row's argmax (lowest index on ties) plus epsilon / K on every arm."""
    scores = _as_score_matrix(scores)
    n, k = scores.shape
    probabilities = np.full((n, k), epsilon / k)
    probabilities[np.arange(n), np.argmax(scores, axis=1)] += 1.0 - epsilon
    return probabilities


def boltzmann(scores: np.ndarray, temperature: float) -> np.ndarray:
    """Row-wise softmax of scores / temperature, shifted by the row max so it cannot overflow."""
    scaled = _as_score_matrix(scores) / temperature
    weights = np.exp(scaled - scaled.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def sample_actions(
    probabilities: np.ndarray, rng: np.random.Generator
) -> Tuple[np.ndarray, np.ndarray]:
    """Draws one action per row; returns (actions, the drawn actions' probabilities).

    Inverse-CDF sampling with the uniform draw scaled by the row's total, so
    rounding in the cumulative sum can neither skip the last arms nor pick an
    arm whose probability is zero.
    """
    probabilities = np.asarray(probabilities, dtype=np.float64)
    num_actions = probabilities.shape[1]
    cumulative = np.cumsum(probabilities, axis=1)
    draws = rng.random(len(probabilities)) * cumulative[:, -1]
    last_possible = num_actions - 1 - np.argmax(probabilities[:, ::-1] > 0.0, axis=1)
    actions = np.minimum((cumulative <= draws[:, None]).sum(axis=1), last_possible)
    return actions, probabilities[np.arange(len(actions)), actions]


def _as_score_matrix(scores: np.ndarray) -> np.ndarray:
    scores = np.asarray(scores, dtype=np.float64)
    if scores.ndim != 2 or scores.shape[1] == 0:
        raise ValueError(f"scores must have shape [N, K] with K >= 1, got {scores.shape}")
    return scores
