"""Sufficient statistics of a per-arm linear agent, in one vectorised pass.

TF-Agents' per-arm linear agents (LinUCB, LinTS with
`accepts_per_arm_features=True`) keep ONE linear model shared by all arms
(`num_models = 1`): every logged row contributes the context x of the arm it
chose, and off-policy training without forgetting sums A = sum x x^T,
b = sum r x and n = the number of rows. The sums are what `agent.train`
accumulates batch by batch.
"""

import dataclasses

import numpy as np

from bandit_core.linear_statistics import LinearArmStatistics

# Rows per float64 block: bounds the copy of float32 contexts made for the sums.
_BLOCK_ROWS = 65536


@dataclasses.dataclass(frozen=True)
class PerArmStatistics:
    """The shared model's sums.

    Attributes:
      cov_matrix: [d, d] A = sum x x^T over the chosen arms' contexts.
      data_vector: [d] b = sum r x.
      num_samples: n, the number of rows.
    """

    cov_matrix: np.ndarray
    data_vector: np.ndarray
    num_samples: float

    def __add__(self, other: "PerArmStatistics") -> "PerArmStatistics":
        return PerArmStatistics(
            self.cov_matrix + other.cov_matrix,
            self.data_vector + other.data_vector,
            self.num_samples + other.num_samples,
        )

    @property
    def context_dim(self) -> int:
        """d, the dimension of the contexts."""
        return self.data_vector.shape[0]

    def as_model_statistics(self) -> LinearArmStatistics:
        """The same sums as the one model a per-arm agent keeps: shapes [1, d, d], [1, d], [1]."""
        return LinearArmStatistics(
            self.cov_matrix[None], self.data_vector[None], np.array([self.num_samples])
        )


def zero_per_arm_statistics(context_dim: int) -> PerArmStatistics:
    """The statistics of no data."""
    return PerArmStatistics(np.zeros((context_dim, context_dim)), np.zeros(context_dim), 0.0)


def per_arm_statistics(contexts: np.ndarray, rewards: np.ndarray) -> PerArmStatistics:
    """Sums x x^T, r x and 1 over the rows, in float64.

    Args:
      contexts: [N, d] the context of each row's chosen arm, e.g.
        `per_arm_features.linear_contexts(agent, global_features,
        chosen_arm_features)`.
      rewards: [N] observed rewards.
    """
    x = np.asarray(contexts)
    r = np.asarray(rewards)
    if x.ndim != 2 or r.shape != (x.shape[0],):
        raise ValueError(f"expected contexts [N, d] and rewards [N]; got {x.shape}, {r.shape}")
    d = x.shape[1]
    # [x r]^T [x r] holds sum x x^T (top-left) and sum r x (last column).
    gram = np.zeros((d + 1, d + 1))
    rows = np.empty((min(len(x), _BLOCK_ROWS), d + 1))
    for start in range(0, len(x), _BLOCK_ROWS):
        stop = min(start + _BLOCK_ROWS, len(x))
        block = rows[: stop - start]
        block[:, :d] = x[start:stop]
        block[:, d] = r[start:stop]
        gram += block.T @ block
    return PerArmStatistics(gram[:d, :d], gram[:d, d], float(len(x)))
