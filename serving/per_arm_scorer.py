"""Per-arm policies served over candidate movies, with the exact or estimated propensity.

A per-arm version directory (see `custom_components/bandit_trainer/per_arm_export.py`)
holds the SavedModel, the sidecar and the item catalogue; the candidates'
features come from the catalogue of the version that serves the request, so a
version always scores movies with the features it was trained on.

How the probability of the served candidate is known, by agent kind:

- Per-arm and Interaction LinUCB: NumPy UCB scores from the checkpoint's
  `a_0`, `b_0`, then the server's exploration (epsilon-greedy or Boltzmann);
  the propensity is exact. The model is factored once at load, and a round's
  candidates share its user, so one round costs about as much for 1,682
  candidates as for 100 (see `LinearPerArmScorer`).
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
- `load_per_arm_saved_model` serves every deterministic per-arm policy that
  way, LinUCB included: the reference path that the `savedmodel` scorer
  selects for benchmarks, as `policy_scorer.SavedModelScorer` does for the
  classic problem.
"""

import os
from typing import List, Optional, Sequence, Tuple

import numpy as np
import tensorflow as tf
import tensorflow_probability  # noqa: F401 - registers the TypeSpecs a saved policy's graph needs
from tf_agents.bandits.specs import utils as bandit_spec_utils
from tf_agents.trajectories import time_step as ts

from bandit_core import agent_names, linear_policy, per_arm_features, per_arm_linear_policy
from bandit_core.item_catalogue import (
    CATALOGUE_DIR,
    ItemCatalogue,
    UnknownItemsError,
    sorted_positions,
)
from bandit_core.policy_metadata import (
    GREEDY_POLICY_DIR,
    PER_ARM,
    PolicyMetadata,
    read_policy_metadata,
)
from bandit_core.saved_policy import load_saved_policy, read_model_variables
from bandit_core.user_table import USER_TABLE_DIR, UserTable
from serving.exploration import (
    action_probabilities,
    epsilon_greedy,
    policy_id_suffix,
    sample_actions,
)
from serving.settings import ServingSettings

_LINTS_AGENTS = (agent_names.PER_ARM_LINTS, agent_names.INTERACTION_LINTS)
# g of the per-arm agents, whose arm features do not depend on the user.
_ONE = np.ones(1)


