"""TF-Agents bandit agents built from the trainer's settings.

Linear agents (LinUCB, LinTS) are built directly in their trained state from
per-arm sufficient statistics; neural agents (NeuralEpsilonGreedy,
NeuralLinUCB) are built untrained here and trained by `neural_training`.
"""

from typing import Sequence

import numpy as np
import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent, linear_bandit_agent
from tf_agents.bandits.agents import linear_thompson_sampling_agent as lin_ts_agent
from tf_agents.bandits.agents import neural_epsilon_greedy_agent as neg_agent
from tf_agents.bandits.agents import neural_linucb_agent as neural_lin_agent
from tf_agents.networks import q_network
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from bandit_core.agent_names import LINEAR_AGENTS, LINTS, LINUCB
from bandit_core.linear_statistics import LinearArmStatistics

_LINEAR_AGENT_CLASSES = {
    LINUCB: lin_ucb_agent.LinearUCBAgent,
    LINTS: lin_ts_agent.LinearThompsonSamplingAgent,
}
# TF-Agents' conjugate gradient stops once the residual norm is below this.
_CG_TOLERANCE = 1e-10


def bandit_specs(observation_dim: int, num_actions: int):
    """(time_step_spec, action_spec) of the MovieLens bandit as the policy sees it."""
    observation_spec = tf.TensorSpec([observation_dim], tf.float32, name="observation")
    action_spec = tensor_spec.BoundedTensorSpec(
        shape=(), dtype=tf.int32, minimum=0, maximum=num_actions - 1, name="action"
    )
    return ts.time_step_spec(observation_spec), action_spec


class StatisticsVariableCollection(linear_bandit_agent.LinearBanditVariableCollection):
    """TF-Agents' linear-agent variables, created holding given statistics.

    The same variables, names, shapes and dtype as
    `LinearBanditVariableCollection(context_dim=d, num_models=K)` (without
    eigendecomposition), but each starts at its final value instead of being
    created as zeros and assigned: variable creation dominates the cost of
    loading statistics into an agent.
    """

    def __init__(self, statistics: LinearArmStatistics, tikhonov_weight: float):
        tf.Module.__init__(self)
        cov = statistics.cov_matrices.astype(np.float32)
        data = statistics.data_vectors.astype(np.float32)
        self.theta = tf.Variable(conjugate_gradient_theta(cov, data, tikhonov_weight), name="theta")
        self.cov_matrix_list = [tf.Variable(c, name=f"a_{k}") for k, c in enumerate(cov)]
        self.data_vector_list = [tf.Variable(b, name=f"b_{k}") for k, b in enumerate(data)]
        self.num_samples_list = [
            tf.Variable(np.float32(n), name=f"num_samples_{k}")
            for k, n in enumerate(statistics.num_samples)
        ]
        empty = np.zeros([0], np.float32)
        self.eig_matrix_list = [tf.Variable(empty, name=f"eig_matrix{k}") for k in range(len(cov))]
        self.eig_vals_list = [tf.Variable(empty, name=f"eig_vals{k}") for k in range(len(cov))]


def linear_agent_from_statistics(
    agent: str, statistics: LinearArmStatistics, alpha: float, tikhonov_weight: float
) -> linear_bandit_agent.LinearBanditAgent:
    """A LinUCB or LinTS agent whose state is exactly the given per-arm sums.

    Both agents keep the same variables (A_a, b_a, n_a and theta); they differ
    only in how the policy explores. The variables are handed to TF-Agents
    through its public `variable_collection` argument, so the policy acts as if
    `agent.train` had seen every row behind the statistics.
    """
    if agent not in _LINEAR_AGENT_CLASSES:
        raise ValueError(f"{agent!r} is not a linear agent; choose one of {LINEAR_AGENTS}")
    num_actions, observation_dim = statistics.data_vectors.shape
    time_step_spec, action_spec = bandit_specs(observation_dim, num_actions)
    built = _LINEAR_AGENT_CLASSES[agent](
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        variable_collection=StatisticsVariableCollection(statistics, tikhonov_weight),
        alpha=alpha,
        tikhonov_weight=tikhonov_weight,
        dtype=tf.float32,
    )
    built.initialize()
    built.train_step_counter.assign(int(statistics.num_samples.sum()))
    return built


def linucb_agent_from_statistics(
    statistics: LinearArmStatistics, alpha: float, tikhonov_weight: float
) -> lin_ucb_agent.LinearUCBAgent:
    """A LinUCB agent whose state is exactly the given per-arm sums."""
    return linear_agent_from_statistics(LINUCB, statistics, alpha, tikhonov_weight)


def lints_agent_from_statistics(
    statistics: LinearArmStatistics, alpha: float, tikhonov_weight: float
) -> lin_ts_agent.LinearThompsonSamplingAgent:
    """A Linear Thompson Sampling agent whose state is exactly the given per-arm sums."""
    return linear_agent_from_statistics(LINTS, statistics, alpha, tikhonov_weight)


