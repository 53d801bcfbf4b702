"""Loads a PolicySaver SavedModel and asks it for actions, the TF-Agents way."""

import os
from typing import Dict

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import trackable_object_graph_pb2
from tf_agents.trajectories import time_step as ts

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
