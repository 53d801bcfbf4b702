"""Hyper-parameters saved next to the policy, for scorers that do not run TF.

A PolicySaver SavedModel holds the agent's variables but bakes scalars such as
LinUCB's alpha into the graph; the serving fast path needs them as numbers, and
the policy evaluator needs to know whether one call of `action` is the whole
action distribution (deterministic) or one draw from it (stochastic).
"""

import dataclasses
import json
import os
from typing import Any, Dict

import tensorflow as tf

POLICY_METADATA_FILE = "bandit_policy.json"


@dataclasses.dataclass(frozen=True)
class PolicyMetadata:
    """What kind of policy a SavedModel is and how it scores.

    `alpha` and `tikhonov_weight` are 0 for agents that have no such setting.
    The trailing fields have defaults so sidecars written before they existed
    still load.
    """

    agent: str
    observation_dim: int
    num_actions: int
    alpha: float
    tikhonov_weight: float
    stochastic: bool = False
    hyperparameters: Dict[str, Any] = dataclasses.field(default_factory=dict)


def write_policy_metadata(policy_dir: str, metadata: PolicyMetadata) -> None:
    with tf.io.gfile.GFile(os.path.join(policy_dir, POLICY_METADATA_FILE), "w") as f:
        json.dump(dataclasses.asdict(metadata), f, indent=2)


def read_policy_metadata(policy_dir: str) -> PolicyMetadata:
    """Reads the sidecar; raises FileNotFoundError naming the directory if absent."""
    path = os.path.join(policy_dir, POLICY_METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: {policy_dir} was not exported by this project's BanditTrainer"
        )
    with tf.io.gfile.GFile(path) as f:
        return PolicyMetadata(**json.load(f))
