"""Gates on anomalies, fits the agent from sufficient statistics, saves the policy."""

import json
import os
import time
from typing import Any, Dict, List

from absl import logging
from tf_agents.policies import policy_saver
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from custom_components.bandit_trainer import agents, anomalies_gate, examples_reader
from custom_components.bandit_trainer.linear_statistics import arm_statistics
from custom_components.bandit_trainer.policy_metadata import PolicyMetadata, write_policy_metadata

METRICS_FILE = "metrics.json"


class Executor(base_executor.BaseExecutor):
    """Trains on the `train` split and writes the policy where Pusher looks for it."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        anomalies_gate.raise_if_anomalous(
            anomalies_gate.read_split_anomalies(
                artifact_utils.get_single_instance(input_dict["example_anomalies"])
            )
        )
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        observation_dim = exec_properties["observation_dim"]
        num_actions = exec_properties["num_actions"]
        started = time.perf_counter()
        train = examples_reader.read_split(
            artifact_utils.get_split_uri([examples], "train"), observation_dim
        )
        statistics = arm_statistics(train.observations, train.actions, train.rewards, num_actions)
        agent = agents.linucb_agent_from_statistics(
            statistics,
            alpha=exec_properties["alpha"],
            tikhonov_weight=exec_properties["tikhonov_weight"],
        )
        training_seconds = time.perf_counter() - started

        model = artifact_utils.get_single_instance(output_dict["model"])
        policy_dir = path_utils.serving_model_dir(model.uri)
        policy_saver.PolicySaver(agent.policy, batch_size=None).save(policy_dir)
        write_policy_metadata(
            policy_dir,
            PolicyMetadata(
                agent=exec_properties["agent"],
                observation_dim=observation_dim,
                num_actions=num_actions,
                alpha=exec_properties["alpha"],
                tikhonov_weight=exec_properties["tikhonov_weight"],
            ),
        )
        metrics = {
            "agent": exec_properties["agent"],
            "train_rows": len(train),
            "training_seconds": training_seconds,
            "mean_logged_reward": float(train.rewards.mean()),
            "rows_per_arm": statistics.num_samples.astype(int).tolist(),
        }
        model.set_int_custom_property("train_rows", len(train))
        model.set_float_custom_property("training_seconds", training_seconds)
        model_run = artifact_utils.get_single_instance(output_dict["model_run"])
        with open(os.path.join(model_run.uri, METRICS_FILE), "w") as f:
            json.dump(metrics, f, indent=2)
        logging.info("BanditTrainer: %s", metrics)
