"""TF-Agents' per-arm bandit agents, trained off-policy from logged arrays.

Each round a user (global features, dimension dg) meets C candidate movies
(per-arm features, dimension da each); a logged row holds the user, the chosen
candidate's features and the reward. TF-Agents' per-arm agents train on
trajectories whose observation holds the global features only and whose
`policy_info.chosen_arm_features` holds the chosen arm's features (see
`per_arm_trajectory`); the action is irrelevant, since the agents replace it by
zeros and train one reward model shared by all arms.

Linear agents (PerArmLinUCB, PerArmLinTS and their Interaction variants, which
observe the outer product of user and movie per candidate) are built directly
in their trained state from `PerArmStatistics`. Neural agents
(PerArmNeuralEpsilonGreedy and PerArmNeuralLinUCB on TF-Agents' common-tower
network, DotProductEpsilonGreedy on its two-tower dot-product network) are
built untrained and trained batch by batch with TF-Agents' own training code.
"""

from typing import Callable, Sequence, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent, linear_bandit_agent
from tf_agents.bandits.agents import linear_thompson_sampling_agent as lin_ts_agent
from tf_agents.bandits.agents import neural_epsilon_greedy_agent as neg_agent
from tf_agents.bandits.agents import neural_linucb_agent as neural_lin_agent
from tf_agents.bandits.agents import utils as bandit_agent_utils
from tf_agents.bandits.networks import global_and_arm_feature_network as arm_networks
from tf_agents.bandits.specs import utils as bandit_spec_utils
from tf_agents.networks import network
from tf_agents.policies import utils as policy_utilities
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts
from tf_agents.trajectories import trajectory
from tf_agents.typing import types

from bandit_core import agent_names, per_arm_features
from bandit_core.per_arm_statistics import (
    PerArmStatistics,
    per_arm_statistics,
    zero_per_arm_statistics,
)
from custom_components.bandit_trainer import neural_training
from custom_components.bandit_trainer.agents import StatisticsVariableCollection

_PER_ARM_LINEAR_AGENT_CLASSES = {
    agent_names.PER_ARM_LINUCB: lin_ucb_agent.LinearUCBAgent,
    agent_names.INTERACTION_LINUCB: lin_ucb_agent.LinearUCBAgent,
    agent_names.PER_ARM_LINTS: lin_ts_agent.LinearThompsonSamplingAgent,
    agent_names.INTERACTION_LINTS: lin_ts_agent.LinearThompsonSamplingAgent,
}
# Logged rows turned into contexts at a time: bounds the temporaries.
_BLOCK_ROWS = 65536


def per_arm_specs(
    global_dim: int, arm_dim: int, num_candidates: int
) -> Tuple[ts.TimeStep, tensor_spec.BoundedTensorSpec]:
    """(time_step_spec, action_spec) of a round with `num_candidates` candidates.

    Args:
      global_dim: dg, the dimension of the global (user) features.
      arm_dim: the dimension of each candidate's per-arm features as the
        policy observes them.
      num_candidates: C, the candidates per round; the action is an index in
        [0, C).
    """
    observation_spec = bandit_spec_utils.create_per_arm_observation_spec(
        global_dim, arm_dim, num_candidates
    )
    action_spec = tensor_spec.BoundedTensorSpec(
        shape=(), dtype=tf.int32, minimum=0, maximum=num_candidates - 1, name="action"
    )
    return ts.time_step_spec(observation_spec), action_spec


# --- linear agents ------------------------------------------------------------------------------


def per_arm_linear_agent_from_statistics(
    agent: str,
    statistics: PerArmStatistics,
    global_dim: int,
    num_candidates: int,
    alpha: float,
    tikhonov_weight: float,
) -> linear_bandit_agent.LinearBanditAgent:
    """A per-arm LinUCB or LinTS agent whose state is exactly the given sums.

    The agent has TF-Agents' per-arm variables (one model: a_0, b_0,
    num_samples_0 and theta of shape [1, d]) and no bias feature, so its
    contexts are exactly `per_arm_features.linear_contexts`; a bias would be
    the same for every candidate of a round and could not change a greedy
    choice.

    Args:
      agent: one of `agent_names.PER_ARM_LINEAR_AGENTS`.
      statistics: the sums over the chosen arms' contexts, d = dg + da'.
      global_dim: dg; the per-arm features the policy observes have
        dimension da' = d - dg.
      num_candidates: C, the candidates per round.
      alpha: exploration width.
      tikhonov_weight: ridge added to A's diagonal.
    """
    if agent not in _PER_ARM_LINEAR_AGENT_CLASSES:
        raise ValueError(
            f"{agent!r} is not a per-arm linear agent; choose one of "
            f"{agent_names.PER_ARM_LINEAR_AGENTS}"
        )
    arm_dim = statistics.context_dim - global_dim
    if arm_dim < 1:
        raise ValueError(
            f"statistics of dimension {statistics.context_dim} leave no per-arm features after "
            f"{global_dim} global ones"
        )
    time_step_spec, action_spec = per_arm_specs(global_dim, arm_dim, num_candidates)
    built = _PER_ARM_LINEAR_AGENT_CLASSES[agent](
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        variable_collection=StatisticsVariableCollection(
            statistics.as_model_statistics(), tikhonov_weight
        ),
        alpha=alpha,
        tikhonov_weight=tikhonov_weight,
        accepts_per_arm_features=True,
        dtype=tf.float32,
    )
    built.initialize()
    built.train_step_counter.assign(int(statistics.num_samples))
    return built


