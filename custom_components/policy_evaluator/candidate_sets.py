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
Its fit needs only per-fold sums (`CandidateFoldStatistics`), which add up
over batches, so the evaluator's pipeline never holds the split's rows.
"""

import dataclasses
from typing import Sequence, Tuple

import numpy as np

from bandit_core import per_arm_features
from bandit_core.per_arm_statistics import per_arm_statistics
from custom_components.policy_evaluator.problem_counts import Problem, problem

# Reward-model features built at once, in floats: rows are taken in blocks of
# about this many candidate features, whatever the candidate-set size.
_PREDICTION_FLOATS = 1 << 24
# Multiples of the configured ridge the reward model chooses among by out-of-fold error.
RIDGE_STEPS = (1.0, 10.0, 100.0, 1000.0, 10000.0)
# Keeps the penalty of a feature that is always 0 positive.
_MIN_MEAN_SQUARE = 1e-12


def candidate_set_problems(
    candidate_ids: np.ndarray, chosen_ids: np.ndarray, slots: np.ndarray
) -> Tuple[Problem, ...]:
    """The checks of logged candidate sets, each with its offending rows.

    Args:
      candidate_ids: [N, C] the movies each row offered, distinct within a row.
      chosen_ids: [N] the movie each row served.
      slots: [N] the logged position of the served movie among the candidates.
    """
    candidates = np.asarray(candidate_ids)
    chosen = np.asarray(chosen_ids)
    ordered = np.sort(candidates, axis=1)
    repeated = (ordered[:, 1:] == ordered[:, :-1]).any(axis=1)
    missing = ~(candidates == chosen[:, None]).any(axis=1)
    in_range = (slots >= 0) & (slots < candidates.shape[1])
    at_slot = candidates[np.arange(len(chosen)), np.where(in_range, slots, 0)]
    return (
        problem("a repeated candidate movie; a candidate set holds distinct movies", repeated),
        problem("served a movie that is not among their candidates", missing, chosen),
        problem(
            "a position that does not hold their served movie",
            in_range & ~missing & (at_slot != chosen),
        ),
    )


def reward_model_features(global_features: np.ndarray, arm_features: np.ndarray) -> np.ndarray:
    """[1, u, v, u (x) v] per arm: [N, C, da] or [N, da] arms -> [..., 1 + dg + da + dg * da]."""
    u = np.asarray(global_features, dtype=np.float64)
    v = np.asarray(arm_features, dtype=np.float64)
    concatenated = per_arm_features.concatenated(u, v)
    interaction = per_arm_features.interaction(u, v)
    ones = np.ones(concatenated.shape[:-1] + (1,))
    return np.concatenate([ones, concatenated, interaction], axis=-1)


@dataclasses.dataclass(frozen=True)
class CandidateFoldStatistics:
    """Per fold, the shared regression's sums over the chosen candidates' features.

    Attributes:
      cov_matrices: [F, D, D] sum x x^T.
      data_vectors: [F, D] sum r x.
      square_rewards: [F] sum r^2, which with the others gives any model's squared error.
      counts: [F] rows.
    """

    cov_matrices: np.ndarray
    data_vectors: np.ndarray
    square_rewards: np.ndarray
    counts: np.ndarray

    def __add__(self, other: "CandidateFoldStatistics") -> "CandidateFoldStatistics":
        return CandidateFoldStatistics(
            self.cov_matrices + other.cov_matrices,
            self.data_vectors + other.data_vectors,
            self.square_rewards + other.square_rewards,
            self.counts + other.counts,
        )

    def squared_error(self, fold: int, theta: np.ndarray) -> float:
        """sum over `fold`'s rows of (x^T theta - r)^2."""
        return float(
            theta @ self.cov_matrices[fold] @ theta
            - 2.0 * theta @ self.data_vectors[fold]
            + self.square_rewards[fold]
        )


def candidate_fold_statistics(
    global_features: np.ndarray,
    chosen_features: np.ndarray,
    rewards: np.ndarray,
    folds: np.ndarray,
    num_folds: int,
) -> CandidateFoldStatistics:
    """The additive sums of some rows: [N, dg] users, [N, da] chosen movies, [N] rewards."""
    x = reward_model_features(global_features, chosen_features)
    r = np.asarray(rewards, dtype=np.float64)
    per_fold = [per_arm_statistics(x[folds == fold], r[folds == fold]) for fold in range(num_folds)]
    return CandidateFoldStatistics(
        np.stack([s.cov_matrix for s in per_fold]),
        np.stack([s.data_vector for s in per_fold]),
        np.array([np.sum(r[folds == fold] ** 2) for fold in range(num_folds)]),
        np.bincount(folds, minlength=num_folds).astype(np.float64),
    )


