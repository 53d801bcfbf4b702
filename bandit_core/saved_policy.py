"""Loads a PolicySaver SavedModel and asks it for actions, the TF-Agents way."""

import os
from typing import Dict

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tf_agents.bandits.specs import utils as bandit_spec_utils
from tf_agents.trajectories import time_step as ts

from bandit_core import per_arm_features

# PolicySaver stores the policy's variables under this attribute of the root.
_MODEL_VARIABLES_PREFIX = "model_variables/"


def load_saved_policy(policy_dir: str) -> tf.Module:
    """The policy object PolicySaver wrote to `policy_dir`."""
    return tf.saved_model.load(policy_dir)


def policy_actions(policy: tf.Module, observations: np.ndarray) -> np.ndarray:
    """The saved policy's actions for a [N, d] batch of observations."""
    observations = tf.constant(np.asarray(observations), dtype=tf.float32)
    time_step = ts.restart(observations, batch_size=observations.shape[0])
    return policy.action(time_step).action.numpy()


def per_arm_time_step(global_features: np.ndarray, arm_features: np.ndarray) -> ts.TimeStep:
    """A batch of first steps carrying per-arm observations, as a policy consumes them.

    Args:
      global_features: [N, dg] the user of each round.
      arm_features: [N, C, da'] each round's candidates as the policy observes
        them (see `per_arm_features.policy_arm_features`).
    """
    observation = {
        bandit_spec_utils.GLOBAL_FEATURE_KEY: tf.constant(global_features, tf.float32),
        bandit_spec_utils.PER_ARM_FEATURE_KEY: tf.constant(arm_features, tf.float32),
    }
    return ts.restart(observation, batch_size=len(global_features))


def per_arm_policy_actions(
    policy: tf.Module, agent: str, global_features: np.ndarray, arm_features: np.ndarray
) -> np.ndarray:
    """A saved per-arm policy's [N] chosen positions among [N, C, da] movie features.

    `agent` says which features the policy observes: the Interaction agents
    see the user-movie outer product, the others the movie features.
    """
    observed = per_arm_features.policy_arm_features(agent, global_features, arm_features)
    return policy.action(per_arm_time_step(global_features, observed)).action.numpy()


def read_model_variables(policy_dir: str) -> Dict[str, np.ndarray]:
    """The policy's `model_variables` by variable name, straight from the checkpoint.

    Same values as `tf.saved_model.load(policy_dir).model_variables`, but
    without rebuilding the graph (one conjugate-gradient loop per arm), so a
    hot reload barely competes with requests for the CPU.
    """
    reader = tf.train.load_checkpoint(os.path.join(policy_dir, "variables", "variables"))
    graph = trackable_object_graph_pb2.TrackableObjectGraph()
    graph.ParseFromString(reader.get_tensor("_CHECKPOINTABLE_OBJECT_GRAPH"))
    return {
        attribute.full_name: reader.get_tensor(attribute.checkpoint_key)
        for node in graph.nodes
        for attribute in node.attributes
        if attribute.checkpoint_key.startswith(_MODEL_VARIABLES_PREFIX)
    }
