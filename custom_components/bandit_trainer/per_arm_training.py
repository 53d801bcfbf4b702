"""One entry point from logged per-arm rows and settings to a trained per-arm agent.

The per-arm counterpart of `training.train_policy`: the agent report and the
benchmarks train through it, so what they measure is what the trainer builds.
"""

import dataclasses
import time
from typing import Any, Optional, Tuple

import numpy as np
import tensorflow as tf

from bandit_core import agent_names, per_arm_features
from bandit_core.per_arm_statistics import PerArmStatistics, per_arm_statistics
from custom_components.bandit_trainer import per_arm_agents
from custom_components.bandit_trainer.settings import TrainerSettings


@dataclasses.dataclass(frozen=True)
class PerArmTrainedPolicy:
    """A trained per-arm agent and what training cost.

    Attributes:
      settings: the agent's name and hyper-parameters.
      agent: the TF-Agents agent; `agent.policy` is what PolicySaver exports.
      statistics: the shared linear model's sums for the linear agents, else None.
      training_seconds: wall time of fitting, statistics or network.
      losses: [num_batches] the neural agents' loss per training batch, before
        its update; empty for the linear agents.
    """

    settings: TrainerSettings
    agent: Any
    statistics: Optional[PerArmStatistics]
    training_seconds: float
    losses: np.ndarray


def train_per_arm_policy(
    settings: TrainerSettings,
    global_features: np.ndarray,
    chosen_arm_features: np.ndarray,
    rewards: np.ndarray,
    num_candidates: int,
) -> PerArmTrainedPolicy:
    """Trains `settings.agent`, a per-arm agent, off-policy on logged rows.

    Args:
      settings: a per-arm agent name and its hyper-parameters; settings the
        agent does not use are ignored, as for the classic agents.
      global_features: [N, dg] each row's user.
      chosen_arm_features: [N, da] the served movie's features.
      rewards: [N] observed rewards.
      num_candidates: C, the candidates per round the policy chooses from.

    Raises:
      ValueError: the agent is not a per-arm agent or a hyper-parameter is invalid.
    """
    if settings.agent not in agent_names.PER_ARM_AGENTS:
        raise ValueError(
            f"{settings.agent!r} is not a per-arm agent; choose one of "
            f"{', '.join(agent_names.PER_ARM_AGENTS)}"
        )
    settings.validate()
    u = np.asarray(global_features, dtype=np.float32)
    v = np.asarray(chosen_arm_features, dtype=np.float32)
    r = np.asarray(rewards, dtype=np.float32)
    started = time.perf_counter()
    statistics = None
    losses = np.empty(0)
    if settings.agent in agent_names.PER_ARM_LINEAR_AGENTS:
        statistics = per_arm_statistics(per_arm_features.linear_contexts(settings.agent, u, v), r)
        agent = per_arm_agents.per_arm_linear_agent_from_statistics(
            settings.agent,
            statistics,
            u.shape[1],
            num_candidates,
            settings.alpha,
            settings.tikhonov_weight,
        )
    else:
        agent, losses = _train_neural(settings, u, v, r, num_candidates)
    return PerArmTrainedPolicy(
        settings, agent, statistics, time.perf_counter() - started, losses
    )


def _train_neural(
    settings: TrainerSettings,
    u: np.ndarray,
    v: np.ndarray,
    r: np.ndarray,
    num_candidates: int,
) -> Tuple[Any, np.ndarray]:
    """(trained agent, loss per batch)."""
    tf.random.set_seed(settings.seed)
    global_dim, arm_dim = u.shape[1], v.shape[1]
    batches = per_arm_agents.per_arm_batches(
        u, v, r, settings.batch_size, settings.epochs, settings.seed
    )
    if settings.agent == agent_names.PER_ARM_NEURAL_LINUCB:
        encoder = per_arm_agents.common_tower_network(
            global_dim, arm_dim, num_candidates, settings.layer_sizes, settings.encoding_dim
        )
        agent = per_arm_agents.per_arm_neural_linucb_agent(
            encoder,
            global_dim,
            arm_dim,
            num_candidates,
            settings.encoding_dim,
            settings.learning_rate,
            settings.alpha,
        )
        losses = per_arm_agents.train_per_arm_neural_linucb(agent, encoder, batches, u, v, r)
        return agent, losses
    if settings.agent == agent_names.DOT_PRODUCT_EPSILON_GREEDY:
        agent = per_arm_agents.dot_product_epsilon_greedy_agent(
            global_dim,
            arm_dim,
            num_candidates,
            settings.layer_sizes,
            settings.encoding_dim,
            settings.learning_rate,
            settings.epsilon,
        )
    else:
        agent = per_arm_agents.per_arm_neural_epsilon_greedy_agent(
            global_dim,
            arm_dim,
            num_candidates,
            settings.layer_sizes,
            settings.learning_rate,
            settings.epsilon,
        )
    return agent, per_arm_agents.train_per_arm_epsilon_greedy(agent, batches)