class PerArmScorer:
    """A loaded per-arm policy: its sidecar, its catalogue and how it chooses.

    Attributes:
      metadata: the sidecar; `problem` is "per_arm".
      catalogue: the movies this version recommends from.
      users: the users this version knows by id, or None if it was exported
        without a user table; set by the loaders.
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
        self.users: Optional[UserTable] = None
        # Training reads rounds of exactly `num_candidates`; shorter ones would be quarantined.
        self.min_candidates = metadata.num_candidates
        self.max_candidates = metadata.num_candidates
        # The catalogue sorted by id once, its features in the scorers' float64.
        order = np.argsort(catalogue.movie_ids)
        self._sorted_ids = catalogue.movie_ids[order]
        self._sorted_features = catalogue.features[order].astype(np.float64)
        # Catalogue position -> sorted position, for candidates drawn by position.
        self._sorted_position = np.empty_like(order)
        self._sorted_position[order] = np.arange(len(order))

    @property
    def global_dim(self) -> int:
        return self.metadata.global_dim

    def candidate_features(self, movie_ids: Sequence[int]) -> np.ndarray:
        """[n] movie ids -> [n, da] float64: `catalogue.features_of` from a per-version cache.

        Raises:
          UnknownItemsError: some ids are not in the catalogue; it lists them.
        """
        ids = np.asarray(movie_ids, dtype=np.int64)
        positions, known = sorted_positions(self._sorted_ids, ids)
        if not known.all():
            raise UnknownItemsError(ids[~known].tolist())
        return self._sorted_features[positions]

    def draw_candidates(
        self, count: int, rng: np.random.Generator
    ) -> Tuple[List[int], np.ndarray]:
        """([count] distinct catalogue movie ids drawn uniformly, [count, da] their features).

        The same ids, in the same order, as `rng.choice(catalogue.movie_ids, count,
        replace=False)`, but drawn as positions, so the features need no id lookup
        and the ids, the catalogue's own, need no validation.
        """
        drawn = rng.choice(len(self._sorted_ids), size=count, replace=False)
        positions = self._sorted_position[drawn]
        return self._sorted_ids[positions].tolist(), self._sorted_features[positions]

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


class LinearPerArmScorer(PerArmScorer):
    """Per-arm LinUCB and LinTS in NumPy from the shared model's A and b.

    `theta` and `M = (A + t I)^-1` are computed once at load. Candidate c of
    a round with user u has the context `x_c = [u, g (x) v_c]`, where g is u
    for the Interaction agents and the scalar 1 for the per-arm ones (see
    `per_arm_features.linear_contexts`). Split by M's blocks,

        mean_c  = theta_u . u + (g^T Theta_v) . v_c
        std_c^2 = u^T M_uu u + 2 v_c . h(u) + v_c^T G(u) v_c,
        G(u)    = sum_{i,l} g_i g_l M_il   (M_il: the [da, da] arm blocks)

    so a round costs O(dg^2 da^2 / 2) for G, once, plus O(C da^2) for its
    candidates, instead of O(C d^2) with d = dg + dg da (420 for the
    Interaction agents on rank-20 MovieLens), and the model read per round
    (~0.7 MB) stays in a core's cache. Scores equal `per_arm_linear_policy`'s
    up to float64 round-off.
    """

    def __init__(self, metadata: PolicyMetadata, catalogue: ItemCatalogue, policy_dir: str) -> None:
        super().__init__(metadata, catalogue)
        state = linear_policy.arm_state_from_variables(
            read_model_variables(policy_dir), policy_dir, num_actions=1
        )
        self.cov_matrix = state.cov_matrices[0]
        self.data_vector = state.data_vectors[0]
        self.samples = metadata.agent in _LINTS_AGENTS
        self._interaction = metadata.agent in agent_names.INTERACTION_AGENTS
        global_dim, arm_dim = metadata.global_dim, catalogue.feature_dim
        rows = global_dim if self._interaction else 1  # the length of g
        dim = global_dim + rows * arm_dim
        if self.data_vector.shape != (dim,):
            raise ValueError(
                f"{policy_dir}: {metadata.agent} with {global_dim} global and {arm_dim} movie "
                f"features has contexts of dimension {dim}; the model's is "
                f"{self.data_vector.shape[0]}"
            )
        thetas, inverse_factors = linear_policy.posterior_factors(
            self.cov_matrix[None], self.data_vector[None], metadata.tikhonov_weight
        )
        theta, inverse = thetas[0], inverse_factors[0]
        precision = inverse.T @ inverse  # (A + t I)^-1
        self._global_theta = theta[:global_dim].copy()
        self._arm_theta = theta[global_dim:].reshape(rows, arm_dim).copy()
        self._global_quadratic = precision[:global_dim, :global_dim].copy()
        self._cross = precision[:global_dim, global_dim:].copy()
        # G(u) needs only pairs i <= l: M_ii, and M_il + M_il^T = M_il + M_li.
        arm_blocks = precision[global_dim:, global_dim:].reshape(rows, arm_dim, rows, arm_dim)
        self._pair_rows, self._pair_columns = np.triu_indices(rows)
        pairs = arm_blocks[self._pair_rows, :, self._pair_columns, :]
        off_diagonal = (self._pair_rows != self._pair_columns)[:, None, None]
        self._pair_blocks = (pairs + off_diagonal * pairs.transpose(0, 2, 1)).reshape(
            len(pairs), arm_dim * arm_dim
        )
        self._greedy = metadata.alpha < linear_policy.GREEDY_ALPHA

    def means(self, global_features: np.ndarray, candidate_features: np.ndarray) -> np.ndarray:
        """[C] the posterior means of one round's candidates.

        Args:
          global_features: [dg] the user.
          candidate_features: [C, da] the candidates' catalogue features.
        """
        u = np.asarray(global_features, dtype=np.float64)
        v = np.asarray(candidate_features, dtype=np.float64)
        return v @ (self._g(u) @ self._arm_theta) + self._global_theta @ u

    def mean_and_std(
        self, global_features: np.ndarray, candidate_features: np.ndarray
    ) -> Tuple[np.ndarray, np.ndarray]:
        """([C] posterior means, [C] standard deviations) of one round's candidates."""
        u = np.asarray(global_features, dtype=np.float64)
        v = np.asarray(candidate_features, dtype=np.float64)
        g = self._g(u)
        arm_dim = v.shape[1]
        quadratic = (g[self._pair_rows] * g[self._pair_columns]) @ self._pair_blocks
        cross = g @ (u @ self._cross).reshape(len(g), arm_dim)
        variances = np.einsum("cj,cj->c", v @ quadratic.reshape(arm_dim, arm_dim), v)
        variances += v @ (2.0 * cross) + u @ self._global_quadratic @ u
        stds = np.sqrt(np.maximum(variances, 0.0, out=variances), out=variances)
        return v @ (g @ self._arm_theta) + self._global_theta @ u, stds

    def _g(self, u: np.ndarray) -> np.ndarray:
        """What the arm features are multiplied by: u (Interaction) or 1 (per-arm)."""
        return u if self._interaction else _ONE

    def choose(self, global_features, candidate_features, settings, rng):
        if self.samples:
            means, stds = self.mean_and_std(global_features, candidate_features)
            winners = self._draw_winners(means, stds, settings.thompson_samples, rng)
            return int(winners[0]), float(np.count_nonzero(winners == winners[0]) / len(winners))
        if self._greedy:  # as TF-Agents: below GREEDY_ALPHA the means alone
            scores = self.means(global_features, candidate_features)
        else:
            means, stds = self.mean_and_std(global_features, candidate_features)
            scores = means + self.metadata.alpha * stds
        actions, propensities = sample_actions(action_probabilities(settings, scores[None]), rng)
        return int(actions[0]), float(propensities[0])

    def thompson_frequencies(
        self, contexts: np.ndarray, num_samples: int, rng: np.random.Generator
    ) -> Tuple[np.ndarray, np.ndarray]:
        """([S] each draw's argmax, [C] each candidate's share of the S draws) for one round.

        Scores the contexts with `per_arm_linear_policy`, the reference math.

        Args:
          contexts: [1, C, d] the round's contexts.
          num_samples: S.
          rng: the generator of the normal draws.
        """
        means, stds = per_arm_linear_policy.mean_and_std(
            self.cov_matrix, self.data_vector, self.metadata.tikhonov_weight, contexts
        )
        winners = self._draw_winners(means[0], stds[0], num_samples, rng)
        return winners, np.bincount(winners, minlength=means.shape[1]) / num_samples

    def _draw_winners(
        self, means: np.ndarray, stds: np.ndarray, num_samples: int, rng: np.random.Generator
    ) -> np.ndarray:
        """[S] the argmax of each of S posterior draws of the [C] candidates' scores."""
        noise = rng.standard_normal((num_samples, len(means)))
        return np.argmax(means + self.metadata.alpha * stds * noise, axis=1)

    def policy_id(self, settings: ServingSettings) -> str:
        if self.samples:
            return f"{self.metadata.agent}+thompson(samples={settings.thompson_samples})"
        return f"{self.metadata.agent}+{policy_id_suffix(settings)}"


