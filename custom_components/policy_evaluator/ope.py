"""Off-policy estimates of a target policy's value from logged bandit data.

Given N logged rows (context x_n, action a_n, reward r_n, logging propensity
p_n = mu(a_n | x_n)), a target policy pi as probabilities pi(a | x_n) and a
reward model q(x_n, a), with importance weight w_n = pi(a_n | x_n) / p_n:

    IPS   = 1/N sum_n w_n r_n
    SNIPS = sum_n w_n r_n / sum_n w_n
    DM    = 1/N sum_n sum_a pi(a | x_n) q(x_n, a)
    DR    = 1/N sum_n [ sum_a pi(a | x_n) q(x_n, a) + w_n (r_n - q(x_n, a_n)) ]

IPS and DR are unbiased when every action pi can take has p > 0; DR is also
unbiased when q is right, whatever the propensities' variance, which is why it
decides blessing by default. Confidence intervals are percentile bootstrap
intervals over rows, with the reward model held fixed: `off_policy_estimates`
resamples rows of arrays in memory (the multinomial bootstrap); the
evaluator's pipeline adds up Poisson-bootstrap sums instead (`ope_sums`).

Pure NumPy. Every input is validated first, and bad data (zero, missing or
above-one propensities, non-finite or out-of-range rewards, no rows) raises
OPEInputError with a message that names the column and the number of rows
(`logged_row_problems` counts the same problems batch by batch).
"""

import dataclasses
from typing import Dict, Optional, Tuple, Union

import numpy as np

from custom_components.policy_evaluator.problem_counts import Problem, ProblemCounts, problem

ESTIMATORS = ("ips", "snips", "dm", "dr")
# Rows of target probabilities must sum to 1 within this.
_PROBABILITY_ATOL = 1e-5
# Resampled row indices held at once, which bounds the bootstrap's memory.
_BOOTSTRAP_BLOCK = 2_000_000


class OPEInputError(ValueError):
    """The logged data or the policy's probabilities cannot be evaluated."""


