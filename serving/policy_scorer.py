"""LinUCB scores with NumPy alone, from a PolicySaver SavedModel read once.

The arms' statistics only change when a new policy is pushed, so this module
factors them once at load (`bandit_core.linear_policy`) and scores a whole
batch with one matmul:

    ucb[n, k] = x_n . theta_k + alpha * || L_k^-1 x_n ||

Ties go to the lowest arm index, as with `tf.argmax`. Arms with identical
statistics (arms no data has reached yet) tie exactly in TF-Agents, which
computes each arm alone; BLAS does not promise identical columns of a matmul
identical results, so such arms are scored once and the score copied, which
keeps the tie exact by construction (and skips their redundant work).
Where two different arms score within ~1e-5 of each other (relative), the
SavedModel's argmax is decided by its float32 conjugate-gradient round-off
and may differ from this float64 one.
"""

import dataclasses
from typing import Dict, Optional

import numpy as np
import tensorflow_probability  # noqa: F401 - registers the TypeSpecs a saved policy's graph needs

from bandit_core import linear_policy
from bandit_core.agent_names import LINUCB
from bandit_core.policy_metadata import PolicyMetadata, read_policy_metadata
from bandit_core.saved_policy import load_saved_policy, policy_actions, read_model_variables


class _PolicyDimensions:
    """A scorer's dimensions, read from the policy sidecar it holds as `metadata`."""

    metadata: PolicyMetadata

    @property
    def num_actions(self) -> int:
        return self.metadata.num_actions

    @property
    def observation_dim(self) -> int:
        return self.metadata.observation_dim


@dataclasses.dataclass(frozen=True, eq=False)
class LinUCBScorer(_PolicyDimensions):
    """Precomputed LinUCB parameters; `scores` is a pure function of them.

    Attributes:
      metadata: the policy's sidecar (dimensions and hyper-parameters).
      arm_models: (K,) index of each arm's model among the M distinct ones.
      weights: (observation_dim, M * (1 + r)) float64; columns [0, M) give the
        models' mean rewards, the next M * r columns model m's `L_m^-1 x`
        (r = 0 for a greedy policy, else the model's context dimension).
      offsets: (M * (1 + r),) float64 added to `x @ weights`; it carries the
        constant-1 feature of a policy trained with `add_bias`.
    """

    metadata: PolicyMetadata
    arm_models: np.ndarray
    weights: np.ndarray
    offsets: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in (
            ("arm_models", np.intp),
            ("weights", np.float64),
            ("offsets", np.float64),
        ):
            array = np.array(getattr(self, name), dtype=dtype)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    def scores(self, observations: np.ndarray) -> np.ndarray:
        """[N, observation_dim] observations -> [N, num_actions] UCB scores.

        Observations are rounded to float32 first because the SavedModel
        casts them so; scoring the same numbers keeps the argmax identical.
        """
        x = np.asarray(observations, dtype=np.float32).astype(np.float64)
        if x.ndim != 2 or x.shape[1] != self.observation_dim:
            raise ValueError(
                f"observations must have shape [N, {self.observation_dim}], got {x.shape}"
            )
        z = x @ self.weights + self.offsets
        models = int(self.arm_models.max()) + 1
        model_scores = z[:, :models]
        if z.shape[1] > models:
            bonus = z[:, models:].reshape(x.shape[0], models, -1)
            model_scores = model_scores + self.metadata.alpha * np.sqrt(
                np.einsum("nmr,nmr->nm", bonus, bonus)
            )
        return model_scores[:, self.arm_models]

    def greedy_actions(self, observations: np.ndarray) -> np.ndarray:
        """The SavedModel's `action` for the same observations."""
        return np.argmax(self.scores(observations), axis=1)