def train_per_arm_linear_agent(
    agent: str,
    global_features: np.ndarray,
    chosen_arm_features: np.ndarray,
    rewards: np.ndarray,
    num_candidates: int,
    alpha: float,
    tikhonov_weight: float,
) -> linear_bandit_agent.LinearBanditAgent:
    """A per-arm linear agent trained off-policy on logged rows.

    The chosen arms' contexts (`per_arm_features.linear_contexts`) are built
    and summed block by block, so the [N, d] contexts never exist at once.

    Args:
      agent: one of `agent_names.PER_ARM_LINEAR_AGENTS`.
      global_features: [N, dg] the user of each row.
      chosen_arm_features: [N, da] the movie features of each row's chosen
        candidate.
      rewards: [N] observed rewards.
      num_candidates: C, the candidates per round the policy will choose from.
      alpha: exploration width.
      tikhonov_weight: ridge added to A's diagonal.
    """
    context_dim = per_arm_features.linear_contexts(
        agent, global_features[:0], chosen_arm_features[:0]
    ).shape[-1]
    statistics = zero_per_arm_statistics(context_dim)
    for start in range(0, len(rewards), _BLOCK_ROWS):
        rows = slice(start, start + _BLOCK_ROWS)
        contexts = per_arm_features.linear_contexts(
            agent, global_features[rows], chosen_arm_features[rows]
        )
        statistics += per_arm_statistics(contexts, rewards[rows])
    return per_arm_linear_agent_from_statistics(
        agent, statistics, np.shape(global_features)[1], num_candidates, alpha, tikhonov_weight
    )


# --- neural agents ------------------------------------------------------------------------------


def common_tower_network(
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    hidden_layers: Sequence[int],
    output_dim: int = 1,
) -> network.Network:
    """TF-Agents' common-tower network over a round's user and candidates.

    A global tower and an arm tower, each of `hidden_layers`, feed their
    concatenated outputs to a common tower of `hidden_layers`: with
    `output_dim = 1` it predicts one reward per candidate ([B, C]), otherwise
    it encodes each candidate into `output_dim` features ([B, C, output_dim]).

    Args:
      global_dim: dg.
      arm_dim: da, the dimension of each candidate's features.
      num_candidates: C.
      hidden_layers: units of each tower's hidden layers.
      output_dim: 1 for rewards, or an encoding dimension >= 2.
    """
    observation_spec = bandit_spec_utils.create_per_arm_observation_spec(
        global_dim, arm_dim, num_candidates
    )
    layers = tuple(hidden_layers)
    return arm_networks.create_feed_forward_common_tower_network(
        observation_spec, layers, layers, layers, output_dim
    )


def per_arm_neural_epsilon_greedy_agent(
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    hidden_layers: Sequence[int],
    learning_rate: float,
    epsilon: float,
) -> neg_agent.NeuralEpsilonGreedyAgent:
    """An untrained per-arm NeuralEpsilonGreedy agent on a common-tower reward network.

    Args:
      global_dim: dg.
      arm_dim: da.
      num_candidates: C.
      hidden_layers: units of each tower's hidden layers.
      learning_rate: Adam step size.
      epsilon: probability of a uniformly random candidate.
    """
    return _epsilon_greedy_agent(
        common_tower_network(global_dim, arm_dim, num_candidates, hidden_layers),
        global_dim,
        arm_dim,
        num_candidates,
        learning_rate,
        epsilon,
    )


