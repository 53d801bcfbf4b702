"""TF-Agents bandit agents built from the trainer's settings."""

import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent, linear_bandit_agent
from tf_agents.specs import tensor_spec
from tf_agents.trajectories import time_step as ts

from custom_components.bandit_trainer.linear_statistics import LinearArmStatistics


def bandit_specs(observation_dim: int, num_actions: int):
    """(time_step_spec, action_spec) of the MovieLens bandit as the policy sees it."""
    observation_spec = tf.TensorSpec([observation_dim], tf.float32, name="observation")
    action_spec = tensor_spec.BoundedTensorSpec(
        shape=(), dtype=tf.int32, minimum=0, maximum=num_actions - 1, name="action"
    )
    return ts.time_step_spec(observation_spec), action_spec


def linucb_agent_from_statistics(
    statistics: LinearArmStatistics, alpha: float, tikhonov_weight: float
) -> lin_ucb_agent.LinearUCBAgent:
    """A LinUCB agent whose state is exactly the given per-arm sums.

    The variables are filled before the agent is built, through TF-Agents'
    public `variable_collection` argument, so its policy acts as if
    `agent.train` had seen every row behind the statistics.
    """
    num_actions, observation_dim = statistics.data_vectors.shape
    variables = linear_bandit_agent.LinearBanditVariableCollection(
        context_dim=observation_dim, num_models=num_actions, dtype=tf.float32
    )
    for arm in range(num_actions):
        variables.cov_matrix_list[arm].assign(statistics.cov_matrices[arm])
        variables.data_vector_list[arm].assign(statistics.data_vectors[arm])
        variables.num_samples_list[arm].assign(statistics.num_samples[arm])
    time_step_spec, action_spec = bandit_specs(observation_dim, num_actions)
    agent = lin_ucb_agent.LinearUCBAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        variable_collection=variables,
        alpha=alpha,
        tikhonov_weight=tikhonov_weight,
        dtype=tf.float32,
    )
    agent.initialize()
    variables.theta.assign(agent.theta)
    agent.train_step_counter.assign(int(statistics.num_samples.sum()))
    return agent
