"""Sufficient statistics of linear bandit agents, in one vectorised pass.

Off-policy training of LinUCB (and LinTS) without forgetting is a sum over the
logged rows: per arm a, A_a = sum x x^T, b_a = sum r x and n_a = count. Summing
them directly is exactly what `agent.train` accumulates batch by batch, minus
the Python loop over arms and the per-batch overhead.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class LinearArmStatistics:
    """Per-arm sums; shapes [K, d, d], [K, d] and [K]."""

    cov_matrices: np.ndarray
    data_vectors: np.ndarray
    num_samples: np.ndarray

    def __add__(self, other: "LinearArmStatistics") -> "LinearArmStatistics":
        return LinearArmStatistics(
            self.cov_matrices + other.cov_matrices,
            self.data_vectors + other.data_vectors,
            self.num_samples + other.num_samples,
        )


def zero_statistics(num_actions: int, observation_dim: int) -> LinearArmStatistics:
    """The statistics of no data."""
    return LinearArmStatistics(
        np.zeros((num_actions, observation_dim, observation_dim)),
        np.zeros((num_actions, observation_dim)),
        np.zeros(num_actions),
    )


def arm_statistics(
    observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray, num_actions: int
) -> LinearArmStatistics:
    """Sums x x^T, r x and 1 per arm over the rows, in float64.

    Args:
      observations: [N, d] contexts.
      actions: [N] integer actions in [0, num_actions).
      rewards: [N] observed rewards.
      num_actions: K, the number of arms.
    """
    x = np.asarray(observations, dtype=np.float64)
    a = np.asarray(actions, dtype=np.int64)
    r = np.asarray(rewards, dtype=np.float64)
    if x.ndim != 2 or a.shape != (x.shape[0],) or r.shape != (x.shape[0],):
        raise ValueError(
            f"expected observations [N, d], actions [N], rewards [N]; got "
            f"{x.shape}, {a.shape}, {r.shape}"
        )
    if a.size and (a.min() < 0 or a.max() >= num_actions):
        raise ValueError(f"actions must lie in [0, {num_actions}); got {a.min()}..{a.max()}")
    # A stable sort groups each arm's rows; NumPy radix-sorts 16-bit keys.
    keys = a.astype(np.uint16) if num_actions <= np.iinfo(np.uint16).max else a
    order = np.argsort(keys, kind="stable")
    counts = np.bincount(a, minlength=num_actions)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))
    d = x.shape[1]
    # Per arm, [x r]^T [x r] holds sum x x^T (top-left) and sum r x (last column).
    rows = np.empty((x.shape[0], d + 1))
    rows[:, :d] = x
    rows[:, d] = r
    rows = rows[order]
    cov = np.zeros((num_actions, d, d))
    data = np.zeros((num_actions, d))
    for arm in np.flatnonzero(counts):
        block = rows[starts[arm] : starts[arm] + counts[arm]]
        gram = block.T @ block
        cov[arm] = gram[:d, :d]
        data[arm] = gram[:d, d]
    return LinearArmStatistics(cov, data, counts.astype(np.float64))