def dot_product_epsilon_greedy_agent(
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    hidden_layers: Sequence[int],
    encoding_dim: int,
    learning_rate: float,
    epsilon: float,
    activation_fn: Callable[[types.Tensor], types.Tensor] = tf.keras.activations.linear,
) -> neg_agent.NeuralEpsilonGreedyAgent:
    """An untrained NeuralEpsilonGreedy agent on a two-tower dot-product network.

    The user tower g and the movie tower h, each `hidden_layers` followed by
    `encoding_dim` units, predict the reward g(u) . h(v). TF-Agents applies
    `activation_fn` to every layer of both towers, the last included: with
    ReLU both encodings are non-negative and so is every predicted reward.
    With the default linear activation the network is the bilinear model
    u^T G^T H v of rank <= `encoding_dim`, which contains the MovieLens reward
    u Sigma v^T when `encoding_dim` >= its rank.

    Args:
      global_dim: dg.
      arm_dim: da.
      num_candidates: C.
      hidden_layers: units of each tower's hidden layers, before the encoding
        layer.
      encoding_dim: units of each tower's last layer.
      learning_rate: Adam step size.
      epsilon: probability of a uniformly random candidate.
      activation_fn: activation of every layer of both towers.
    """
    observation_spec = bandit_spec_utils.create_per_arm_observation_spec(
        global_dim, arm_dim, num_candidates
    )
    layers = tuple(hidden_layers) + (encoding_dim,)
    reward_network = arm_networks.create_feed_forward_dot_product_network(
        observation_spec, layers, layers, activation_fn=activation_fn
    )
    return _epsilon_greedy_agent(
        reward_network, global_dim, arm_dim, num_candidates, learning_rate, epsilon
    )


def _epsilon_greedy_agent(
    reward_network: network.Network,
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    learning_rate: float,
    epsilon: float,
) -> neg_agent.NeuralEpsilonGreedyAgent:
    """A per-arm NeuralEpsilonGreedy agent predicting rewards with `reward_network`."""
    time_step_spec, action_spec = per_arm_specs(global_dim, arm_dim, num_candidates)
    return neg_agent.NeuralEpsilonGreedyAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        reward_network=reward_network,
        optimizer=tf.compat.v1.train.AdamOptimizer(learning_rate=learning_rate),
        epsilon=epsilon,
        accepts_per_arm_features=True,
        train_step_counter=tf.Variable(0, dtype=tf.int64, name="train_step"),
    )


def per_arm_neural_linucb_agent(
    encoder: network.Network,
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    encoding_dim: int,
    learning_rate: float,
    alpha: float,
) -> neural_lin_agent.NeuralLinUCBAgent:
    """An untrained per-arm NeuralLinUCB agent: one LinUCB model on `encoder`'s output.

    As for the classic NeuralLinUCB, training switches the policy from the
    reward layer to LinUCB explicitly (see `train_per_arm_neural_linucb`);
    TF-Agents fixes the LinUCB ridge at 1.

    Args:
      encoder: `common_tower_network(..., output_dim=encoding_dim)`.
      global_dim: dg.
      arm_dim: da.
      num_candidates: C.
      encoding_dim: the encoder's output dimension, >= 2.
      learning_rate: Adam step size of the encoder and reward layer.
      alpha: LinUCB's exploration width.
    """
    if encoding_dim < 2:
        raise ValueError(
            f"per-arm NeuralLinUCB needs encoding_dim >= 2: TF-Agents' common tower outputs "
            f"rewards, not encodings, when it is 1; got {encoding_dim}"
        )
    time_step_spec, action_spec = per_arm_specs(global_dim, arm_dim, num_candidates)
    return neural_lin_agent.NeuralLinUCBAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        encoding_network=encoder,
        encoding_network_num_train_steps=0,
        encoding_dim=encoding_dim,
        optimizer=tf.compat.v1.train.AdamOptimizer(learning_rate=learning_rate),
        alpha=alpha,
        accepts_per_arm_features=True,
        dtype=tf.float64,
    )


# --- off-policy training of the neural agents ---------------------------------------------------


def per_arm_trajectory(
    global_features: tf.Tensor, chosen_arm_features: tf.Tensor, rewards: tf.Tensor
) -> trajectory.Trajectory:
    """Single-step per-arm episodes with outer dims [B, 1], as TF-Agents' per-arm agents train on.

    The observation holds the global features only (the agents' training data
    spec drops the candidates) and `policy_info.chosen_arm_features` the chosen
    candidate's features. The action is 0: the agents replace it by zeros
    anyway, since one model scores every candidate.

    Args:
      global_features: [B, dg] the user of each row.
      chosen_arm_features: [B, da'] the chosen candidate's features as the
        policy observes them.
      rewards: [B] observed rewards.
    """
    batch = tf.shape(rewards)[0]

    def column(t: tf.Tensor) -> tf.Tensor:
        return tf.expand_dims(t, 1)

    return trajectory.Trajectory(
        step_type=column(tf.fill([batch], ts.StepType.FIRST)),
        observation={
            bandit_spec_utils.GLOBAL_FEATURE_KEY: column(tf.cast(global_features, tf.float32))
        },
        action=column(tf.zeros([batch], tf.int32)),
        policy_info=policy_utilities.PerArmPolicyInfo(
            chosen_arm_features=column(tf.cast(chosen_arm_features, tf.float32))
        ),
        next_step_type=column(tf.fill([batch], ts.StepType.LAST)),
        reward=column(tf.cast(rewards, tf.float32)),
        discount=column(tf.zeros([batch])),
    )


