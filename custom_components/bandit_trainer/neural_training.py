"""Off-policy training of the neural agents from logged rows with tf.data.

Logged rows are shuffled, repeated for some epochs and cut into large batches;
each batch is one step of a `tf.function`, so Python runs once per batch, not
once per row. NeuralLinUCB's LinUCB head, like the linear agents, is a sum of
per-arm statistics and is computed in one vectorised pass after its encoder is
trained. The training functions take any stream of batches and of row chunks:
in-memory columns (`logged_batches`, `array_chunks`) or a split's files
(`split_stream`).
"""

from typing import Iterable, Iterator, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.bandits.agents.neural_epsilon_greedy_agent import NeuralEpsilonGreedyAgent
from tf_agents.bandits.agents.neural_linucb_agent import NeuralLinUCBAgent
from tf_agents.networks import network
from tf_agents.policies import utils as policy_utilities
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory

from bandit_core.linear_statistics import arm_statistics, zero_statistics

# Rows encoded at a time for NeuralLinUCB's head: bounds the [rows, encoding] temporary.
_ENCODE_CHUNK = 65536

# One pass over logged rows as consecutive chunks of row-aligned columns.
RowChunks = Iterable[Tuple[np.ndarray, ...]]


def bandit_trajectory(
    observations: tf.Tensor, actions: tf.Tensor, rewards: tf.Tensor
) -> trajectory.Trajectory:
    """Single-step bandit episodes with outer dims [B, 1], as a replay buffer yields them.

    Args:
      observations: [B, d] contexts.
      actions: [B] logged actions.
      rewards: [B] observed rewards.
    """
    batch = tf.shape(actions)[0]

    def column(t: tf.Tensor) -> tf.Tensor:
        return tf.expand_dims(t, 1)

    return trajectory.Trajectory(
        step_type=column(tf.fill([batch], ts.StepType.FIRST)),
        observation=column(tf.cast(observations, tf.float32)),
        action=column(tf.cast(actions, tf.int32)),
        policy_info=policy_utilities.PolicyInfo(),
        next_step_type=column(tf.fill([batch], ts.StepType.LAST)),
        reward=column(tf.cast(rewards, tf.float32)),
        discount=column(tf.zeros([batch])),
    )


def logged_batches(
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    batch_size: int,
    epochs: int,
    seed: int,
) -> tf.data.Dataset:
    """`epochs` reshuffled passes over the logged rows (see `shuffled_batches`)."""
    return shuffled_batches(
        (
            np.asarray(observations, np.float32),
            np.asarray(actions, np.int32),
            np.asarray(rewards, np.float32),
        ),
        batch_size,
        epochs,
        seed,
    )


def shuffled_batches(
    columns: Sequence[np.ndarray], batch_size: int, epochs: int, seed: int
) -> tf.data.Dataset:
    """`epochs` reshuffled passes over equally long columns, a tuple of batches per element.

    The shuffle is one seeded permutation per epoch and each element of the
    dataset is a whole batch gathered from in-memory columns: per-row
    `shuffle().batch()` costs microseconds per row, which would dominate.
    """
    rng = np.random.default_rng(seed)
    num_rows = len(columns[0])
    order = tf.constant(np.concatenate([rng.permutation(num_rows) for _ in range(epochs)]))
    tensors = tuple(tf.constant(column) for column in columns)
    num_batches = -(-num_rows * epochs // batch_size)

    def gather(index: tf.Tensor):
        rows = order[index * batch_size : (index + 1) * batch_size]
        return tuple(tf.gather(column, rows) for column in tensors)

    return (
        tf.data.Dataset.range(num_batches)
        .map(gather, num_parallel_calls=tf.data.AUTOTUNE)
        .prefetch(tf.data.AUTOTUNE)
    )


def array_chunks(
    columns: Sequence[np.ndarray], chunk_rows: int = _ENCODE_CHUNK
) -> Iterator[Tuple[np.ndarray, ...]]:
    """Equally long in-memory columns as consecutive chunks of rows (see `RowChunks`)."""
    for start in range(0, len(columns[0]), chunk_rows):
        yield tuple(column[start : start + chunk_rows] for column in columns)


def _signature(observation_dim: int):
    return [
        tf.TensorSpec([None, observation_dim], tf.float32),
        tf.TensorSpec([None], tf.int32),
        tf.TensorSpec([None], tf.float32),
    ]


def train_neural_epsilon_greedy(
    agent: NeuralEpsilonGreedyAgent, batches: tf.data.Dataset, observation_dim: int
) -> np.ndarray:
    """Runs `agent.train` once per batch.

    Returns:
      [num_batches] each batch's loss, before its update.
    """

    @tf.function(input_signature=_signature(observation_dim))
    def train_step(x, a, r):
        return agent.train(bandit_trajectory(x, a, r)).loss

    return np.array([float(train_step(x, a, r)) for x, a, r in batches])


def train_neural_linucb(
    agent: NeuralLinUCBAgent,
    encoder: network.Network,
    batches: tf.data.Dataset,
    rows: RowChunks,
) -> np.ndarray:
    """Fits the encoder through the reward layer, then LinUCB on its encodings.

    The two phases are TF-Agents' own: `agent.train` first trains the encoder
    and a linear reward layer by regression on the logged reward, then
    accumulates per-arm A_a = sum z z^T and b_a = sum r z over encodings z. With
    a finite log the natural batch version is to encode every row with the
    final encoder and sum, chunk by chunk, which `arm_statistics` does; the
    policy then switches from the reward layer to LinUCB, as the agent's step
    counter would.

    Args:
      agent: from `agents.neural_linucb_agent(encoder, ...)`.
      encoder: the agent's encoding network.
      batches: (observations [b, d], actions [b], rewards [b]) per training step.
      rows: one pass over every logged row as (observations, actions, rewards)
        chunks.

    Returns:
      [num_batches] each batch's reward-layer regression loss, before its update.
    """
    observation_dim = agent.time_step_spec.observation.shape[-1]

    @tf.function(input_signature=_signature(observation_dim))
    def train_step(x, a, r):
        return agent.compute_loss_using_reward_layer(x, a, r, training=True).loss

    losses = np.array([float(train_step(x, a, r)) for x, a, r in batches])

    statistics = zero_statistics(agent.num_actions, agent.cov_matrix[0].shape[0])
    for x, a, r in rows:
        encoded = encoder(tf.cast(x, tf.float32))[0].numpy().astype(np.float64)
        statistics += arm_statistics(
            encoded, np.asarray(a), np.asarray(r, np.float32), agent.num_actions
        )
    for arm in range(agent.num_actions):
        agent.cov_matrix[arm].assign(statistics.cov_matrices[arm])
        agent.data_vector[arm].assign(statistics.data_vectors[arm])
        agent.num_samples[arm].assign(statistics.num_samples[arm])
    agent.actions_from_reward_layer.assign(False)
    return losses
