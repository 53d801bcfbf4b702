"""Gates on anomalies, trains the configured agent, saves the policy."""

import dataclasses
import json
import os
import time
from typing import Any, Dict, List

import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import path_utils

from bandit_core import columns, logged_examples
from bandit_core.item_catalogue import ItemCatalogue
from bandit_core.policy_metadata import PER_ARM, PolicyMetadata, read_policy_metadata
from custom_components.bandit_trainer import (
    anomalies_gate,
    experiment_record,
    per_arm_export,
    split_training,
    training,
    training_summaries,
)
from custom_components.bandit_trainer.settings import TrainerSettings

METRICS_FILE = "metrics.json"


def settings_from_exec_properties(exec_properties: Dict[str, Any]) -> TrainerSettings:
    """The component's execution parameters as validated TrainerSettings."""
    return TrainerSettings(
        **{f.name: exec_properties[f.name] for f in dataclasses.fields(TrainerSettings)}
    ).validate()


class Executor(base_beam_executor.BaseBeamExecutor):
    """Trains on the `train` split and writes the policy where Pusher looks for it.

    The split is read in a Beam pipeline made from the TFX pipeline's
    `beam_pipeline_args` (`split_training`), so it never has to fit in this
    process: on Dataflow its sums are computed by Dataflow's workers. The sums
    come back through a file in the ModelRun's directory, removed once read:
    it lies in the pipeline root, which the workers reach, and exists however
    the executor runs (a Vertex custom job's entry point gives it no temporary
    directory).
    """

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
        settings = settings_from_exec_properties(exec_properties)
        if exec_properties.get("problem") == PER_ARM:
            self._train_per_arm(input_dict, output_dict, exec_properties, settings)
            return
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        observation_dim = exec_properties["observation_dim"]
        started = time.perf_counter()
        trained, sums = split_training.train_classic(
            self._make_beam_pipeline(),
            _model_run_dir(output_dict),
            artifact_utils.get_split_uri([examples], "train"),
            settings,
            observation_dim,
            exec_properties["num_actions"],
        )
        training_seconds = time.perf_counter() - started

        model = artifact_utils.get_single_instance(output_dict["model"])
        training.save_policy(trained, path_utils.serving_model_dir(model.uri))
        metrics = {
            "agent": settings.agent,
            "hyperparameters": trained.metadata.hyperparameters,
            "train_rows": sums.rows,
            "training_seconds": training_seconds,
            "fit_seconds": trained.training_seconds,
            "mean_logged_reward": sums.reward_sum / sums.rows,
            "rows_per_arm": trained.rows_per_arm.astype(int).tolist(),
        }
        _record(output_dict, model, trained.metadata, metrics)
        (observation_sample,) = sums.sample.columns
        training_summaries.write_classic_summaries(
            _model_run_dir(output_dict), trained, settings, sums.rows, observation_sample
        )
        experiment_record.record_training(
            exec_properties,
            metrics,
            trained.losses,
            settings.batch_size,
            _model_run_dir(output_dict),
            path_utils.serving_model_dir(model.uri),
        )

    def _train_per_arm(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
        settings: TrainerSettings,
    ) -> None:
        """Trains a per-arm agent and exports it with the items split as its catalogue."""
        if not input_dict.get("items"):
            raise ValueError(
                "a per-arm BanditTrainer needs the `items` examples (the movie catalogue)"
            )
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        items = artifact_utils.get_single_instance(input_dict["items"])
        global_dim, arm_dim = exec_properties["observation_dim"], exec_properties["arm_dim"]
        started = time.perf_counter()
        movie_ids, features = logged_examples.read_items_split(
            artifact_utils.get_split_uri([items], columns.ITEMS_SPLIT)
        )
        catalogue = ItemCatalogue(movie_ids, features, exec_properties["feature_version"])
        if catalogue.feature_dim != arm_dim:
            raise ValueError(
                f"the items table's {exec_properties['feature_version']} features have "
                f"{catalogue.feature_dim} values per movie; the configuration expects {arm_dim}"
            )
        trained, sums = split_training.train_per_arm(
            self._make_beam_pipeline(),
            _model_run_dir(output_dict),
            artifact_utils.get_split_uri([examples], "train"),
            settings,
            global_dim,
            arm_dim,
            exec_properties["num_actions"],
        )
        training_seconds = time.perf_counter() - started
        model = artifact_utils.get_single_instance(output_dict["model"])
        metadata = per_arm_export.save_per_arm_policy(
            trained, catalogue, path_utils.serving_model_dir(model.uri), sums.users.table()
        )
        metrics = {
            "agent": settings.agent,
            "problem": PER_ARM,
            "hyperparameters": metadata.hyperparameters,
            "train_rows": sums.rows,
            "training_seconds": training_seconds,
            "fit_seconds": trained.training_seconds,
            "mean_logged_reward": sums.reward_sum / sums.rows,
            "known_users": len(sums.users.user_ids),
            "catalogue_movies": len(catalogue),
            "feature_version": catalogue.feature_version,
        }
        _record(output_dict, model, metadata, metrics)
        global_sample, arm_sample = sums.sample.columns
        training_summaries.write_per_arm_summaries(
            _model_run_dir(output_dict),
            trained,
            sums.rows,
            sums.served_movie_rows(),
            global_sample,
            arm_sample,
        )
        experiment_record.record_training(
            exec_properties,
            metrics,
            trained.losses,
            settings.batch_size,
            _model_run_dir(output_dict),
            path_utils.serving_model_dir(model.uri),
        )


def _model_run_dir(output_dict: Dict[str, List[types.Artifact]]) -> str:
    """The ModelRun's directory: the metrics file and TensorBoard's summaries, as in TFX."""
    return artifact_utils.get_single_instance(output_dict["model_run"]).uri


def restore_model_properties(output_dict: Dict[str, List[types.Artifact]]) -> None:
    """Sets the Model's MLMD properties again from the files training wrote.

    A Vertex custom training job runs `Executor` in its own container: the
    properties it sets on its copy of the artifacts never leave it, while its
    files (the policy's sidecar, the ModelRun's metrics) reach the pipeline
    step, which reports the artifacts to Vertex ML Metadata.
    """
    model = artifact_utils.get_single_instance(output_dict["model"])
    model_run = artifact_utils.get_single_instance(output_dict["model_run"])
    with tf.io.gfile.GFile(os.path.join(model_run.uri, METRICS_FILE)) as f:
        metrics = json.load(f)
    _set_model_properties(
        model, read_policy_metadata(path_utils.serving_model_dir(model.uri)), metrics
    )


def _record(
    output_dict: Dict[str, List[types.Artifact]],
    model: types.Artifact,
    metadata: PolicyMetadata,
    metrics: Dict[str, Any],
) -> None:
    """The model's MLMD properties and the ModelRun's metrics file."""
    _set_model_properties(model, metadata, metrics)
    with tf.io.gfile.GFile(os.path.join(_model_run_dir(output_dict), METRICS_FILE), "w") as f:
        json.dump(metrics, f, indent=2)
    logging.info("BanditTrainer: %s", metrics)


def _set_model_properties(
    model: types.Artifact, metadata: PolicyMetadata, metrics: Dict[str, Any]
) -> None:
    model.set_int_custom_property("train_rows", metrics["train_rows"])
    model.set_float_custom_property("training_seconds", metrics["training_seconds"])
    model.set_string_custom_property("agent", metadata.agent)
    model.set_string_custom_property("policy_metadata", json.dumps(dataclasses.asdict(metadata)))