def linucb_scorer(
    metadata: PolicyMetadata,
    cov_matrices: np.ndarray,
    data_vectors: np.ndarray,
    theta: Optional[np.ndarray] = None,
) -> LinUCBScorer:
    """Builds the scorer from per-arm statistics.

    Args:
      metadata: dimensions, alpha and tikhonov_weight of the policy.
      cov_matrices: (K, r, r) per-arm `A_k`; r is observation_dim, or
        observation_dim + 1 when the agent was built with `add_bias`.
      data_vectors: (K, r) per-arm reward-weighted sums `b_k`.
      theta: (K, r) the agent's theta variable; required when alpha is ~0,
        where TF-Agents scores with it instead of the statistics.

    Raises:
      ValueError: shapes disagree with the metadata, or theta is missing for a
        greedy policy.
      numpy.linalg.LinAlgError: a regularised matrix is not positive definite.
    """
    a = np.asarray(cov_matrices, dtype=np.float64)
    b = np.asarray(data_vectors, dtype=np.float64)
    k, d = metadata.num_actions, metadata.observation_dim
    if a.ndim != 3 or a.shape[0] != k or a.shape[1] != a.shape[2] or a.shape[1] not in (d, d + 1):
        raise ValueError(
            f"cov_matrices must have shape ({k}, r, r) with r = {d} or {d + 1} "
            f"(observation_dim, plus 1 with add_bias), got {a.shape}"
        )
    r = a.shape[1]
    if b.shape != (k, r):
        raise ValueError(f"data_vectors must have shape ({k}, {r}), got {b.shape}")

    if metadata.alpha < linear_policy.GREEDY_ALPHA:
        if theta is None:
            raise ValueError("a greedy policy (alpha ~ 0) scores with theta, which is missing")
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (k, r):
            raise ValueError(f"theta must have shape ({k}, {r}), got {theta.shape}")
        unique_theta, arm_models = np.unique(theta, axis=0, return_inverse=True)
        columns = unique_theta.T
    else:
        statistics = np.concatenate([a.reshape(k, r * r), b], axis=1)
        unique, arm_models = np.unique(statistics, axis=0, return_inverse=True)
        m = len(unique)
        fitted_theta, inverse_factors = linear_policy.posterior_factors(
            unique[:, : r * r].reshape(m, r, r), unique[:, r * r :], metadata.tikhonov_weight
        )
        # (M, r, r): block m maps x to L_m^-1 x; as columns, (r, M * r).
        bonus_columns = inverse_factors.transpose(2, 0, 1).reshape(r, m * r)
        columns = np.concatenate([fitted_theta.T, bonus_columns], axis=1)
    return LinUCBScorer(
        metadata=metadata,
        arm_models=arm_models.reshape(k),
        weights=columns[:d],
        offsets=columns[d:].sum(axis=0),
    )


def load_policy_scorer(policy_dir: str) -> LinUCBScorer:
    """Reads a PolicySaver SavedModel's variables and sidecar into a scorer."""
    metadata = read_policy_metadata(policy_dir)
    if metadata.agent != LINUCB:
        raise ValueError(f"{policy_dir}: agent {metadata.agent!r} is not LinUCB")
    return scorer_from_variables(metadata, read_model_variables(policy_dir), policy_dir)


def scorer_from_variables(
    metadata: PolicyMetadata, variables: Dict[str, np.ndarray], source: str
) -> LinUCBScorer:
    """The scorer of a LinUCB agent given its named variables."""
    state = linear_policy.arm_state_from_variables(variables, source, metadata.num_actions)
    return linucb_scorer(metadata, state.cov_matrices, state.data_vectors, state.theta)


class SavedModelScorer(_PolicyDimensions):
    """The reference path: the TF-Agents SavedModel's `action`, once per call.

    Its "scores" are the one-hot of the chosen action, which keeps the argmax
    and so the epsilon-greedy probabilities of the fast path; it has no real
    scores for Boltzmann exploration. Kept for benchmarks and as a fallback.
    """

    def __init__(self, policy_dir: str) -> None:
        self.metadata = read_policy_metadata(policy_dir)
        if self.metadata.stochastic:
            raise ValueError(
                f"{policy_dir}: {self.metadata.agent} exports a stochastic policy, so the "
                "probability of a served action is unknown and its logs could not support "
                "off-policy learning; serve LinUCB or NeuralLinUCB"
            )
        self._policy = load_saved_policy(policy_dir)

    def scores(self, observations: np.ndarray) -> np.ndarray:
        actions = policy_actions(self._policy, observations)
        return np.eye(self.num_actions)[actions]
