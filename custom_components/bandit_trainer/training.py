"""From logged rows and settings to a trained, exportable policy, in memory or streamed.

The agent report and the benchmarks train through `train_policy` on rows in
memory; the executor's Beam path (`split_training`) through
`policy_from_statistics` and `train_policy_on_stream`. All three build the
agent with the same code, so what the reports measure is what the pipeline ships.
"""

import dataclasses
import time
from typing import Any, Optional, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.policies import policy_saver, tf_policy

from bandit_core import agent_names, linear_policy
from bandit_core.linear_statistics import LinearArmStatistics, arm_statistics
from bandit_core.policy_metadata import PolicyMetadata, write_policy_metadata
from custom_components.bandit_trainer import agents, neural_training
from custom_components.bandit_trainer.settings import TrainerSettings

# NeuralLinUCB's ridge is fixed inside TF-Agents.
_NEURAL_LINUCB_RIDGE = 1.0


@dataclasses.dataclass(frozen=True)
class TrainedPolicy:
    """A trained agent's policy, its sidecar, what training cost and what it saw.

    Attributes:
      agent: the TF-Agents agent.
      policy: `agent.policy`, what PolicySaver exports.
      metadata: the policy's sidecar.
      training_seconds: wall time of fitting.
      rows_per_arm: [K] logged rows per arm.
      statistics: the linear agents' per-arm sums, else None.
      losses: [num_batches] the neural agents' loss per training batch, before
        its update; empty for the linear agents.
    """

    agent: Any
    policy: tf_policy.TFPolicy
    metadata: PolicyMetadata
    training_seconds: float
    rows_per_arm: np.ndarray
    statistics: Optional[LinearArmStatistics]
    losses: np.ndarray


def train_policy(
    settings: TrainerSettings,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    num_actions: int,
) -> TrainedPolicy:
    """Trains `settings.agent` off-policy on logged rows held in memory.

    Args:
      settings: validated agent choice and hyper-parameters.
      observations: [N, d] logged contexts.
      actions: [N] logged actions in [0, num_actions).
      rewards: [N] logged rewards.
      num_actions: K.
    """
    settings.validate()
    started = time.perf_counter()
    if settings.agent in agent_names.LINEAR_AGENTS:
        statistics = arm_statistics(observations, actions, rewards, num_actions)
        return _linear_policy(settings, statistics, started)
    batches = neural_training.logged_batches(
        observations, actions, rewards, settings.batch_size, settings.epochs, settings.seed
    )
    rows = neural_training.array_chunks((observations, actions, rewards))
    rows_per_arm = np.bincount(actions, minlength=num_actions).astype(np.float64)
    return _neural_policy(
        settings, batches, rows, observations.shape[1], num_actions, rows_per_arm, started
    )


def policy_from_statistics(
    settings: TrainerSettings, statistics: LinearArmStatistics
) -> TrainedPolicy:
    """A LinUCB or LinTS policy from per-arm sums over the logged rows, however summed.

    The Beam trainer sums them over a split's batches
    (`statistics_pipeline.classic_sums_fn`); `train_policy` in one pass.
    """
    settings.validate()
    return _linear_policy(settings, statistics, time.perf_counter())


def train_policy_on_stream(
    settings: TrainerSettings,
    batches: tf.data.Dataset,
    rows: neural_training.RowChunks,
    observation_dim: int,
    rows_per_arm: np.ndarray,
) -> TrainedPolicy:
    """Trains a neural agent on streamed rows, e.g. `split_stream` over a split's files.

    Args:
      settings: a neural agent and its hyper-parameters.
      batches: (observations [b, d], actions [b], rewards [b]) per training
        step, the epochs included.
      rows: one pass over every row as (observations, actions, rewards)
        chunks, which NeuralLinUCB's head sums over; other agents ignore it.
      observation_dim: d.
      rows_per_arm: [K] logged rows per arm.
    """
    settings.validate()
    if settings.agent not in agent_names.NEURAL_AGENTS:
        raise ValueError(
            f"{settings.agent!r} is not a neural agent; stream training is for "
            f"{', '.join(agent_names.NEURAL_AGENTS)}: build linear agents from their statistics "
            "(policy_from_statistics)"
        )
    return _neural_policy(
        settings,
        batches,
        rows,
        observation_dim,
        len(rows_per_arm),
        rows_per_arm,
        time.perf_counter(),
    )


