"""TF-Agents' linear bandit policies (LinUCB, LinTS) as NumPy math, written once.

TF-Agents' `LinearBanditPolicy` solves `(A_k + tikhonov_weight * I) z = x` by
conjugate gradient for every arm on every call. A saved policy's statistics
never change, so the serving scorer and the policy evaluator both factor each
regularised matrix once and score whole batches with matrix products:

    A_k + t * I = L_k L_k^T,   theta_k = (A_k + t * I)^-1 b_k
    mean[n, k] = x_n . theta_k,   std[n, k] = || L_k^-1 x_n ||

`|| L_k^-1 x ||^2` is `x^T (A_k + t * I)^-1 x`, TF-Agents' variance term, but as
a sum of squares it cannot go negative through round-off. Below
`GREEDY_ALPHA` TF-Agents skips the variance and scores with the agent's stored
`theta` variable alone.
"""

import dataclasses
import re
from typing import Dict, Mapping, Optional, Tuple

import numpy as np

# Below this alpha TF-Agents' linear policies score with the theta variable alone.
GREEDY_ALPHA = 1e-12
_ARM_VARIABLE = re.compile(r"^(a|b|eig_vals)_?(\d+)$")
_STD_BATCH = 2048


@dataclasses.dataclass(frozen=True)
class LinearArmState:
    """A saved linear agent's per-arm statistics.

    Attributes:
      cov_matrices: (K, r, r) per-arm `A_k`; r is the observation dimension,
        plus 1 when the agent was built with `add_bias`.
      data_vectors: (K, r) per-arm reward-weighted sums `b_k`.
      theta: (K, r) the agent's theta variable, or None if it has none.
    """

    cov_matrices: np.ndarray
    data_vectors: np.ndarray
    theta: Optional[np.ndarray]


def arm_state_from_variables(
    variables: Mapping[str, np.ndarray], source: str, num_actions: Optional[int] = None
) -> LinearArmState:
    """Picks `a_k`, `b_k` and `theta` out of a linear agent's named variables.

    Args:
      variables: variable name (without ":0") -> value.
      source: where the variables came from, for error messages.
      num_actions: K when known; the arms found must then be exactly 0..K-1.

    Raises:
      ValueError: the variables are not those of a linear agent with arms
        0..K-1, or the agent uses an eigendecomposition.
    """
    arms: Dict[str, Dict[int, np.ndarray]] = {"a": {}, "b": {}, "eig_vals": {}}
    for name, value in variables.items():
        match = _ARM_VARIABLE.match(name)
        if match:
            arms[match.group(1)][int(match.group(2))] = np.asarray(value)
    if any(values.size for values in arms["eig_vals"].values()):
        raise ValueError(f"{source}: eigendecomposition linear policies are not supported")
    expected = list(range(num_actions if num_actions is not None else len(arms["a"])))
    for kind in ("a", "b"):
        if not expected or sorted(arms[kind]) != expected:
            raise ValueError(
                f"{source}: expected variables {kind}_0..{kind}_{len(expected) - 1} of a linear "
                f"bandit policy, found arms {sorted(arms[kind])}"
            )
    theta = variables.get("theta")
    return LinearArmState(
        cov_matrices=np.stack([arms["a"][k] for k in expected]).astype(np.float64),
        data_vectors=np.stack([arms["b"][k] for k in expected]).astype(np.float64),
        theta=None if theta is None else np.asarray(theta, dtype=np.float64),
    )


def posterior_factors(
    cov_matrices: np.ndarray, data_vectors: np.ndarray, tikhonov_weight: float
) -> Tuple[np.ndarray, np.ndarray]:
    """Each arm's posterior mean weights and inverse Cholesky factor.

    Args:
      cov_matrices: (M, r, r) `A_m`.
      data_vectors: (M, r) `b_m`.
      tikhonov_weight: the agents' ridge `t`.

    Returns:
      (theta (M, r), inverse_factors (M, r, r)) with `inverse_factors[m] @ x`
      equal to `L_m^-1 x` for `A_m + t * I = L_m L_m^T`.

    Raises:
      numpy.linalg.LinAlgError: a regularised matrix is not positive definite.
    """
    a = np.asarray(cov_matrices, dtype=np.float64)
    b = np.asarray(data_vectors, dtype=np.float64)
    regularised = a + tikhonov_weight * np.eye(a.shape[-1])
    theta = np.linalg.solve(regularised, b[..., None])[..., 0]
    inverse_factors = np.linalg.inv(np.linalg.cholesky(regularised))
    return theta, inverse_factors


def mean_and_std(
    state: LinearArmState, tikhonov_weight: float, observations: np.ndarray
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-arm posterior mean and standard deviation, as the linear agents see them.

    Args:
      state: the agent's statistics; r must equal the observation dimension.
      tikhonov_weight: the agents' ridge.
      observations: (N, r).

    Returns:
      ((N, K) means, (N, K) standard deviations).
    """
    theta, inverse_factors = posterior_factors(
        state.cov_matrices, state.data_vectors, tikhonov_weight
    )
    x = np.asarray(observations, dtype=np.float64)
    means = x @ theta.T
    stds = np.empty_like(means)
    for start in range(0, len(x), _STD_BATCH):
        z = np.einsum("kij,nj->nki", inverse_factors, x[start : start + _STD_BATCH])
        stds[start : start + len(z)] = np.sqrt(np.einsum("nki,nki->nk", z, z))
    return means, stds
