"""A saved per-arm policy queried for pi(c | user, candidates) over logged candidate sets.

The policy version directory carries its own item catalogue, so candidates
are scored with the movie features the policy was trained on, as serving
does. Choice probabilities:

- linear agents: NumPy from the checkpoint's A and b (`per_arm_linear_policy`,
  the same choices as the SavedModel's `action`, whose conjugate-gradient
  solve per call costs about 0.2 s per round at d = 420); LinUCB is
  deterministic, Thompson sampling the average one-hot of `samples` draws;
- epsilon-greedy agents (their export explores inside the graph): the exact
  mixture `(1 - epsilon) * greedy + epsilon / C` around the greedy policy
  saved beside it;
- NeuralLinUCB: deterministic, one call of the SavedModel.
"""

import os
from typing import Any, Callable, Dict, Optional

import numpy as np
import tensorflow as tf
import tensorflow_probability  # noqa: F401 - registers the TypeSpecs a saved policy's graph needs

from bandit_core import agent_names, linear_policy, per_arm_features, per_arm_linear_policy
from bandit_core.item_catalogue import CATALOGUE_DIR, ItemCatalogue
from bandit_core.policy_metadata import (
    GREEDY_POLICY_DIR,
    PER_ARM,
    PolicyMetadata,
    read_policy_metadata,
)
from bandit_core.saved_policy import (
    load_saved_policy,
    per_arm_policy_actions,
    read_model_variables,
)
from custom_components.policy_evaluator import row_hashing

# Candidates scored at once: rounds are taken in blocks of about this many, so the
# [rounds, C, d] inputs stay small whatever C is.
BLOCK_CANDIDATES = 1 << 15
_SAMPLED_AGENTS = (agent_names.PER_ARM_LINTS, agent_names.INTERACTION_LINTS)

# (global [N, dg], arms [N, C, da], draws) -> [N, C] pi over each row's candidates.
Policy = Callable[[np.ndarray, np.ndarray, int], np.ndarray]


def one_hot_average(choices: np.ndarray, num_candidates: int) -> np.ndarray:
    """[draws, N] choices -> [N, C] the share of draws that chose each candidate."""
    draws, rows = choices.shape
    counts = np.zeros((rows, num_candidates))
    np.add.at(counts, (np.tile(np.arange(rows), draws), choices.ravel()), 1.0)
    return counts / draws


def saved_policy_probabilities(agent: str, policy: tf.Module) -> Policy:
    """A TF-Agents per-arm policy's `action`, fed the features `agent` observes."""

    def probabilities(global_features: np.ndarray, arms: np.ndarray, draws: int) -> np.ndarray:
        choices = np.stack(
            [per_arm_policy_actions(policy, agent, global_features, arms) for _ in range(draws)]
        )
        return one_hot_average(choices, arms.shape[1])

    return probabilities


def linear_policy_probabilities(
    agent: str,
    cov_matrix: np.ndarray,
    data_vector: np.ndarray,
    tikhonov_weight: float,
    alpha: float,
    rng: np.random.Generator,
) -> Policy:
    """A per-arm linear policy's choices from its model (A, b), in NumPy.

    Thompson sampling's draws for a round are hashed from the round's content
    (user and candidate features) and a seed taken from `rng`, so a round's
    pi is a pure function of (rng's seed, the round) in any batch, on any worker.
    """
    sampled = agent in _SAMPLED_AGENTS and alpha > 0.0
    noise_seed = int(rng.integers(2**63))

    def probabilities(global_features: np.ndarray, arms: np.ndarray, draws: int) -> np.ndarray:
        contexts = per_arm_features.linear_contexts(agent, global_features, arms)
        if not sampled:
            scores = per_arm_linear_policy.ucb_scores(
                cov_matrix, data_vector, tikhonov_weight, alpha, contexts
            )
            return one_hot_average(np.argmax(scores, axis=1)[None], arms.shape[1])
        mean, std = per_arm_linear_policy.mean_and_std(
            cov_matrix, data_vector, tikhonov_weight, contexts
        )
        keys = row_hashing.row_keys([global_features, arms])
        noise = row_hashing.standard_normals(keys, noise_seed, draws * mean.shape[1])
        noise = noise.reshape(mean.shape[0], draws, mean.shape[1]).transpose(1, 0, 2)
        return one_hot_average(np.argmax(mean + alpha * std * noise, axis=2), arms.shape[1])

    return probabilities


