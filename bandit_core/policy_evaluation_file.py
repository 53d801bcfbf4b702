"""The evaluation report that PolicyEvaluator writes into its artifact and pushers read.

One name and one format for the file, so the writer and its readers (the Vertex
pusher's rollout, tests, the notebook) cannot drift apart.
"""

import json
import os
from typing import Any, Mapping

import tensorflow as tf

EVALUATION_FILE = "policy_evaluation.json"


def write_policy_evaluation(artifact_uri: str, report: Mapping[str, Any]) -> None:
    """Writes `report` as indented JSON into the evaluation artifact's directory, made if absent."""
    tf.io.gfile.makedirs(artifact_uri)
    with tf.io.gfile.GFile(os.path.join(artifact_uri, EVALUATION_FILE), "w") as f:
        f.write(json.dumps(report, indent=2))


def read_policy_evaluation(artifact_uri: str) -> Mapping[str, Any]:
    """The report in the evaluation artifact at `artifact_uri`."""
    with tf.io.gfile.GFile(os.path.join(artifact_uri, EVALUATION_FILE)) as f:
        return json.load(f)