class SavedModelPerArmScorer(PerArmScorer):
    """A greedy SavedModel's choice mixed with uniform exploration.

    Serves the neural agents, and any deterministic per-arm policy through
    `load_per_arm_saved_model`.
    """

    def __init__(self, metadata: PolicyMetadata, catalogue: ItemCatalogue, policy_dir: str) -> None:
        super().__init__(metadata, catalogue)
        greedy_dir = os.path.join(policy_dir, GREEDY_POLICY_DIR)
        self.own_epsilon = tf.io.gfile.exists(greedy_dir)
        if metadata.epsilon > 0.0 and not self.own_epsilon:
            raise ValueError(f"{policy_dir}: an epsilon-greedy policy without {GREEDY_POLICY_DIR}/")
        if metadata.stochastic and not self.own_epsilon:
            raise ValueError(
                f"{policy_dir}: {metadata.agent} exports a stochastic policy, so the probability "
                "of a served movie is unknown through its SavedModel; serve it with the numpy "
                "scorer"
            )
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
    metadata, catalogue = _read_version(policy_dir)
    if metadata.agent in agent_names.PER_ARM_LINEAR_AGENTS:
        scorer: PerArmScorer = LinearPerArmScorer(metadata, catalogue, policy_dir)
    else:
        scorer = SavedModelPerArmScorer(metadata, catalogue, policy_dir)
    scorer.users = _read_users(policy_dir, metadata)
    return scorer


def load_per_arm_saved_model(policy_dir: str) -> SavedModelPerArmScorer:
    """The reference path: every round through the version's SavedModel `action`.

    Raises:
      ValueError: the exported policy is stochastic (LinTS with alpha > 0).
    """
    scorer = SavedModelPerArmScorer(*_read_version(policy_dir), policy_dir)
    scorer.users = _read_users(policy_dir, scorer.metadata)
    return scorer


def _read_version(policy_dir: str) -> Tuple[PolicyMetadata, ItemCatalogue]:
    """The sidecar and catalogue of a per-arm version; raises ValueError if it is not one."""
    metadata = read_policy_metadata(policy_dir)
    if metadata.problem != PER_ARM:
        raise ValueError(f"{policy_dir}: problem {metadata.problem!r} is not {PER_ARM!r}")
    if metadata.agent not in agent_names.PER_ARM_AGENTS:
        raise ValueError(f"{policy_dir}: agent {metadata.agent!r} is not a per-arm agent")
    return metadata, ItemCatalogue.load(os.path.join(policy_dir, CATALOGUE_DIR))


def _read_users(policy_dir: str, metadata: PolicyMetadata) -> Optional[UserTable]:
    """The version's user table, or None; raises ValueError if its features do not fit."""
    users = UserTable.load(os.path.join(policy_dir, USER_TABLE_DIR))
    if users is not None and users.features.shape[1] != metadata.global_dim:
        raise ValueError(
            f"{policy_dir}: the user table has {users.features.shape[1]} features per user; "
            f"the policy expects {metadata.global_dim}"
        )
    return users
