"""A saved policy's action probabilities, pi(a | x).

Deterministic policies (LinUCB, NeuralLinUCB, greedy settings) put all mass on
their action: pi is a one-hot row. LinTS samples and NeuralEpsilonGreedy
explores, and their SavedModels expose no distribution, so pi is the average
one-hot over `samples` independent draws: an unbiased estimate of pi, which
keeps IPS, DM and DR unbiased because they are linear in pi.

The linear agents are scored in NumPy from the SavedModel's own variables
(A_a, b_a, theta) and the sidecar's alpha and tikhonov_weight, with TF-Agents'
decision rule: TF-Agents' linear policy runs one conjugate-gradient solve per
arm per call, about 600 rows/s at 100 arms on 2 cores, so 20,000 evaluation
rows times 64 LinTS draws would take over half an hour. Neural agents run their
SavedModel's `action`.
"""

import re
from typing import Dict, Optional, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability  # noqa: F401 - registers the TypeSpecs a saved policy needs

from bandit_core import agent_names
from bandit_core.policy_metadata import PolicyMetadata, read_policy_metadata
from bandit_core.saved_policy import load_saved_policy, policy_actions

_BATCH = 8192
# TF-Agents' linear policies score with theta alone below this alpha.
_GREEDY_ALPHA = 1e-12
_ARM_VARIABLE = re.compile(r"^(a|b|eig_vals)_?(\d+)$")


def one_hot(actions: np.ndarray, num_actions: int) -> np.ndarray:
    """[N] actions -> [N, K] one-hot rows; rejects actions outside [0, K)."""
    actions = np.asarray(actions)
    if actions.size and (actions.min() < 0 or actions.max() >= num_actions):
        raise ValueError(
            f"the policy returned actions {actions.min()}..{actions.max()} outside "
            f"[0, {num_actions})"
        )
    rows = np.zeros((len(actions), num_actions))
    rows[np.arange(len(actions)), actions] = 1.0
    return rows


def saved_model_probabilities(
    policy: tf.Module, observations: np.ndarray, num_actions: int, samples: int = 1
) -> np.ndarray:
    """[N, d] -> [N, K]: the average one-hot of `samples` calls of the SavedModel."""
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    observations = np.asarray(observations, dtype=np.float32)
    total = np.zeros((len(observations), num_actions))
    for _ in range(samples):
        for start in range(0, len(observations), _BATCH):
            chunk = observations[start : start + _BATCH]
            total[start : start + len(chunk)] += one_hot(policy_actions(policy, chunk), num_actions)
    return total / samples


def linear_state(policy: tf.Module, source: str) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(A [K, d, d], b [K, d], theta [K, d]) from a saved LinUCB/LinTS policy's variables."""
    arms: Dict[str, Dict[int, np.ndarray]] = {"a": {}, "b": {}, "eig_vals": {}}
    theta = None
    for variable in policy.model_variables:
        name = variable.name.split(":")[0]
        match = _ARM_VARIABLE.match(name)
        if match:
            arms[match.group(1)][int(match.group(2))] = variable.numpy()
        elif name == "theta":
            theta = variable.numpy()
    if any(values.size for values in arms["eig_vals"].values()):
        raise ValueError(f"{source}: eigendecomposition linear policies are not supported")
    if theta is None or sorted(arms["a"]) != list(range(len(arms["a"]))) or not arms["a"]:
        raise ValueError(f"{source}: not a linear bandit policy (variables a_k, b_k, theta)")
    order = sorted(arms["a"])
    return (
        np.stack([arms["a"][k] for k in order]).astype(np.float64),
        np.stack([arms["b"][k] for k in order]).astype(np.float64),
        theta.astype(np.float64),
    )


def linear_scores(
    cov_matrices: np.ndarray,
    data_vectors: np.ndarray,
    tikhonov_weight: float,
    observations: np.ndarray,
) -> Tuple[np.ndarray, np.ndarray]:
    """Per-arm posterior mean and standard deviation of the linear agents.

    With M_a = A_a + tikhonov_weight I: mean[n, a] = b_a^T M_a^-1 x_n and
    std[n, a] = sqrt(x_n^T M_a^-1 x_n) = ||L_a^-1 x_n|| for M_a = L_a L_a^T,
    which cannot go negative through round-off.

    Args:
      cov_matrices: [K, d, d] A_a.
      data_vectors: [K, d] b_a.
      tikhonov_weight: the agents' ridge.
      observations: [N, d].

    Returns:
      ([N, K] means, [N, K] standard deviations).
    """
    d = cov_matrices.shape[-1]
    regularised = cov_matrices + tikhonov_weight * np.eye(d)
    inverse_factors = np.linalg.inv(np.linalg.cholesky(regularised))
    theta = np.linalg.solve(regularised, data_vectors[..., None])[..., 0]
    x = np.asarray(observations, dtype=np.float64)
    means = x @ theta.T
    stds = np.empty_like(means)
    for start in range(0, len(x), _BATCH // 4):
        z = np.einsum("kij,nj->nki", inverse_factors, x[start : start + _BATCH // 4])
        stds[start : start + len(z)] = np.sqrt(np.einsum("nki,nki->nk", z, z))
    return means, stds


class SavedPolicy:
    """A policy directory and its sidecar, queried for pi(a | x).

    The SavedModel is loaded on first use, so refusing bad evaluation data
    costs no model load.
    """

    def __init__(self, policy_dir: str, metadata: Optional[PolicyMetadata] = None):
        self.policy_dir = policy_dir
        self.metadata = metadata or read_policy_metadata(policy_dir)
        self._loaded: Optional[tf.Module] = None
        self._linear: Optional[Tuple[np.ndarray, np.ndarray, np.ndarray]] = None

    @property
    def saved_model(self) -> tf.Module:
        if self._loaded is None:
            self._loaded = load_saved_policy(self.policy_dir)
            if self.metadata.agent in agent_names.LINEAR_AGENTS:
                self._linear = linear_state(self._loaded, self.policy_dir)
        return self._loaded

    def probabilities(
        self, observations: np.ndarray, samples: int, rng: Optional[np.random.Generator] = None
    ) -> np.ndarray:
        """[N, d] -> [N, K] pi(a | x); stochastic policies average `samples` draws.

        Observations are rounded to float32 first, as the SavedModel's input is.
        """
        x = np.asarray(observations, dtype=np.float32)
        metadata = self.metadata
        policy = self.saved_model
        if self._linear is None:
            draws = samples if metadata.stochastic else 1
            return saved_model_probabilities(policy, x, metadata.num_actions, draws)
        cov, data, theta = self._linear
        x = x.astype(np.float64)
        if metadata.alpha < _GREEDY_ALPHA:
            return one_hot(np.argmax(x @ theta.T, axis=1), metadata.num_actions)
        means, stds = linear_scores(cov, data, metadata.tikhonov_weight, x)
        if metadata.agent == agent_names.LINUCB:
            return one_hot(np.argmax(means + metadata.alpha * stds, axis=1), metadata.num_actions)
        rng = rng or np.random.default_rng(0)
        total = np.zeros_like(means)
        for _ in range(samples):
            sampled = means + metadata.alpha * stds * rng.standard_normal(means.shape)
            total[np.arange(len(x)), np.argmax(sampled, axis=1)] += 1.0
        return total / samples