def conjugate_gradient_theta(
    cov_matrices: np.ndarray, data_vectors: np.ndarray, tikhonov_weight: float
) -> np.ndarray:
    """TF-Agents' `linalg.conjugate_gradient` for every arm, batched, in float32.

    Same iteration, masks and stopping rule as the TF-Agents solver (at most d
    steps, an arm stops once its residual norm is <= 1e-10), so the result
    matches `LinearBanditAgent.theta` to float32 round-off.

    Args:
      cov_matrices: [K, d, d] per-arm A_a.
      data_vectors: [K, d] per-arm b_a.
      tikhonov_weight: the ridge added to each A_a's diagonal.

    Returns:
      [K, d] float32 theta.
    """
    a = np.asarray(cov_matrices, np.float32)
    d = a.shape[-1]
    a = a + np.float32(tikhonov_weight) * np.eye(d, dtype=np.float32)
    b = np.asarray(data_vectors, np.float32)
    x = np.zeros_like(b)
    r = b.copy()
    p = r.copy()
    rs_old = np.einsum("kd,kd->k", r, r)
    rs_new = rs_old.copy()
    running = np.ones(len(b), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        for _ in range(d):
            running &= np.sqrt(rs_new) > _CG_TOLERANCE
            if not running.any():
                break
            active = (running & (rs_old > _CG_TOLERANCE))[:, None]
            a_p = np.einsum("kij,kj->ki", a, p)
            step = (rs_old / np.einsum("kd,kd->k", p, a_p))[:, None]
            x = np.where(active, x + p * step, x)
            r = np.where(active, r - a_p * step, r)
            rs_new = np.where(active[:, 0], np.einsum("kd,kd->k", r, r), rs_new)
            p = np.where(active, r + p * (rs_new / rs_old)[:, None], p)
            rs_old = np.where(active[:, 0], rs_new, rs_old)
    return x


def neural_epsilon_greedy_agent(
    observation_dim: int,
    num_actions: int,
    hidden_layers: Sequence[int],
    learning_rate: float,
    epsilon: float,
) -> neg_agent.NeuralEpsilonGreedyAgent:
    """An untrained NeuralEpsilonGreedy agent with a QNetwork reward model.

    The network maps an observation to K predicted rewards, as in TF-Agents'
    MovieLens example; the policy is greedy on them with probability
    1 - epsilon and uniform otherwise.
    """
    time_step_spec, action_spec = bandit_specs(observation_dim, num_actions)
    network = q_network.QNetwork(
        input_tensor_spec=time_step_spec.observation,
        action_spec=action_spec,
        fc_layer_params=tuple(hidden_layers),
    )
    return neg_agent.NeuralEpsilonGreedyAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        reward_network=network,
        optimizer=tf.compat.v1.train.AdamOptimizer(learning_rate=learning_rate),
        epsilon=epsilon,
        train_step_counter=tf.Variable(0, dtype=tf.int64, name="train_step"),
    )


def mlp_encoder(
    observation_dim: int, hidden_layers: Sequence[int], encoding_dim: int
) -> q_network.QNetwork:
    """An MLP from observations to `encoding_dim` features, its last layer linear.

    A QNetwork whose "actions" are the encoding's coordinates, as TF-Agents'
    NeuralLinUCB examples build their encoders.
    """
    time_step_spec, _ = bandit_specs(observation_dim, 1)
    return q_network.QNetwork(
        input_tensor_spec=time_step_spec.observation,
        action_spec=tensor_spec.BoundedTensorSpec(
            shape=(), dtype=tf.int32, minimum=0, maximum=encoding_dim - 1
        ),
        fc_layer_params=tuple(hidden_layers),
    )


def neural_linucb_agent(
    encoder: q_network.QNetwork,
    observation_dim: int,
    num_actions: int,
    encoding_dim: int,
    learning_rate: float,
    alpha: float,
) -> neural_lin_agent.NeuralLinUCBAgent:
    """An untrained NeuralLinUCB agent: LinUCB on the output of `encoder`.

    TF-Agents fixes the LinUCB ridge at 1. Training switches the policy from
    the reward layer to LinUCB explicitly (see `neural_training`), so the
    agent's own step-count switch is unused.
    """
    time_step_spec, action_spec = bandit_specs(observation_dim, num_actions)
    return neural_lin_agent.NeuralLinUCBAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        encoding_network=encoder,
        encoding_network_num_train_steps=0,
        encoding_dim=encoding_dim,
        optimizer=tf.compat.v1.train.AdamOptimizer(learning_rate=learning_rate),
        alpha=alpha,
        dtype=tf.float64,
    )
