"""Every Beam step of the compiled Vertex job gets the Beam args: Dataflow or all the step's cores.

A task is a Beam step when the executor class its container runs is a TFX
BaseBeamExecutor, so a component that becomes a Beam pipeline is checked here
without changing this test.
"""

import dataclasses
import importlib
import json

import pytest
from tfx.dsl.components.base import executor_spec
from tfx.dsl.components.base.base_beam_executor import BaseBeamExecutor

from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.vertex.config import VertexConfig
from tfx_pipeline.vertex.runner import compile_pipeline, create_vertex_pipeline

PIPELINE_IMAGE = "us-central1-docker.pkg.dev/my-proj/mlbandits/pipeline:1.0"
SERVICE_ACCOUNT = "pipelines@my-proj.iam.gserviceaccount.com"
VERTEX = VertexConfig(
    project="my-proj",
    region="europe-west4",
    pipeline_root="gs://my-bucket/pipeline-root",
    service_account=SERVICE_ACCOUNT,
    pipeline_image=PIPELINE_IMAGE,
    serving_image="us-central1-docker.pkg.dev/my-proj/mlbandits/serving:1.0",
    dataflow_machine_type="n2-highmem-4",
    dataflow_max_workers=7,
)
# Beam steps today; BanditTrainer joins them once it is a Beam pipeline.
KNOWN_BEAM_STEPS = {"BigQueryExampleGen", "StatisticsGen", "PolicyEvaluator"}
PROBLEMS = {
    "classic": PipelineConfig(),
    "per_arm": PipelineConfig().replace(
        movielens={"problem": "per_arm"}, trainer={"agent": "InteractionLinUCB"}
    ),
}
COMMON = ["--project=my-proj", "--temp_location=gs://my-bucket/pipeline-root/tmp"]
DATAFLOW = [
    "--runner=DataflowRunner",
    *COMMON,
    "--region=europe-west4",
    "--machine_type=n2-highmem-4",
    "--max_num_workers=7",
    f"--service_account_email={SERVICE_ACCOUNT}",
    f"--sdk_container_image={PIPELINE_IMAGE}",
]
# Every core of the step's machine: Beam reads --direct_num_workers=0 as its CPU count.
STEP_CONTAINER = [
    "--runner=DirectRunner",
    *COMMON,
    "--direct_running_mode=multi_processing",
    "--direct_num_workers=0",
]


@pytest.fixture(scope="module", params=[(p, d) for p in PROBLEMS for d in (True, False)],
                ids=lambda case: f"{case[0]}-{'dataflow' if case[1] else 'step-container'}")
def compiled(request, tmp_path_factory):
    """(config, vertex settings, compiled job JSON) of the training DAG."""
    problem, dataflow = request.param
    vertex = dataclasses.replace(VERTEX, dataflow=dataflow)
    config = PROBLEMS[problem]
    path = compile_pipeline(config, vertex, False, tmp_path_factory.mktemp(problem))
    return config, vertex, json.loads(path.read_text())


def beam_steps(job: dict) -> dict:
    """Task name -> its container's Beam args, for tasks whose executor is a Beam executor."""
    steps = {}
    for name, spec in job["pipelineSpec"]["deploymentSpec"]["executors"].items():
        args = spec.get("container", {}).get("args", [])
        if "--executor_class_path" not in args:
            continue  # an importer or resolver: no executor of ours
        module, _, class_name = args[args.index("--executor_class_path") + 1].rpartition(".")
        if issubclass(getattr(importlib.import_module(module), class_name), BaseBeamExecutor):
            steps[name.removesuffix("_executor")] = [
                a for a in args if a.startswith("--") and "=" in a
            ]
    return steps


def test_every_beam_step_runs_on_dataflow_when_configured_else_on_all_the_steps_cores(compiled):
    _, vertex, job = compiled
    steps = beam_steps(job)
    print(f"Beam steps in the compiled job: {', '.join(sorted(steps))}")
    assert KNOWN_BEAM_STEPS <= set(steps), f"found only {sorted(steps)}"
    expected = DATAFLOW if vertex.dataflow else STEP_CONTAINER
    for name, args in steps.items():
        assert args == expected, f"{name} (one of the Beam steps {sorted(steps)})"


def test_the_compiled_beam_steps_are_the_dags_beam_components(compiled):
    """The JSON is checked for every component the DAG declares with a Beam executor spec."""
    config, vertex, job = compiled
    dag = create_vertex_pipeline(config, vertex, retraining=False)
    declared = {
        c.id for c in dag.components if isinstance(c.executor_spec, executor_spec.BeamExecutorSpec)
    }
    assert set(beam_steps(job)) == declared
