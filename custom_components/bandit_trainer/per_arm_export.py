"""Exports a trained per-arm policy as one self-contained version directory.

The directory holds what serving needs and nothing it must fetch elsewhere:
the PolicySaver SavedModel, the sidecar (`bandit_policy.json`, problem
"per_arm"), the item catalogue the policy recommends from and the table of
users it knows by id. An
epsilon-greedy agent's exported policy explores inside the graph, which hides
its greedy choice; its greedy policy is saved too, so serving can compute the
exact epsilon-greedy probability of every candidate.
"""

import dataclasses
import os
from typing import Any, Dict, Optional

from tf_agents.bandits.specs import utils as bandit_spec_utils
from tf_agents.policies import epsilon_greedy_policy, policy_saver

from bandit_core import agent_names
from bandit_core.item_catalogue import CATALOGUE_DIR, ItemCatalogue
from bandit_core.policy_metadata import (
    GREEDY_POLICY_DIR,
    PER_ARM,
    PolicyMetadata,
    write_policy_metadata,
)
from bandit_core.user_table import USER_TABLE_DIR, UserTable
from custom_components.bandit_trainer.per_arm_training import PerArmTrainedPolicy

_EPSILON_GREEDY_AGENTS = (
    agent_names.PER_ARM_NEURAL_EPSILON_GREEDY,
    agent_names.DOT_PRODUCT_EPSILON_GREEDY,
)


def per_arm_policy_metadata(trained: PerArmTrainedPolicy, arm_dim: int) -> PolicyMetadata:
    """The sidecar of a per-arm policy whose movies have `arm_dim` features."""
    settings = trained.settings
    global_dim, _ = bandit_spec_utils.get_context_dims_from_spec(
        trained.agent.time_step_spec.observation, True
    )
    num_candidates = int(trained.agent.action_spec.maximum) + 1
    linear = settings.agent in agent_names.PER_ARM_LINEAR_AGENTS
    epsilon = settings.epsilon if settings.agent in _EPSILON_GREEDY_AGENTS else 0.0
    samples = settings.agent in (agent_names.PER_ARM_LINTS, agent_names.INTERACTION_LINTS)
    return PolicyMetadata(
        agent=settings.agent,
        observation_dim=global_dim,
        num_actions=num_candidates,
        alpha=0.0 if settings.agent in _EPSILON_GREEDY_AGENTS else settings.alpha,
        tikhonov_weight=settings.tikhonov_weight if linear else 0.0,
        stochastic=(samples and settings.alpha > 0.0) or epsilon > 0.0,
        hyperparameters=_hyperparameters(trained),
        problem=PER_ARM,
        global_dim=global_dim,
        arm_dim=arm_dim,
        num_candidates=num_candidates,
        epsilon=epsilon,
    )


def save_per_arm_policy(
    trained: PerArmTrainedPolicy,
    catalogue: ItemCatalogue,
    policy_dir: str,
    users: Optional[UserTable] = None,
) -> PolicyMetadata:
    """Writes SavedModel, sidecar, catalogue and user table to `policy_dir`; returns the sidecar.

    Args:
      trained: from `per_arm_training.train_per_arm_policy`.
      catalogue: the movies to recommend, with the features the policy was
        trained on.
      policy_dir: a new version directory (local or gs://).
      users: the users the training rows named, with their latest features,
        so requests may name a user by id alone; None writes no table.

    Raises:
      ValueError: the catalogue's features do not have the policy's arm dimension.
    """
    global_dim, policy_arm_dim = bandit_spec_utils.get_context_dims_from_spec(
        trained.agent.time_step_spec.observation, True
    )
    interaction = trained.settings.agent in agent_names.INTERACTION_AGENTS
    expected = catalogue.feature_dim * global_dim if interaction else catalogue.feature_dim
    if expected != policy_arm_dim:
        raise ValueError(
            f"the catalogue's {catalogue.feature_dim} movie features give {trained.settings.agent} "
            f"arm features of dimension {expected}; the policy observes {policy_arm_dim}"
        )
    policy = trained.agent.policy
    policy_saver.PolicySaver(policy, batch_size=None).save(policy_dir)
    if isinstance(policy, epsilon_greedy_policy.EpsilonGreedyPolicy):
        policy_saver.PolicySaver(policy.wrapped_policy, batch_size=None).save(
            os.path.join(policy_dir, GREEDY_POLICY_DIR)
        )
    catalogue.save(os.path.join(policy_dir, CATALOGUE_DIR))
    if users is not None:
        users.save(os.path.join(policy_dir, USER_TABLE_DIR))
    metadata = per_arm_policy_metadata(trained, catalogue.feature_dim)
    write_policy_metadata(policy_dir, metadata)
    return metadata


def _hyperparameters(trained: PerArmTrainedPolicy) -> Dict[str, Any]:
    """The settings the agent uses: its classic counterpart's, plus the two-tower encoding."""
    agent = trained.settings.agent
    if agent in agent_names.PER_ARM_LINEAR_AGENTS:
        counterpart = agent_names.LINUCB
    elif agent in _EPSILON_GREEDY_AGENTS:
        counterpart = agent_names.NEURAL_EPSILON_GREEDY
    else:
        counterpart = agent_names.NEURAL_LINUCB
    values = dataclasses.replace(trained.settings, agent=counterpart).hyperparameters()
    if agent == agent_names.DOT_PRODUCT_EPSILON_GREEDY:
        values["encoding_dim"] = trained.settings.encoding_dim
    return values