def _linear_policy(
    settings: TrainerSettings, statistics: LinearArmStatistics, started: float
) -> TrainedPolicy:
    """A linear agent built from its statistics; `started` is when fitting began."""
    agent = agents.linear_agent_from_statistics(
        settings.agent, statistics, settings.alpha, settings.tikhonov_weight
    )
    num_actions, observation_dim = statistics.data_vectors.shape
    return TrainedPolicy(
        agent=agent,
        policy=agent.policy,
        metadata=policy_metadata(settings, observation_dim, num_actions),
        training_seconds=time.perf_counter() - started,
        rows_per_arm=statistics.num_samples,
        statistics=statistics,
        losses=np.empty(0),
    )


def _neural_policy(
    settings: TrainerSettings,
    batches: tf.data.Dataset,
    rows: neural_training.RowChunks,
    observation_dim: int,
    num_actions: int,
    rows_per_arm: np.ndarray,
    started: float,
) -> TrainedPolicy:
    """A neural agent trained on `batches`; `started` is when fitting began."""
    agent, losses = _train_neural(settings, batches, rows, observation_dim, num_actions)
    return TrainedPolicy(
        agent=agent,
        policy=agent.policy,
        metadata=policy_metadata(settings, observation_dim, num_actions),
        training_seconds=time.perf_counter() - started,
        rows_per_arm=rows_per_arm,
        statistics=None,
        losses=losses,
    )


def _train_neural(
    settings: TrainerSettings,
    batches: tf.data.Dataset,
    rows: neural_training.RowChunks,
    observation_dim: int,
    num_actions: int,
) -> Tuple[Any, np.ndarray]:
    """(trained agent, loss per batch)."""
    tf.random.set_seed(settings.seed)
    if settings.agent == agent_names.NEURAL_EPSILON_GREEDY:
        agent = agents.neural_epsilon_greedy_agent(
            observation_dim,
            num_actions,
            settings.layer_sizes,
            settings.learning_rate,
            settings.epsilon,
        )
        return agent, neural_training.train_neural_epsilon_greedy(agent, batches, observation_dim)
    encoder = agents.mlp_encoder(observation_dim, settings.layer_sizes, settings.encoding_dim)
    agent = agents.neural_linucb_agent(
        encoder,
        observation_dim,
        num_actions,
        settings.encoding_dim,
        settings.learning_rate,
        settings.alpha,
    )
    return agent, neural_training.train_neural_linucb(agent, encoder, batches, rows)


def policy_metadata(
    settings: TrainerSettings, observation_dim: int, num_actions: int
) -> PolicyMetadata:
    """The sidecar: 0 for alpha/tikhonov_weight where an agent has no such setting."""
    uses_alpha = settings.agent != agent_names.NEURAL_EPSILON_GREEDY
    if settings.agent in agent_names.LINEAR_AGENTS:
        ridge = settings.tikhonov_weight
    elif settings.agent == agent_names.NEURAL_LINUCB:
        ridge = _NEURAL_LINUCB_RIDGE
    else:
        ridge = 0.0
    samples_lints = (
        settings.agent == agent_names.LINTS and settings.alpha >= linear_policy.GREEDY_ALPHA
    )
    explores = settings.agent == agent_names.NEURAL_EPSILON_GREEDY and settings.epsilon > 0.0
    stochastic = samples_lints or explores
    return PolicyMetadata(
        agent=settings.agent,
        observation_dim=observation_dim,
        num_actions=num_actions,
        alpha=settings.alpha if uses_alpha else 0.0,
        tikhonov_weight=ridge,
        stochastic=stochastic,
        hyperparameters=settings.hyperparameters(),
    )


def save_policy(trained: TrainedPolicy, policy_dir: str) -> None:
    """PolicySaver SavedModel plus the bandit_policy.json sidecar."""
    policy_saver.PolicySaver(trained.policy, batch_size=None).save(policy_dir)
    write_policy_metadata(policy_dir, trained.metadata)
