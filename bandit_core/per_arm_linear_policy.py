"""TF-Agents' per-arm linear policies (LinUCB, LinTS) as NumPy math.

A per-arm linear policy keeps one model (A, b) for all arms and scores each
candidate c of a round by its own context x_c (see
`per_arm_features.linear_contexts`). With `A + t * I = L L^T` and
`theta = (A + t * I)^-1 b`, as in `linear_policy`:

    mean[n, c] = x_nc . theta,   std[n, c] = || L^-1 x_nc ||

LinUCB picks the candidate with the largest `mean + alpha * std`; LinTS draws
each candidate's score from Normal(mean, alpha * std) and picks the largest.
"""

from typing import Tuple

import numpy as np

from bandit_core import linear_policy

# Rows (rounds) per block of the standard deviations: bounds the [rows, C, d] temporaries.
_STD_ROWS = 2048


def mean_and_std(
    cov_matrix: np.ndarray, data_vector: np.ndarray, tikhonov_weight: float, contexts: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Every candidate's posterior mean and standard deviation.

    Args:
      cov_matrix: [d, d] the model's A.
      data_vector: [d] the model's b.
      tikhonov_weight: the agent's ridge t.
      contexts: [N, C, d] the contexts of each round's C candidates.

    Returns:
      ([N, C] means, [N, C] standard deviations).
    """
    theta, inverse_factor = _factors(cov_matrix, data_vector, tikhonov_weight, contexts)
    x = np.asarray(contexts, dtype=np.float64)
    means = x @ theta
    stds = np.empty_like(means)
    for start in range(0, len(x), _STD_ROWS):
        z = x[start : start + _STD_ROWS] @ inverse_factor.T
        stds[start : start + len(z)] = np.sqrt(np.einsum("ncd,ncd->nc", z, z))
    return means, stds


def ucb_scores(
    cov_matrix: np.ndarray,
    data_vector: np.ndarray,
    tikhonov_weight: float,
    alpha: float,
    contexts: np.ndarray,
) -> np.ndarray:
    """Per-arm LinUCB's optimistic scores; the policy picks each row's argmax.

    Below `linear_policy.GREEDY_ALPHA` TF-Agents scores with theta alone, and
    so does this function.

    Args:
      cov_matrix: [d, d] the model's A.
      data_vector: [d] the model's b.
      tikhonov_weight: the agent's ridge t.
      alpha: the agent's exploration width.
      contexts: [N, C, d] the contexts of each round's C candidates.

    Returns:
      [N, C] mean + alpha * std.
    """
    if alpha < linear_policy.GREEDY_ALPHA:
        theta, _ = _factors(cov_matrix, data_vector, tikhonov_weight, contexts)
        return np.asarray(contexts, dtype=np.float64) @ theta
    means, stds = mean_and_std(cov_matrix, data_vector, tikhonov_weight, contexts)
    return means + alpha * stds


def _factors(
    cov_matrix: np.ndarray, data_vector: np.ndarray, tikhonov_weight: float, contexts: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """The model's theta [d] and inverse Cholesky factor [d, d], after checking shapes."""
    a = np.asarray(cov_matrix)
    b = np.asarray(data_vector)
    d = b.shape[-1] if b.ndim == 1 else -1
    if a.shape != (d, d) or np.ndim(contexts) != 3 or np.shape(contexts)[-1] != d:
        raise ValueError(
            f"expected A [d, d], b [d] and contexts [N, C, d]; got {a.shape}, {b.shape}, "
            f"{np.shape(contexts)}"
        )
    theta, inverse_factors = linear_policy.posterior_factors(a[None], b[None], tikhonov_weight)
    return theta[0], inverse_factors[0]
