"""Off-policy evaluation over candidate sets, the per-arm problem's logged rows.

A per-arm row offers C candidate movies and logs the one chosen, with the
logging policy's probability of choosing it. The estimators in `ope` work on
any [N, K] table of per-action quantities, so a candidate set is evaluated by
slot: the logged action is the chosen movie's position among the row's
candidates, and pi(. | x_n) and q(x_n, .) are [N, C] over the same positions.
A policy's value is then its expected reward over the candidates it was
offered, which is what the simulator's true value measures too.

The direct method's reward model is one cross-fitted ridge regression shared
by all movies (a per-movie model would see a handful of rows per movie), over
[1, u, v, u (x) v]: the outer product lets it represent the bilinear
MovieLens reward, whose concatenated features alone miss the interaction.
"""

from typing import Sequence

import numpy as np

from bandit_core import per_arm_features
from bandit_core.per_arm_statistics import per_arm_statistics
from custom_components.policy_evaluator.ope import OPEInputError

# Reward-model features built at once, in floats: rows are taken in blocks of
# about this many candidate features, whatever the candidate-set size.
_PREDICTION_FLOATS = 1 << 24
# Multiples of the configured ridge the reward model chooses among by out-of-fold error.
RIDGE_STEPS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
# Keeps the penalty of a feature that is always 0 positive.
_MIN_MEAN_SQUARE = 1e-12


def chosen_slots(candidate_ids: np.ndarray, chosen_ids: np.ndarray) -> np.ndarray:
    """The position of each row's chosen movie among its candidates.

    Args:
      candidate_ids: [N, C] the movies each row offered, distinct within a row.
      chosen_ids: [N] the movie each row served.

    Returns:
      [N] int64 slots in [0, C).

    Raises:
      OPEInputError: shapes disagree, a row repeats a candidate, or a chosen
        movie is not among its row's candidates (its propensity would belong to
        another candidate set).
    """
    candidates = np.asarray(candidate_ids)
    chosen = np.asarray(chosen_ids)
    if candidates.ndim != 2 or chosen.shape != (candidates.shape[0],):
        raise OPEInputError(
            f"expected candidate ids [N, C] and chosen ids [N]; got {candidates.shape} and "
            f"{chosen.shape}"
        )
    ordered = np.sort(candidates, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    if repeated.any():
        raise OPEInputError(
            f"{int(repeated.sum())} rows repeat a candidate movie (first: row "
            f"{int(np.flatnonzero(repeated)[0])}); a candidate set holds distinct movies"
        )
    matches = candidates == chosen[:, None]
    missing = ~matches.any(axis=1)
    if missing.any():
        first = int(np.flatnonzero(missing)[0])
        raise OPEInputError(
            f"{int(missing.sum())} rows served a movie that is not among their candidates "
            f"(first: row {first}, movie {chosen[first]})"
        )
    return np.argmax(matches, axis=1).astype(np.int64)


def reward_model_features(global_features: np.ndarray, arm_features: np.ndarray) -> np.ndarray:
    """[1, u, v, u (x) v] per arm: [N, C, da] or [N, da] arms -> [..., 1 + dg + da + dg * da]."""
    u = np.asarray(global_features, dtype=np.float64)
    v = np.asarray(arm_features, dtype=np.float64)
    concatenated = per_arm_features.concatenated(u, v)
    interaction = per_arm_features.interaction(u, v)
    ones = np.ones(concatenated.shape[:-1] + (1,))
    return np.concatenate([ones, concatenated, interaction], axis=-1)


def cross_fitted_candidate_predictions(
    global_features: np.ndarray,
    candidate_features: np.ndarray,
    slots: np.ndarray,
    rewards: np.ndarray,
    num_folds: int = 5,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predicted reward of every candidate of every row.

    Args:
      global_features: [N, dg] each row's user.
      candidate_features: [N, C, da] each row's candidate movies.
      slots: [N] the chosen candidate's position (see `chosen_slots`).
      rewards: [N] observed rewards.
      num_folds: >= 2 folds, assigned by a seeded random permutation.
      ridge: the smallest L2 penalty of the shared regression, relative to
        each feature's mean square over the logged rows. The penalty used is
        the one of `ridge * RIDGE_STEPS` with the lowest squared error on the
        logged rewards of the other folds, each predicted by a model fitted
        without it (an inner cross-validation per fold): with few rows per feature (a 441-feature
        model on a few hundred rows) the smallest penalty overfits and DR
        goes far wrong, with many the smallest fits best.
      seed: seeds the fold assignment.

    Returns:
      [N, C] q(x_n, c) from a model fitted without row n's fold.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 for cross-fitting, got {num_folds}")
    if ridge <= 0.0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    arms = np.asarray(candidate_features)
    rows = np.arange(arms.shape[0])
    chosen = reward_model_features(global_features, arms[rows, np.asarray(slots)])
    r = np.asarray(rewards, dtype=np.float64)
    folds = np.random.default_rng(seed).permutation(len(r)) % num_folds
    total = per_arm_statistics(chosen, r)
    # The penalty scales with each feature's mean square: ridge on standardised
    # features, so features as small as MovieLens' SVD vectors are not shrunk away.
    scale = np.diag(np.maximum(np.diag(total.cov_matrix) / len(r), _MIN_MEAN_SQUARE))
    held = [per_arm_statistics(chosen[folds == fold], r[folds == fold]) for fold in range(num_folds)]

    def fit(excluded: Sequence[int], step: float) -> np.ndarray:
        a = total.cov_matrix + ridge * step * scale
        b = total.data_vector
        for fold in excluded:
            a, b = a - held[fold].cov_matrix, b - held[fold].data_vector
        return np.linalg.solve(a, b)

    thetas = np.empty((num_folds, chosen.shape[1]))
    for fold in range(num_folds):
        # Fold `fold`'s penalty is chosen by an inner cross-validation over the
        # other folds, so no row's reward reaches its own prediction.
        others = [g for g in range(num_folds) if g != fold]
        errors = [
            sum(
                np.sum((chosen[folds == g] @ fit((fold, g), step) - r[folds == g]) ** 2)
                for g in others
            )
            for step in RIDGE_STEPS
        ]
        thetas[fold] = fit((fold,), RIDGE_STEPS[int(np.argmin(errors))])
    u = np.asarray(global_features)
    predictions = np.empty(arms.shape[:2])
    rows_per_block = max(1, _PREDICTION_FLOATS // (arms.shape[1] * chosen.shape[1]))
    for start in range(0, len(r), rows_per_block):
        block = slice(start, start + rows_per_block)
        features = reward_model_features(u[block], arms[block])
        predictions[block] = np.einsum("ncd,nd->nc", features, thetas[folds[block]])
    return predictions