def candidate_fold_coefficients(statistics: CandidateFoldStatistics, ridge: float) -> np.ndarray:
    """[F, D] each fold's shared regression, fitted on every other fold's rows.

    The penalty is the one of `ridge * RIDGE_STEPS` with the lowest squared
    error on the logged rewards of the other folds, each predicted by a model
    fitted without it (an inner cross-validation per fold, from the sums
    alone): with few rows per feature (a 441-feature model on a few hundred
    rows) the smallest penalty overfits and DR goes far wrong, with many the
    smallest fits best. The penalty scales with each feature's mean square:
    ridge on standardised features, so features as small as MovieLens' SVD
    vectors are not shrunk away.
    """
    if ridge <= 0.0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    cov, data = statistics.cov_matrices, statistics.data_vectors
    total_cov, total_data = cov.sum(axis=0), data.sum(axis=0)
    rows = max(float(statistics.counts.sum()), 1.0)
    scale = np.diag(np.maximum(np.diag(total_cov) / rows, _MIN_MEAN_SQUARE))
    num_folds = len(cov)

    def fit(excluded: Sequence[int], step: float) -> np.ndarray:
        a = total_cov + ridge * step * scale - sum(cov[fold] for fold in excluded)
        b = total_data - sum(data[fold] for fold in excluded)
        return np.linalg.solve(a, b)

    thetas = np.empty(data.shape)
    for fold in range(num_folds):
        # Fold `fold`'s penalty is chosen by an inner cross-validation over the
        # other folds, so no row's reward reaches its own prediction.
        others = [g for g in range(num_folds) if g != fold]
        errors = [
            sum(statistics.squared_error(g, fit((fold, g), step)) for g in others)
            for step in RIDGE_STEPS
        ]
        thetas[fold] = fit((fold,), RIDGE_STEPS[int(np.argmin(errors))])
    return thetas


def candidate_predictions(
    global_features: np.ndarray,
    candidate_features: np.ndarray,
    folds: np.ndarray,
    coefficients: np.ndarray,
) -> np.ndarray:
    """[N, C] q(x_n, c) from the model of row n's fold (`candidate_fold_coefficients`)."""
    u = np.asarray(global_features)
    arms = np.asarray(candidate_features)
    predictions = np.empty(arms.shape[:2])
    rows_per_block = max(1, _PREDICTION_FLOATS // (arms.shape[1] * coefficients.shape[1]))
    for start in range(0, len(u), rows_per_block):
        block = slice(start, start + rows_per_block)
        features = reward_model_features(u[block], arms[block])
        predictions[block] = np.einsum("ncd,nd->nc", features, coefficients[folds[block]])
    return predictions


def cross_fitted_candidate_predictions(
    global_features: np.ndarray,
    candidate_features: np.ndarray,
    slots: np.ndarray,
    rewards: np.ndarray,
    num_folds: int = 5,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predicted reward of every candidate of every row held in memory.

    Args:
      global_features: [N, dg] each row's user.
      candidate_features: [N, C, da] each row's candidate movies.
      slots: [N] the chosen candidate's position.
      rewards: [N] observed rewards.
      num_folds: >= 2 folds, assigned by a seeded random permutation.
      ridge: the smallest L2 penalty (see `candidate_fold_coefficients`).
      seed: seeds the fold assignment.

    Returns:
      [N, C] q(x_n, c) from a model fitted without row n's fold.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 for cross-fitting, got {num_folds}")
    arms = np.asarray(candidate_features)
    chosen = arms[np.arange(arms.shape[0]), np.asarray(slots)]
    folds = np.random.default_rng(seed).permutation(len(chosen)) % num_folds
    statistics = candidate_fold_statistics(global_features, chosen, rewards, folds, num_folds)
    coefficients = candidate_fold_coefficients(statistics, ridge)
    return candidate_predictions(global_features, arms, folds, coefficients)
