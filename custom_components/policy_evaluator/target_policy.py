"""A saved policy's action probabilities, pi(a | x).

Deterministic policies (LinUCB, NeuralLinUCB, greedy settings) put all mass on
their action: pi is a one-hot row. LinTS samples and NeuralEpsilonGreedy
explores, and their SavedModels expose no distribution, so pi is the average
one-hot over `samples` independent draws: an unbiased estimate of pi, which
keeps IPS, DM and DR unbiased because they are linear in pi.

The linear agents are scored in NumPy (`bandit_core.linear_policy`) from the
SavedModel's own variables (A_a, b_a, theta) and the sidecar's alpha and
tikhonov_weight, with TF-Agents' decision rule: TF-Agents' linear policy runs
one conjugate-gradient solve per arm per call, far too slow for many LinTS
draws over every evaluation row. Neural agents run their SavedModel's `action`.
"""

from typing import Any, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability  # noqa: F401 - registers the TypeSpecs a saved policy needs

from bandit_core import agent_names, linear_policy
from bandit_core.policy_metadata import PolicyMetadata, read_policy_metadata
from bandit_core.saved_policy import load_saved_policy, policy_actions
from custom_components.policy_evaluator import row_hashing

_BATCH = 8192
# Sampled scores built at once, in floats: LinTS's draws are taken a block of rows at a time.
_NOISE_FLOATS = 1 << 20


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


def linear_state(policy: tf.Module, source: str) -> linear_policy.LinearArmState:
    """The per-arm statistics and theta of a saved LinUCB/LinTS policy."""
    variables = {v.name.split(":")[0]: v.numpy() for v in policy.model_variables}
    state = linear_policy.arm_state_from_variables(variables, source)
    if state.theta is None:
        raise ValueError(f"{source}: not a linear bandit policy (variables a_k, b_k, theta)")
    return state


class SavedPolicy:
    """A policy directory and its sidecar, queried for pi(a | x).

    The SavedModel is loaded on first use, so refusing bad evaluation data
    costs no model load.
    """

    def __init__(self, policy_dir: str, metadata: Optional[PolicyMetadata] = None):
        self.policy_dir = policy_dir
        self.metadata = metadata or read_policy_metadata(policy_dir)
        self._loaded: Optional[tf.Module] = None
        self._linear: Optional[linear_policy.LinearArmState] = None

    def __getstate__(self) -> Dict[str, Any]:
        """Pickles without the loaded model: a Beam worker loads its own on first use."""
        return {**self.__dict__, "_loaded": None, "_linear": None}

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
        LinTS's draws for a context are hashed from its content and a seed
        taken from `rng` (seeded 0 when None), so its pi is a pure function of
        (rng's seed, x) whatever rows it is scored with; a neural policy that
        explores samples inside its SavedModel, so its pi agrees across calls
        only in distribution.
        """
        x = np.asarray(observations, dtype=np.float32)
        metadata = self.metadata
        policy = self.saved_model
        if self._linear is None:
            draws = samples if metadata.stochastic else 1
            return saved_model_probabilities(policy, x, metadata.num_actions, draws)
        x = x.astype(np.float64)
        if metadata.alpha < linear_policy.GREEDY_ALPHA:
            return one_hot(np.argmax(x @ self._linear.theta.T, axis=1), metadata.num_actions)
        means, stds = linear_policy.mean_and_std(self._linear, metadata.tikhonov_weight, x)
        if metadata.agent == agent_names.LINUCB:
            return one_hot(np.argmax(means + metadata.alpha * stds, axis=1), metadata.num_actions)
        noise_seed = int((rng or np.random.default_rng(0)).integers(2**63))
        return _sampled_probabilities(means, metadata.alpha * stds, samples, x, noise_seed)


def _sampled_probabilities(
    means: np.ndarray, scales: np.ndarray, samples: int, contexts: np.ndarray, noise_seed: int
) -> np.ndarray:
    """[N, K] the share of `samples` draws of means + scales * noise in which each arm wins.

    Row n's noise is hashed from (noise_seed, the content of contexts[n]), so
    a context gets the same pi in any batch and on any worker.
    """
    keys = row_hashing.row_keys([contexts])
    n, k = means.shape
    pi = np.empty((n, k))
    rows_per_block = max(1, _NOISE_FLOATS // (samples * k))
    for start in range(0, n, rows_per_block):
        block = slice(start, start + rows_per_block)
        rows = len(keys[block])
        noise = row_hashing.standard_normals(keys[block], noise_seed, samples * k)
        draws = means[block, None, :] + scales[block, None, :] * noise.reshape(rows, samples, k)
        winners = np.argmax(draws, axis=2)[:, :, None] == np.arange(k)
        pi[block] = winners.sum(axis=1) / samples
    return pi
