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
# `PolicyMetadata.problem`: one action set for every round, or candidates per round.
CLASSIC = "classic"
PER_ARM = "per_arm"
# An epsilon-greedy per-arm policy's greedy part, saved beside it: its exported
# policy explores in the graph, so its greedy choice is not visible otherwise.
GREEDY_POLICY_DIR = "greedy_policy"


@dataclasses.dataclass(frozen=True)
class PolicyMetadata:
    """What kind of policy a SavedModel is and how it scores.

    `alpha` and `tikhonov_weight` are 0 for agents that have no such setting.
    The trailing fields have defaults so sidecars written before they existed
    still load.

    A per-arm policy (`problem == PER_ARM`) chooses among `num_candidates`
    movies per round: it observes the user's `global_dim` features and each
    candidate's `arm_dim` movie features (before any interaction map);
    `observation_dim` is then `global_dim` and `num_actions` `num_candidates`.
    `epsilon` is the exploration share an epsilon-greedy agent was built with.
    """

    agent: str
    observation_dim: int
    num_actions: int
    alpha: float
    tikhonov_weight: float
    stochastic: bool = False
    hyperparameters: Dict[str, Any] = dataclasses.field(default_factory=dict)
    problem: str = CLASSIC
    global_dim: int = 0
    arm_dim: int = 0
    num_candidates: int = 0
    epsilon: float = 0.0


_PER_ARM_FIELDS = ("problem", "global_dim", "arm_dim", "num_candidates", "epsilon")


def write_policy_metadata(policy_dir: str, metadata: PolicyMetadata) -> None:
    """Writes the sidecar; a classic policy's omits the per-arm fields left at their defaults.

    So classic sidecars stay byte-identical to those written before per-arm policies.
    """
    document = dataclasses.asdict(metadata)
    defaults = {field.name: field.default for field in dataclasses.fields(PolicyMetadata)}
    if metadata.problem == CLASSIC:
        for name in _PER_ARM_FIELDS:
            if document[name] == defaults[name]:
                del document[name]
    with tf.io.gfile.GFile(os.path.join(policy_dir, POLICY_METADATA_FILE), "w") as f:
        json.dump(document, f, indent=2)


def read_policy_metadata(policy_dir: str) -> PolicyMetadata:
    """Reads the sidecar; raises FileNotFoundError naming the directory if absent."""
    path = os.path.join(policy_dir, POLICY_METADATA_FILE)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(
            f"{path} is missing: {policy_dir} was not exported by this project's BanditTrainer"
        )
    with tf.io.gfile.GFile(path) as f:
        return PolicyMetadata(**json.load(f))