def in_blocks(
    policy: Policy, global_features: np.ndarray, arms: np.ndarray, draws: int
) -> np.ndarray:
    """`policy` over all rounds, a block of rounds at a time."""
    rounds = max(1, BLOCK_CANDIDATES // max(1, arms.shape[1]))
    return np.concatenate(
        [
            policy(global_features[s : s + rounds], arms[s : s + rounds], draws)
            for s in range(0, len(global_features), rounds)
        ]
    )


class PerArmSavedPolicy:
    """A per-arm policy directory: sidecar, catalogue and SavedModel (loaded on first use)."""

    def __init__(self, policy_dir: str, metadata: Optional[PolicyMetadata] = None):
        self.policy_dir = policy_dir
        self.metadata = metadata or read_policy_metadata(policy_dir)
        if self.metadata.problem != PER_ARM:
            raise ValueError(f"{policy_dir}: problem {self.metadata.problem!r} is not {PER_ARM!r}")
        self._catalogue: Optional[ItemCatalogue] = None
        self._policy: Optional[Policy] = None

    def __getstate__(self) -> Dict[str, Any]:
        """Pickles without what it loaded: a Beam worker loads its own on first use."""
        return {**self.__dict__, "_catalogue": None, "_policy": None}

    @property
    def catalogue(self) -> ItemCatalogue:
        if self._catalogue is None:
            self._catalogue = ItemCatalogue.load(os.path.join(self.policy_dir, CATALOGUE_DIR))
        return self._catalogue

    @property
    def explores_in_graph(self) -> bool:
        return self.metadata.epsilon > 0.0

    def _load(self, rng: np.random.Generator) -> Policy:
        if self._policy is None:
            metadata = self.metadata
            if metadata.agent in agent_names.PER_ARM_LINEAR_AGENTS:
                state = linear_policy.arm_state_from_variables(
                    read_model_variables(self.policy_dir), self.policy_dir, num_actions=1
                )
                self._policy = linear_policy_probabilities(
                    metadata.agent,
                    state.cov_matrices[0],
                    state.data_vectors[0],
                    metadata.tikhonov_weight,
                    metadata.alpha,
                    rng,
                )
            else:
                directory = self.policy_dir
                if self.explores_in_graph:
                    directory = os.path.join(directory, GREEDY_POLICY_DIR)
                self._policy = saved_policy_probabilities(
                    metadata.agent, load_saved_policy(directory)
                )
        return self._policy

    def probabilities(
        self,
        global_features: np.ndarray,
        candidate_ids: np.ndarray,
        samples: int,
        rng: Optional[np.random.Generator] = None,
    ) -> np.ndarray:
        """[N, dg] users and [N, C] candidate movie ids -> [N, C] pi.

        `rng` seeds Thompson sampling's draws (seeded 0 when None; see
        `linear_policy_probabilities`).

        Raises:
          UnknownItemsError: a candidate is not in the policy's catalogue.
        """
        ids = np.asarray(candidate_ids, dtype=np.int64)
        arms = self.catalogue.features_of(ids.ravel()).reshape(ids.shape + (-1,))
        u = np.asarray(global_features, dtype=np.float32)
        sampled = self.metadata.agent in _SAMPLED_AGENTS and self.metadata.stochastic
        policy = self._load(rng or np.random.default_rng(0))
        greedy = in_blocks(policy, u, arms, samples if sampled else 1)
        if not self.explores_in_graph:
            return greedy
        epsilon = self.metadata.epsilon
        return (1.0 - epsilon) * greedy + epsilon / ids.shape[1]