def per_arm_batches(
    global_features: np.ndarray,
    chosen_arm_features: np.ndarray,
    rewards: np.ndarray,
    batch_size: int,
    epochs: int,
    seed: int,
) -> tf.data.Dataset:
    """`epochs` reshuffled passes over the logged rows in batches of `batch_size`.

    As `neural_training.shuffled_batches`: one seeded permutation per epoch, and
    each dataset element is a whole batch (global [b, dg], chosen arm [b, da],
    reward [b]) gathered from the in-memory columns.

    Args:
      global_features: [N, dg] the user of each row.
      chosen_arm_features: [N, da] the chosen candidate's features.
      rewards: [N] observed rewards.
      batch_size: rows per batch; the last batch may be smaller.
      epochs: passes over the rows.
      seed: seeds the permutations.
    """
    return neural_training.shuffled_batches(
        tuple(
            np.asarray(column, np.float32)
            for column in (global_features, chosen_arm_features, rewards)
        ),
        batch_size,
        epochs,
        seed,
    )


def _signature(global_dim: int, arm_dim: int):
    return [
        tf.TensorSpec([None, global_dim], tf.float32),
        tf.TensorSpec([None, arm_dim], tf.float32),
        tf.TensorSpec([None], tf.float32),
    ]


def train_per_arm_epsilon_greedy(
    agent: neg_agent.NeuralEpsilonGreedyAgent, batches: tf.data.Dataset
) -> np.ndarray:
    """Runs `agent.train` once per batch of `per_arm_batches`.

    Args:
      agent: a per-arm NeuralEpsilonGreedy agent (common tower or dot product).
      batches: `per_arm_batches` of the logged rows.

    Returns:
      [num_batches] each batch's regression loss, before its update.
    """
    global_dim, arm_dim = _context_dims(agent)

    @tf.function(input_signature=_signature(global_dim, arm_dim))
    def train_step(u, v, r):
        return agent.train(per_arm_trajectory(u, v, r)).loss

    return np.array([float(train_step(u, v, r)) for u, v, r in batches])


def train_per_arm_neural_linucb(
    agent: neural_lin_agent.NeuralLinUCBAgent,
    encoder: network.Network,
    batches: tf.data.Dataset,
    rows: neural_training.RowChunks,
) -> np.ndarray:
    """Fits the encoder through the reward layer, then LinUCB on its encodings.

    TF-Agents' two phases, as for the classic NeuralLinUCB: per batch, the
    trajectory goes through TF-Agents' `process_experience_for_neural_agents`
    (which moves the chosen arm's features into the observation) and
    `compute_loss_using_reward_layer` fits encoder and reward layer. Then the
    one LinUCB model A = sum z z^T, b = sum r z is summed over the final
    encodings z of every row, chunk by chunk, and the policy switches from the
    reward layer to LinUCB.

    Args:
      agent: from `per_arm_neural_linucb_agent(encoder, ...)`.
      encoder: the agent's encoding network.
      batches: (users [b, dg], chosen arms' features [b, da], rewards [b]) per
        training step, e.g. `per_arm_batches` of the logged rows.
      rows: one pass over every logged row as chunks of the same three columns.

    Returns:
      [num_batches] each batch's reward-layer regression loss, before its
      update.
    """
    global_dim, arm_dim = _context_dims(agent)

    @tf.function(input_signature=_signature(global_dim, arm_dim))
    def train_step(u, v, r):
        observation, action, reward = bandit_agent_utils.process_experience_for_neural_agents(
            per_arm_trajectory(u, v, r), True, agent.training_data_spec
        )
        return agent.compute_loss_using_reward_layer(
            observation, action, reward, training=True
        ).loss

    losses = np.array([float(train_step(u, v, r)) for u, v, r in batches])

    statistics = zero_per_arm_statistics(agent.cov_matrix[0].shape[0])
    for u, v, r in rows:
        observation = {
            bandit_spec_utils.GLOBAL_FEATURE_KEY: tf.cast(u, tf.float32),
            bandit_spec_utils.PER_ARM_FEATURE_KEY: tf.cast(v, tf.float32)[:, None, :],
        }
        encoded = encoder(observation)[0].numpy()[:, 0, :]
        statistics += per_arm_statistics(encoded, np.asarray(r, np.float32))
    agent.cov_matrix[0].assign(statistics.cov_matrix)
    agent.data_vector[0].assign(statistics.data_vector)
    agent.num_samples[0].assign(statistics.num_samples)
    agent.actions_from_reward_layer.assign(False)
    return losses


def _context_dims(agent) -> Tuple[int, int]:
    """(dg, da') of a per-arm agent's observation spec."""
    return bandit_spec_utils.get_context_dims_from_spec(agent.time_step_spec.observation, True)
