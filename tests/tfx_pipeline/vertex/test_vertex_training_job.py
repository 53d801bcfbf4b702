"""BanditTrainer as a Vertex custom training job, run through TFX's Vertex entry point.

The pipeline step runs in `kubeflow_v2_run_executor`, exactly as a compiled
job starts it; only Vertex's CustomJob service is local: the job TFX builds
is run as its container would run it, in a separate process. What the step
reports to ML Metadata is read from the ExecutorOutput file it writes.
"""

import argparse
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import pytest
import tensorflow as tf
from google.protobuf import json_format
from kfp.pipeline_spec import pipeline_spec_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx import types
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.orchestration.kubeflow.v2.container import kubeflow_v2_run_executor
from tfx.types import standard_artifacts
from tfx.utils import name_utils

from bandit_core import columns
from custom_components.bandit_trainer import executor
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bandit_trainer.vertex_job import VertexJobExecutor
from tests.helpers.offline_vertex_jobs import job_container
from tfx_pipeline.config import REPO_ROOT

DIM, ARMS, ROWS = 5, 4, 300
STORE = "projects/my-proj/locations/us-central1/metadataStores/default/artifacts"


class LocalCustomJobs(vertex_trainer_executor.GenericExecutor):
    """Vertex's CustomJob service, locally: runs the job's container command as a process."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        container = job_container(self, input_dict, output_dict, exec_properties)
        command = container["command"]
        assert command[0] == "python"
        done = subprocess.run(
            [sys.executable, *command[1:]], cwd=REPO_ROOT, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr[-3000:]


class VertexJobExecutorOnLocalJobs(VertexJobExecutor, LocalCustomJobs):
    """VertexJobExecutor unchanged; its job service underneath is the local one."""


class TfxVertexTrainerOnLocalJobs(LocalCustomJobs):
    """TFX's Vertex trainer executor alone with our trainer, as VertexJobExecutor was before."""

    def _GetExecutorClass(self):
        return executor.Executor


def write_inputs(root: Path) -> Dict[str, Path]:
    """A train split of logged rows and ExampleValidator's empty report on it."""
    rng = np.random.default_rng(0)
    split = root / "examples" / "Split-train"
    split.mkdir(parents=True)
    with tf.io.TFRecordWriter(str(split / "data.gz"), options="GZIP") as writer:
        for _ in range(ROWS):
            feature = {
                columns.USER_ID: _ints([1]),
                columns.EVENT_TIME_US: _ints([1]),
                columns.OBSERVATION: _floats(rng.normal(size=DIM)),
                columns.ACTION: _ints([rng.integers(ARMS)]),
                columns.REWARD: _floats([rng.normal()]),
                columns.PROPENSITY: _floats([1.0 / ARMS]),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    anomalies = root / "anomalies" / "Split-train"
    anomalies.mkdir(parents=True)
    (anomalies / DEFAULT_FILE_NAME).write_bytes(anomalies_pb2.Anomalies().SerializeToString())
    return {"examples": root / "examples", "example_anomalies": root / "anomalies"}


def _ints(values) -> tf.train.Feature:
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values) -> tf.train.Feature:
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def executor_input(root: Path) -> str:
    """The ExecutorInput Vertex hands the BanditTrainer step, with resource-name artifacts."""
    inputs = write_inputs(root)
    custom_config = {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: "us-central1",
        vertex_trainer_executor.TRAINING_ARGS_KEY: {
            "project": "my-proj",
            "job_spec": {"worker_pool_specs": [{"container_spec": {"image_uri": "img:1"}}]},
        },
    }
    parameters = {
        "observation_dim": DIM,
        "num_actions": ARMS,
        "problem": "classic",
        "arm_dim": 0,
        "feature_version": "",
        "custom_config": json.dumps(custom_config),
        **dataclasses.asdict(TrainerSettings()),
    }

    def artifact(number: int, schema: str, uri: Path, split: bool) -> dict:
        body = {"name": f"{STORE}/{number}", "type": {"schemaTitle": schema}, "uri": str(uri)}
        if split:
            body["metadata"] = {"split_names": '["train"]'}
        return {"artifacts": [body]}

    return json.dumps(
        {
            "inputs": {
                "parameters": {name: _value(value) for name, value in parameters.items()},
                "artifacts": {
                    "examples": artifact(1, "tfx.Examples", inputs["examples"], True),
                    "example_anomalies": artifact(
                        2, "tfx.ExampleAnomalies", inputs["example_anomalies"], True
                    ),
                },
            },
            "outputs": {
                "artifacts": {
                    "model": artifact(3, "tfx.Model", root / "model", False),
                    "model_run": artifact(4, "tfx.ModelRun", root / "model_run", False),
                },
                "outputFile": str(root / "executor_output.json"),
            },
        }
    )


def _value(value: Any) -> dict:
    if isinstance(value, int):
        return {"intValue": str(int(value))}
    if isinstance(value, float):
        return {"doubleValue": value}
    return {"stringValue": value}


def run_step(executor_class: type, root: Path) -> Dict[str, Any]:
    """Runs the step through TFX's Vertex entry point; returns the Model's reported metadata."""
    invocation = executor_input(root)
    for output in ("model", "model_run"):
        (root / output).mkdir()
    args = argparse.Namespace(
        executor_class_path=name_utils.get_full_name(executor_class),
        json_serialized_invocation_args=invocation,
    )
    kubeflow_v2_run_executor._run_executor(args, [])
    output = pipeline_spec_pb2.ExecutorOutput()
    json_format.Parse((root / "executor_output.json").read_text(), output)
    (model,) = output.artifacts["model"].artifacts
    return json_format.MessageToDict(model.metadata)


def test_model_properties_survive_the_training_job(tmp_path):
    metadata = run_step(VertexJobExecutorOnLocalJobs, tmp_path)
    assert metadata["train_rows"] == ROWS
    assert metadata["agent"] == "LinUCB"
    policy = json.loads(metadata["policy_metadata"])
    assert (policy["agent"], policy["observation_dim"], policy["num_actions"]) == (
        "LinUCB",
        DIM,
        ARMS,
    )
    assert metadata["training_seconds"] > 0


def test_without_restoring_them_the_job_loses_the_properties(tmp_path):
    metadata = run_step(TfxVertexTrainerOnLocalJobs, tmp_path)
    assert (tmp_path / "model_run" / executor.METRICS_FILE).exists()  # the job did train
    assert not {"train_rows", "agent", "policy_metadata"} & set(metadata)


def test_a_job_that_wrote_no_metrics_fails_the_step_by_name(tmp_path):
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = str(tmp_path / "model"), str(tmp_path / "model_run")
    os.makedirs(model_run.uri)
    with pytest.raises(tf.errors.NotFoundError, match=executor.METRICS_FILE):
        executor.restore_model_properties({"model": [model], "model_run": [model_run]})