@dataclasses.dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval."""

    value: float
    lower: float
    upper: float


@dataclasses.dataclass(frozen=True)
class LoggedData:
    """Validated logged rows; shapes [N], [N], [N].

    Attributes:
      actions: integer actions in [0, num_actions).
      rewards: finite rewards (within reward_range when one was given).
      propensities: logging probabilities of the logged actions, in (0, 1].
      num_actions: K.
    """

    actions: np.ndarray
    rewards: np.ndarray
    propensities: np.ndarray
    num_actions: int

    def __len__(self) -> int:
        return len(self.actions)


def validate_logged_data(
    actions: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    num_actions: int,
    reward_range: Optional[Tuple[float, float]] = None,
) -> LoggedData:
    """Checks the logged columns and returns them as float64/int64 arrays.

    Raises:
      OPEInputError: no rows; mismatched shapes; any of `logged_row_problems`.
    """
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    if a.ndim != 1 or r.shape != a.shape or p.shape != a.shape:
        raise OPEInputError(
            f"actions, rewards and propensities must be 1-D of one length; got shapes "
            f"{a.shape}, {r.shape}, {p.shape}"
        )
    if a.size == 0:
        raise OPEInputError("the evaluation data holds no rows; nothing to estimate a value from")
    if not np.issubdtype(a.dtype, np.integer):
        raise OPEInputError(f"actions must be integers, got dtype {a.dtype}")
    found = ProblemCounts(len(a), logged_row_problems(a, r, p, num_actions, reward_range))
    if found.found:
        raise OPEInputError(found.message())
    return LoggedData(a.astype(np.int64), r, p, int(num_actions))


def logged_row_problems(
    actions: np.ndarray,
    rewards: np.ndarray,
    propensities: np.ndarray,
    num_actions: int,
    reward_range: Optional[Tuple[float, float]] = None,
) -> Tuple[Problem, ...]:
    """The logged columns' checks, each with its offending rows.

    Actions outside [0, K) (a missing one reads as -1); propensities missing
    (NaN), <= 0 or > 1; rewards missing, infinite or outside `reward_range`.
    """
    a = np.asarray(actions)
    r = np.asarray(rewards, dtype=np.float64)
    p = np.asarray(propensities, dtype=np.float64)
    checks = [
        problem(f"actions missing or outside [0, {num_actions})", (a < 0) | (a >= num_actions), a),
        problem("propensities missing (NaN)", np.isnan(p)),
        problem(
            "propensities <= 0: the logging policy must give every logged action a positive "
            "probability, or importance weights are infinite",
            p <= 0.0,
            p,
        ),
        problem("propensities > 1, which is not a probability", p > 1.0, p),
        problem("rewards missing or not finite", ~np.isfinite(r)),
    ]
    if reward_range is not None:
        low, high = reward_range
        checks.append(problem(f"rewards outside [{low}, {high}]", (r < low) | (r > high), r))
    return tuple(checks)


def _check_per_action(name: str, values: np.ndarray, data: LoggedData) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    expected = (len(data), data.num_actions)
    if array.shape != expected:
        raise OPEInputError(f"{name} must have shape {expected} (rows, actions), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise OPEInputError(f"{name} contain NaN or infinite values")
    return array


def check_target_probabilities(probabilities: np.ndarray, data: LoggedData) -> np.ndarray:
    """[N, K] action probabilities: finite, non-negative, rows summing to 1."""
    pi = _check_per_action("target probabilities", probabilities, data)
    if np.any(pi < 0.0):
        raise OPEInputError("target probabilities must be non-negative")
    if not np.allclose(pi.sum(axis=1), 1.0, rtol=0.0, atol=_PROBABILITY_ATOL):
        raise OPEInputError("each row of target probabilities must sum to 1")
    return pi


def per_row_terms(
    target_probabilities: np.ndarray, data: LoggedData, reward_predictions: np.ndarray
) -> Dict[str, np.ndarray]:
    """The per-row quantities every estimator is a mean or ratio of.

    Args:
      target_probabilities: [N, K] pi(a | x_n).
      data: validated logged rows.
      reward_predictions: [N, K] q(x_n, a).

    Returns:
      [N] arrays: `weight` w_n, `ips` w_n r_n, `dm` sum_a pi q and `dr`.
    """
    pi = check_target_probabilities(target_probabilities, data)
    q = _check_per_action("reward predictions", reward_predictions, data)
    rows = np.arange(len(data))
    weight = pi[rows, data.actions] / data.propensities
    dm = np.einsum("nk,nk->n", pi, q)
    return {
        "weight": weight,
        "ips": weight * data.rewards,
        "dm": dm,
        "dr": dm + weight * (data.rewards - q[rows, data.actions]),
    }


def estimates_from_sums(
    sums: Dict[str, np.ndarray], n: Union[int, np.ndarray]
) -> Dict[str, np.ndarray]:
    """Estimators from column sums of the per-row terms (any leading shape).

    `n` is the number of rows, or each bootstrap replicate's total weight.
    """
    with np.errstate(divide="ignore", invalid="ignore"):
        snips = np.where(sums["weight"] > 0.0, sums["ips"] / sums["weight"], np.nan)
    return {
        "ips": sums["ips"] / n,
        "snips": snips,
        "dm": sums["dm"] / n,
        "dr": sums["dr"] / n,
    }


def ips(target_probabilities: np.ndarray, data: LoggedData) -> float:
    """Inverse propensity scoring: 1/N sum w_n r_n."""
    zero = np.zeros((len(data), data.num_actions))
    return float(per_row_terms(target_probabilities, data, zero)["ips"].mean())


def snips(target_probabilities: np.ndarray, data: LoggedData) -> float:
    """Self-normalised IPS: sum w_n r_n / sum w_n; NaN when no weight is positive."""
    terms = per_row_terms(target_probabilities, data, np.zeros((len(data), data.num_actions)))
    sums = {name: terms[name].sum() for name in terms}
    return float(estimates_from_sums(sums, len(data))["snips"])


def direct_method(
    target_probabilities: np.ndarray, data: LoggedData, reward_predictions: np.ndarray
) -> float:
    """1/N sum_n sum_a pi(a | x_n) q(x_n, a)."""
    return float(per_row_terms(target_probabilities, data, reward_predictions)["dm"].mean())


def doubly_robust(
    target_probabilities: np.ndarray, data: LoggedData, reward_predictions: np.ndarray
) -> float:
    """DM plus the importance-weighted residual of the logged action."""
    return float(per_row_terms(target_probabilities, data, reward_predictions)["dr"].mean())


def off_policy_estimates(
    target_probabilities: np.ndarray,
    data: LoggedData,
    reward_predictions: np.ndarray,
    num_bootstrap: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> Dict[str, Estimate]:
    """IPS, SNIPS, DM and DR of rows held in memory, with multinomial bootstrap intervals.

    Each bootstrap replicate resamples the N rows with replacement (the same
    resamples for every estimator) and recomputes the estimators; the interval
    is the central `confidence` mass of the replicates. SNIPS is NaN, with a
    NaN interval, when no logged action has positive target probability.

    Args:
      target_probabilities: [N, K] pi(a | x_n).
      data: validated logged rows.
      reward_predictions: [N, K] q(x_n, a), fitted without these rows' rewards
        for DR to stay unbiased (see `reward_model`).
      num_bootstrap: number of replicates, >= 1.
      confidence: interval mass in (0, 1).
      seed: seeds the resampling, so a rerun gives the same intervals.
    """
    if num_bootstrap < 1:
        raise ValueError(f"num_bootstrap must be >= 1, got {num_bootstrap}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    terms = per_row_terms(target_probabilities, data, reward_predictions)
    n = len(data)
    point = estimates_from_sums({name: t.sum() for name, t in terms.items()}, n)
    stacked = np.stack([terms[name] for name in terms])
    rng = np.random.default_rng(seed)
    replicates = []
    chunk = max(1, _BOOTSTRAP_BLOCK // n)
    for start in range(0, num_bootstrap, chunk):
        size = min(chunk, num_bootstrap - start)
        rows = rng.integers(0, n, size=(size, n))
        sums = stacked[:, rows].sum(axis=2)
        replicates.append(estimates_from_sums(dict(zip(terms, sums)), n))
    return {
        name: percentile_estimate(
            float(point[name]), np.concatenate([r[name] for r in replicates]), confidence
        )
        for name in ESTIMATORS
    }


def percentile_estimate(point: float, replicates: np.ndarray, confidence: float) -> Estimate:
    """The point estimate with the central `confidence` mass of its bootstrap replicates.

    NaN bounds when the point or any replicate is undefined (e.g. SNIPS without overlap).
    """
    if np.isnan(point) or np.isnan(replicates).any():
        return Estimate(point, float("nan"), float("nan"))
    tail = 50.0 * (1.0 - confidence)
    lower, upper = np.percentile(replicates, [tail, 100.0 - tail])
    return Estimate(point, float(lower), float(upper))
