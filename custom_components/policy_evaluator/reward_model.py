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
additive each fold's fit is the split's sums minus the fold's.
"""

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


def cross_fitted_predictions(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    num_actions: int,
    num_folds: int = 5,
    ridge: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Out-of-fold predicted reward of every action for every row.

    Args:
      observations: [N, d] contexts.
      actions: [N] logged actions in [0, num_actions).
      rewards: [N] logged rewards.
      num_actions: K.
      num_folds: >= 2 folds, assigned by a seeded random permutation.
      ridge: L2 penalty of every arm's regression (intercept included).
      seed: seeds the fold assignment.

    Returns:
      [N, K] q(x_n, a) from models that did not see row n.
    """
    if num_folds < 2:
        raise ValueError(f"num_folds must be >= 2 for cross-fitting, got {num_folds}")
    if ridge <= 0.0:
        raise ValueError(f"ridge must be > 0, got {ridge}")
    z = with_intercept(observations)
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    folds = np.random.default_rng(seed).permutation(len(a)) % num_folds
    total = arm_statistics(z, a, r, num_actions)
    predictions = np.empty((len(a), num_actions))
    for fold in range(num_folds):
        rows = folds == fold
        if not rows.any():
            continue
        held_out = arm_statistics(z[rows], a[rows], r[rows], num_actions)
        theta = ridge_coefficients(
            total.cov_matrices - held_out.cov_matrices,
            total.data_vectors - held_out.data_vectors,
            ridge,
        )
        predictions[rows] = z[rows] @ theta.T
    return predictions
