"""Loads a PolicySaver SavedModel and asks it for actions, the TF-Agents way."""

import numpy as np
import tensorflow as tf
from tf_agents.trajectories import time_step as ts


def load_saved_policy(policy_dir: str) -> tf.Module:
    """The policy object PolicySaver wrote to `policy_dir`."""
    return tf.saved_model.load(policy_dir)


def policy_actions(policy: tf.Module, observations: np.ndarray) -> np.ndarray:
    """The saved policy's actions for a [N, d] batch of observations."""
    observations = tf.constant(np.asarray(observations), dtype=tf.float32)
    time_step = ts.restart(observations, batch_size=observations.shape[0])
    return policy.action(time_step).action.numpy()
