"""Per-arm policies served over candidate movies, with the exact or estimated propensity.

A per-arm version directory (see `custom_components/bandit_trainer/per_arm_export.py`)
holds the SavedModel, the sidecar and the item catalogue; the candidates'
features come from the catalogue of the version that serves the request, so a
version always scores movies with the features it was trained on.

How the probability of the served candidate is known, by agent kind:

- Per-arm and Interaction LinUCB: NumPy UCB scores from the checkpoint's
  `a_0`, `b_0`, then the server's exploration (epsilon-greedy or Boltzmann);
  the propensity is exact.
- Per-arm and Interaction LinTS: Thompson sampling has no closed-form choice
  probability. S draws of `mean + alpha * std * N(0, 1)` are taken per
  prediction; the first draw's argmax is served and its propensity is its
  frequency among the S draws. The served draw counts, so the propensity is
  at least 1 / S. Its standard error is sqrt(p (1 - p) / S): at most 0.016
  for S = 1000, and relative error grows as p shrinks, so candidates with
  p well below 1 / S are served with an overstated propensity.
- Neural per-arm agents: the greedy SavedModel (`greedy_policy/` for the
  epsilon-greedy agents, whose exported policy explores in the graph; the
  policy itself for NeuralLinUCB) gives the greedy candidate, and the
  probability is the exact epsilon-greedy mixture: the agent's own epsilon
  for the epsilon-greedy agents, the server's for NeuralLinUCB. The
  SavedModel's candidate count is fixed, so these take exactly
  `num_candidates` candidates.
"""

import os
from typing import Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability  # noqa: F401 - registers the TypeSpecs a saved policy's graph needs
from tf_agents.bandits.specs import utils as bandit_spec_utils
from tf_agents.trajectories import time_step as ts

from bandit_core import agent_names, linear_policy, per_arm_features, per_arm_linear_policy
from bandit_core.item_catalogue import CATALOGUE_DIR, ItemCatalogue
from bandit_core.policy_metadata import (
    GREEDY_POLICY_DIR,
    PER_ARM,
    PolicyMetadata,
    read_policy_metadata,
)
from bandit_core.saved_policy import load_saved_policy, read_model_variables
from serving.exploration import (
    action_probabilities,
    epsilon_greedy,
    policy_id_suffix,
    sample_actions,
)
from serving.settings import ServingSettings

_LINTS_AGENTS = (agent_names.PER_ARM_LINTS, agent_names.INTERACTION_LINTS)


class PerArmScorer:
    """A loaded per-arm policy: its sidecar, its catalogue and how it chooses.

    Attributes:
      metadata: the sidecar; `problem` is "per_arm".
      catalogue: the movies this version recommends from.
      min_candidates, max_candidates: how many candidates one round may have.
    """

    def __init__(self, metadata: PolicyMetadata, catalogue: ItemCatalogue) -> None:
        if catalogue.feature_dim != metadata.arm_dim:
            raise ValueError(
                f"the catalogue has {catalogue.feature_dim} features per movie; the policy "
                f"expects {metadata.arm_dim}"
            )
        if len(catalogue) < metadata.num_candidates:
            raise ValueError(
                f"the catalogue has {len(catalogue)} movies, fewer than the "
                f"{metadata.num_candidates} candidates of a round"
            )
        self.metadata = metadata
        self.catalogue = catalogue
        self.min_candidates = 1
        self.max_candidates = metadata.num_candidates

    @property
    def global_dim(self) -> int:
        return self.metadata.global_dim

    def choose(
        self,
        global_features: np.ndarray,
        candidate_features: np.ndarray,
        settings: ServingSettings,
        rng: np.random.Generator,
    ) -> Tuple[int, float]:
        """(index of the served candidate, its propensity) for one round.

        Args:
          global_features: [dg] the user.
          candidate_features: [C, da] the candidates' catalogue features.
          settings: the server's exploration and sampling settings.
          rng: the server's generator.
        """
        raise NotImplementedError

    def policy_id(self, settings: ServingSettings) -> str:
        """The logged `policy_id`: agent and how its propensities arise."""
        raise NotImplementedError

    def _contexts(self, global_features: np.ndarray, candidate_features: np.ndarray) -> np.ndarray:
        """[1, C, d] the linear agents' contexts of one round."""
        return per_arm_features.linear_contexts(
            self.metadata.agent, global_features[None], candidate_features[None]
        )


