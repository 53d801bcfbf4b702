"""From logged per-arm rows and settings to a trained per-arm agent, in memory or streamed.

The per-arm counterpart of `training`: the agent report and the benchmarks
train through `train_per_arm_policy` on rows in memory, the executor's Beam
path (`split_training`) through `per_arm_policy_from_statistics` and
`train_per_arm_policy_on_stream`, all with the same agent-building code, so
what the reports measure is what the trainer builds.
"""

import dataclasses
import time
from typing import Any, Optional, Sequence

import numpy as np
import tensorflow as tf

from bandit_core import agent_names, per_arm_features
from bandit_core.per_arm_statistics import PerArmStatistics, per_arm_statistics
from custom_components.bandit_trainer import neural_training, per_arm_agents
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
    """Trains `settings.agent`, a per-arm agent, off-policy on logged rows held in memory.

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
    _require_agent(settings, agent_names.PER_ARM_AGENTS, "per-arm")
    u = np.asarray(global_features, dtype=np.float32)
    v = np.asarray(chosen_arm_features, dtype=np.float32)
    r = np.asarray(rewards, dtype=np.float32)
    started = time.perf_counter()
    if settings.agent in agent_names.PER_ARM_LINEAR_AGENTS:
        statistics = per_arm_statistics(per_arm_features.linear_contexts(settings.agent, u, v), r)
        return _linear_policy(settings, statistics, u.shape[1], num_candidates, started)
    batches = per_arm_agents.per_arm_batches(
        u, v, r, settings.batch_size, settings.epochs, settings.seed
    )
    rows = neural_training.array_chunks((u, v, r))
    return _neural_policy(
        settings, batches, rows, u.shape[1], v.shape[1], num_candidates, started
    )


def per_arm_policy_from_statistics(
    settings: TrainerSettings, statistics: PerArmStatistics, global_dim: int, num_candidates: int
) -> PerArmTrainedPolicy:
    """A per-arm linear agent from its shared model's sums, however they were summed.

    The Beam trainer sums them over a split's batches
    (`statistics_pipeline.per_arm_sums_fn`); `train_per_arm_policy` in one pass.

    Args:
      settings: a per-arm linear agent and its hyper-parameters.
      statistics: sums over the agent's `per_arm_features.linear_contexts`.
      global_dim: dg.
      num_candidates: C.
    """
    _require_agent(settings, agent_names.PER_ARM_LINEAR_AGENTS, "per-arm linear")
    return _linear_policy(
        settings, statistics, global_dim, num_candidates, time.perf_counter()
    )


def train_per_arm_policy_on_stream(
    settings: TrainerSettings,
    batches: tf.data.Dataset,
    rows: neural_training.RowChunks,
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
) -> PerArmTrainedPolicy:
    """Trains a per-arm neural agent on streamed rows, e.g. `split_stream` over a split's files.

    Args:
      settings: a per-arm neural agent and its hyper-parameters.
      batches: (users [b, dg], served movies' features [b, da], rewards [b])
        per training step, the epochs included.
      rows: one pass over every row as chunks of the same three columns, which
        PerArmNeuralLinUCB's head sums over; other agents ignore it.
      global_dim: dg.
      arm_dim: da.
      num_candidates: C.
    """
    _require_agent(settings, agent_names.PER_ARM_NEURAL_AGENTS, "per-arm neural")
    return _neural_policy(
        settings, batches, rows, global_dim, arm_dim, num_candidates, time.perf_counter()
    )


def _require_agent(settings: TrainerSettings, agents: Sequence[str], kind: str) -> None:
    """Raises ValueError unless `settings` are valid and name one of `agents`."""
    if settings.agent not in agents:
        raise ValueError(
            f"{settings.agent!r} is not a {kind} agent; choose one of {', '.join(agents)}"
        )
    settings.validate()


def _linear_policy(
    settings: TrainerSettings,
    statistics: PerArmStatistics,
    global_dim: int,
    num_candidates: int,
    started: float,
) -> PerArmTrainedPolicy:
    """A per-arm linear agent built from its statistics; `started` is when fitting began."""
    agent = per_arm_agents.per_arm_linear_agent_from_statistics(
        settings.agent,
        statistics,
        global_dim,
        num_candidates,
        settings.alpha,
        settings.tikhonov_weight,
    )
    return PerArmTrainedPolicy(
        settings, agent, statistics, time.perf_counter() - started, np.empty(0)
    )


def _neural_policy(
    settings: TrainerSettings,
    batches: tf.data.Dataset,
    rows: neural_training.RowChunks,
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    started: float,
) -> PerArmTrainedPolicy:
    """A per-arm neural agent trained on `batches`; `started` is when fitting began."""
    tf.random.set_seed(settings.seed)
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
        losses = per_arm_agents.train_per_arm_neural_linucb(agent, encoder, batches, rows)
    else:
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
        losses = per_arm_agents.train_per_arm_epsilon_greedy(agent, batches)
    return PerArmTrainedPolicy(
        settings, agent, None, time.perf_counter() - started, losses
    )
