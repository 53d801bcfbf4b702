"""The direct method's reward model: cross-fitted per-arm ridge regression.

Choice: fit on the evaluation split itself, with cross-fitting. The rows are
split into folds and each fold's predictions come from a model fitted on the
other folds, so q(x_n, .) never saw r_n. Why not the alternatives:

* in-sample ridge on the whole split lets q fit each row's own noise, so the
  DR residual r_n - q(x_n, a_n) shrinks towards 0 and DR drifts towards DM;
* the trainer's statistics are the candidate's own model for linear agents,
  and a policy that maximises a model looks best under that same model (the
  winner's curse), biasing DM towards the candidate.

The ridge is the linear agents' model, with a constant feature for the
intercept; its per-arm sums come from `arm_statistics`, and since they are
additive each fold's fit is the split's sums minus the fold's: the sums of
every batch add up (`FoldStatistics`), so no step holds the split's rows.
Which fold a row is in is the caller's (the evaluator derives it from the
row's key, so any worker puts a row in the same fold).
"""

import dataclasses

import numpy as np

from bandit_core.linear_statistics import arm_statistics


def with_intercept(observations: np.ndarray) -> np.ndarray:
    """[N, d] -> [N, d + 1] with a trailing constant 1."""
    x = np.asarray(observations, dtype=np.float64)
    return np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)


def ridge_coefficients(
    cov_matrices: np.ndarray, data_vectors: np.ndarray, ridge: float
) -> np.ndarray:
    """theta_a = (A_a + ridge I)^-1 b_a for every arm; [K, d, d], [K, d] -> [K, d]."""
    d = cov_matrices.shape[-1]
    return np.linalg.solve(cov_matrices + ridge * np.eye(d), data_vectors[..., None])[..., 0]


@dataclasses.dataclass(frozen=True)
class FoldStatistics:
    """Per fold and arm, the ridge sums over rows with an intercept feature.

    Attributes:
      cov_matrices: [F, K, d + 1, d + 1] sum z z^T.
      data_vectors: [F, K, d + 1] sum r z.
    """

    cov_matrices: np.ndarray
    data_vectors: np.ndarray

    def __add__(self, other: "FoldStatistics") -> "FoldStatistics":
        return FoldStatistics(
            self.cov_matrices + other.cov_matrices, self.data_vectors + other.data_vectors
        )


def fold_statistics(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    num_actions: int,
    folds: np.ndarray,
    num_folds: int,
) -> FoldStatistics:
    """The additive sums of some rows, each in its fold in [0, num_folds)."""
    z = with_intercept(observations)
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    per_fold = [
        arm_statistics(z[folds == fold], a[folds == fold], r[folds == fold], num_actions)
        for fold in range(num_folds)
    ]
    return FoldStatistics(
        np.stack([s.cov_matrices for s in per_fold]), np.stack([s.data_vectors for s in per_fold])
    )


def fold_coefficients(statistics: FoldStatistics, ridge: float) -> np.ndarray:
    """[F, K, d + 1] each fold's per-arm ridge fitted on every other fold's rows."""
    if ridge <= 0.0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    cov, data = statistics.cov_matrices, statistics.data_vectors
    return ridge_coefficients(cov.sum(axis=0) - cov, data.sum(axis=0) - data, ridge)


def predictions(
    observations: np.ndarray, folds: np.ndarray, coefficients: np.ndarray
) -> np.ndarray:
    """[N, K] q(x_n, a) from the model of row n's fold (`fold_coefficients`)."""
    z = with_intercept(observations)
    return np.einsum("nd,nkd->nk", z, coefficients[folds])


def cross_fitted_predictions(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    num_actions: int,
    folds: np.ndarray,
    num_folds: int = 5,
    ridge: float = 1.0,
) -> np.ndarray:
    """Out-of-fold predicted reward of every action for every row held in memory.

    Args:
      observations: [N, d] contexts.
      actions: [N] logged actions in [0, num_actions).
      rewards: [N] logged rewards.
      num_actions: K.
      folds: [N] each row's fold in [0, num_folds), e.g. `row_hashing.folds`.
      num_folds: >= 2.
      ridge: L2 penalty of every arm's regression (intercept included).

    Returns:
      [N, K] q(x_n, a) from models that did not see row n.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 for cross-fitting, got {num_folds}")
    statistics = fold_statistics(observations, actions, rewards, num_actions, folds, num_folds)
    return predictions(observations, folds, fold_coefficients(statistics, ridge))