class LinearPerArmScorer(PerArmScorer):
    """Per-arm LinUCB and LinTS in NumPy from the shared model's A and b."""

    def __init__(self, metadata: PolicyMetadata, catalogue: ItemCatalogue, policy_dir: str) -> None:
        super().__init__(metadata, catalogue)
        state = linear_policy.arm_state_from_variables(
            read_model_variables(policy_dir), policy_dir, num_actions=1
        )
        self.cov_matrix = state.cov_matrices[0]
        self.data_vector = state.data_vectors[0]
        self.samples = metadata.agent in _LINTS_AGENTS

    def choose(self, global_features, candidate_features, settings, rng):
        contexts = self._contexts(global_features, candidate_features)
        if self.samples:
            return self._thompson(contexts, settings.thompson_samples, rng)
        scores = per_arm_linear_policy.ucb_scores(
            self.cov_matrix,
            self.data_vector,
            self.metadata.tikhonov_weight,
            self.metadata.alpha,
            contexts,
        )
        actions, propensities = sample_actions(action_probabilities(settings, scores), rng)
        return int(actions[0]), float(propensities[0])

    def thompson_frequencies(
        self, contexts: np.ndarray, num_samples: int, rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray]:
        """([S] each draw's argmax, [C] each candidate's share of the S draws) for one round.

        Args:
          contexts: [1, C, d] the round's contexts.
          num_samples: S.
          rng: the generator of the normal draws.
        """
        means, stds = per_arm_linear_policy.mean_and_std(
            self.cov_matrix, self.data_vector, self.metadata.tikhonov_weight, contexts
        )
        noise = rng.standard_normal((num_samples, means.shape[1]))
        winners = np.argmax(means + self.metadata.alpha * stds * noise, axis=1)
        return winners, np.bincount(winners, minlength=means.shape[1]) / num_samples

    def _thompson(self, contexts: np.ndarray, num_samples: int, rng: np.random.Generator):
        winners, frequencies = self.thompson_frequencies(contexts, num_samples, rng)
        return int(winners[0]), float(frequencies[winners[0]])

    def policy_id(self, settings: ServingSettings) -> str:
        if self.samples:
            return f"{self.metadata.agent}+thompson(samples={settings.thompson_samples})"
        return f"{self.metadata.agent}+{policy_id_suffix(settings)}"


class NeuralPerArmScorer(PerArmScorer):
    """Neural per-arm agents: the greedy SavedModel's choice mixed with uniform exploration."""

    def __init__(self, metadata: PolicyMetadata, catalogue: ItemCatalogue, policy_dir: str) -> None:
        super().__init__(metadata, catalogue)
        greedy_dir = os.path.join(policy_dir, GREEDY_POLICY_DIR)
        self.own_epsilon = tf.io.gfile.exists(greedy_dir)
        if metadata.epsilon > 0.0 and not self.own_epsilon:
            raise ValueError(f"{policy_dir}: an epsilon-greedy policy without {GREEDY_POLICY_DIR}/")
        self._policy = load_saved_policy(greedy_dir if self.own_epsilon else policy_dir)
        self.min_candidates = metadata.num_candidates

    def greedy_action(self, global_features: np.ndarray, candidate_features: np.ndarray) -> int:
        """The greedy policy's candidate for one round."""
        arm_features = per_arm_features.policy_arm_features(
            self.metadata.agent, global_features[None], candidate_features[None]
        )
        observation = {
            bandit_spec_utils.GLOBAL_FEATURE_KEY: tf.constant(global_features[None], tf.float32),
            bandit_spec_utils.PER_ARM_FEATURE_KEY: tf.constant(arm_features, tf.float32),
        }
        return int(self._policy.action(ts.restart(observation, batch_size=1)).action.numpy()[0])

    def epsilon(self, settings: ServingSettings) -> float:
        return self.metadata.epsilon if self.own_epsilon else settings.epsilon

    def choose(self, global_features, candidate_features, settings, rng):
        one_hot = np.eye(len(candidate_features))[
            [self.greedy_action(global_features, candidate_features)]
        ]
        probabilities = epsilon_greedy(one_hot, self.epsilon(settings))
        actions, propensities = sample_actions(probabilities, rng)
        return int(actions[0]), float(propensities[0])

    def policy_id(self, settings: ServingSettings) -> str:
        return f"{self.metadata.agent}+epsilon_greedy(epsilon={self.epsilon(settings):g})"


def load_per_arm_scorer(policy_dir: str) -> PerArmScorer:
    """The scorer of a per-arm version directory, by the agent its sidecar names."""
    metadata = read_policy_metadata(policy_dir)
    if metadata.problem != PER_ARM:
        raise ValueError(f"{policy_dir}: problem {metadata.problem!r} is not {PER_ARM!r}")
    catalogue = ItemCatalogue.load(os.path.join(policy_dir, CATALOGUE_DIR))
    if metadata.agent in agent_names.PER_ARM_LINEAR_AGENTS:
        return LinearPerArmScorer(metadata, catalogue, policy_dir)
    if metadata.agent in agent_names.PER_ARM_NEURAL_AGENTS:
        return NeuralPerArmScorer(metadata, catalogue, policy_dir)
    raise ValueError(f"{policy_dir}: agent {metadata.agent!r} is not a per-arm agent")
