"""BanditTrainer on Vertex gets the pipeline's Beam arguments, in its step and in a training job.

Vertex's CustomJob service is played in this process: the job is built by
TFX's own Vertex job client, and its container's command and args go through
TFX's own entry point (`tfx.scripts.run_executor`), as the job's container
would run them. A runner Beam does not know makes the job's Beam pass fail,
which shows the arguments reached it.
"""

import dataclasses
import json
import os
from typing import Any, Dict, List

import numpy as np
import pytest
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.extensions.google_cloud_ai_platform import constants
from tfx.extensions.google_cloud_ai_platform.trainer import executor as vertex_trainer_executor
from tfx.scripts import run_executor

from custom_components.bandit_trainer import executor
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bandit_trainer.vertex_job import (
    CUSTOM_CONFIG_KEY,
    VertexJobExecutor,
    with_job_arguments,
)
from tests.custom_components.bandit_trainer import logged_splits
from tests.helpers.offline_vertex_jobs import job_container
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.vertex.config import TRAINING_IN_PIPELINE, TRAINING_VERTEX_JOB, VertexConfig
from tfx_pipeline.vertex.runner import beam_pipeline_args, compile_pipeline

D, K, N = 4, 3, 200
STEP_ENTRY_POINT = "/usr/local/lib/python3.10/kubeflow_v2_run_executor.py"


def _custom_config() -> Dict[str, Any]:
    return {
        constants.ENABLE_VERTEX_KEY: True,
        constants.VERTEX_REGION_KEY: "us-central1",
        vertex_trainer_executor.TRAINING_ARGS_KEY: {
            "project": "my-proj",
            "job_spec": {
                "worker_pool_specs": [
                    {"replica_count": 1, "container_spec": {"image_uri": "pipeline:1"}}
                ]
            },
        },
    }


class InProcessCustomJobs(vertex_trainer_executor.GenericExecutor):
    """Vertex's CustomJob service in this process: the job's command and args via run_executor."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        container = job_container(self, input_dict, output_dict, exec_properties)
        command = container["command"]
        assert command[:3] == ["python", "-m", "tfx.scripts.run_executor"]
        argv = ["run_executor.py", *command[3:], *container.get("args", [])]
        run_executor.main(run_executor.parse_flags(argv))


class VertexJobExecutorInProcess(VertexJobExecutor, InProcessCustomJobs):
    """VertexJobExecutor unchanged; its job service underneath is the in-process one."""


def _run_step(root: str, step_flags: List[str]) -> Dict[str, List[types.Artifact]]:
    """Runs the Vertex job step as the step's entry point makes it, with its Beam arguments."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(N, D)).astype(np.float32)
    a = rng.integers(0, K, size=N)
    r = rng.normal(size=N).astype(np.float32)
    examples = logged_splits.examples_artifact(root, "examples", "train")
    logged_splits.write_split(
        os.path.join(examples.uri, "Split-train"), logged_splits.classic_rows(x, a, r, K), 2
    )
    outputs = logged_splits.trainer_outputs(root)
    context = base_executor.BaseExecutor.Context(extra_flags=step_flags, tmp_dir=root)
    VertexJobExecutorInProcess(context).Do(
        {"examples": [examples], "example_anomalies": [logged_splits.clean_anomalies(root)]},
        outputs,
        {
            "observation_dim": D,
            "num_actions": K,
            "problem": "classic",
            CUSTOM_CONFIG_KEY: json.dumps(_custom_config()),
            **dataclasses.asdict(TrainerSettings()),
        },
    )
    return outputs


def test_the_job_trains_with_the_steps_beam_arguments(tmp_path):
    outputs = _run_step(str(tmp_path), [STEP_ENTRY_POINT, "--direct_num_workers=1"])
    model = outputs["model"][0]
    assert model.get_int_custom_property("train_rows") == N
    assert os.path.exists(os.path.join(outputs["model_run"][0].uri, executor.METRICS_FILE))


def test_a_beam_argument_of_the_step_reaches_the_jobs_beam_pass(tmp_path):
    with pytest.raises(ValueError, match="NoSuchRunner"):
        _run_step(str(tmp_path), [STEP_ENTRY_POINT, "--runner=NoSuchRunner"])


def test_job_arguments_go_to_every_worker_pool_of_a_copy():
    config = _custom_config()
    configured = with_job_arguments(config, ["--runner=DataflowRunner", "--region=eu"])
    (pool,) = configured[vertex_trainer_executor.TRAINING_ARGS_KEY]["job_spec"][
        "worker_pool_specs"
    ]
    assert pool["container_spec"] == {
        "image_uri": "pipeline:1",
        "args": ["--runner=DataflowRunner", "--region=eu"],
    }
    assert config == _custom_config()


def test_a_worker_pool_without_a_container_fails_by_name():
    config = _custom_config()
    config[vertex_trainer_executor.TRAINING_ARGS_KEY]["job_spec"]["worker_pool_specs"].append(
        {"replica_count": 1}
    )
    with pytest.raises(
        ValueError, match=r"worker_pool_specs\[1\] of the Vertex training job has no container_spec"
    ):
        with_job_arguments(config, ["--runner=DirectRunner"])


@pytest.mark.parametrize("training", [TRAINING_IN_PIPELINE, TRAINING_VERTEX_JOB])
def test_the_compiled_trainer_step_gets_the_pipelines_beam_arguments(training, tmp_path):
    vertex = VertexConfig(
        project="my-proj",
        region="us-central1",
        pipeline_root="gs://my-bucket/pipeline-root",
        service_account="pipelines@my-proj.iam.gserviceaccount.com",
        pipeline_image="us-central1-docker.pkg.dev/my-proj/mlbandits/pipeline:1.0",
        serving_image="us-central1-docker.pkg.dev/my-proj/mlbandits/serving:1.0",
        endpoint_name="bandit-endpoint",
        dataflow=True,
        training=training,
    )
    job = json.loads(compile_pipeline(PipelineConfig(), vertex, True, tmp_path).read_text())
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    step_args = executors["BanditTrainer_executor"]["container"]["args"]
    assert [arg for arg in step_args if arg.startswith("--") and "=" in arg] == (
        beam_pipeline_args(vertex)
    )
    assert "--runner=DataflowRunner" in step_args
