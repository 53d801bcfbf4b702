"""Compiles the training or retraining DAG into a Vertex AI Pipelines job spec.

The DAG is `pipeline.create_pipeline`, the same function the local runner
uses; only the arguments differ: real BigQuery, a gs:// pipeline root, Beam on
Dataflow or in the step's container, TFX's Vertex Pusher, optionally a
Vertex custom training job, and with `vertex.experiment` the trainer's and the
evaluator's record of each run in Vertex AI Experiments.
"""

import json
import pathlib
from typing import Any, Dict, List, Optional

from kfp.v2.dsl import PIPELINE_JOB_NAME_PLACEHOLDER
from tfx import v1 as tfx

from bandit_core.bigquery.clients import BigQueryEndpoints
from custom_components.vertex_experiments import (
    EXPERIMENT_PROPERTY,
    RUN_PROPERTY,
)
from tfx_pipeline import deploy, pipeline
from tfx_pipeline.config import REPO_ROOT, PipelineConfig, _require
from tfx_pipeline.vertex.config import TRAINING_VERTEX_JOB, VertexConfig

DEFAULT_OUTPUT_DIR = REPO_ROOT / "build" / "vertex"


def check_pipeline_settings(config: PipelineConfig) -> None:
    """Settings that make sense locally but cannot work inside a Vertex step."""
    _require(
        not config.movielens.data_dir,
        "movielens.data_dir",
        f"{config.movielens.data_dir!r} is a path on this machine; leave it empty on Vertex "
        "so the pipeline image downloads MovieLens 100K (see docker/pipeline.Dockerfile)",
    )


def beam_pipeline_args(vertex: VertexConfig) -> List[str]:
    """Dataflow when configured, else the DirectRunner inside the step's container.

    Both need the project and a gs:// temp location: BigQueryExampleGen's
    BigQuery read exports the query result to Cloud Storage first. The
    project is the pipeline's, never `bigquery_project`: Dataflow jobs, the
    read's query and export jobs and its temporary dataset all belong where
    the runs are billed and their service account holds the project roles;
    the queries name the BigQuery project's tables in full.
    """
    common = [
        f"--project={vertex.project}",
        f"--temp_location={vertex.beam_temp_location}",
    ]
    if not vertex.dataflow:
        return [
            "--runner=DirectRunner",
            *common,
            "--direct_running_mode=multi_processing",
            "--direct_num_workers=0",
        ]
    return [
        "--runner=DataflowRunner",
        *common,
        f"--region={vertex.region}",
        f"--machine_type={vertex.dataflow_machine_type}",
        f"--max_num_workers={vertex.dataflow_max_workers}",
        f"--service_account_email={vertex.service_account}",
        # Workers run the pipeline image so they import the same locked libraries.
        f"--sdk_container_image={vertex.pipeline_image}",
    ]


def vertex_training_job_config(vertex: VertexConfig) -> Optional[Dict[str, Any]]:
    """custom_config of the Vertex custom training job, or None to train in the step."""
    if vertex.training != TRAINING_VERTEX_JOB:
        return None
    ai_platform = tfx.extensions.google_cloud_ai_platform
    return {
        ai_platform.ENABLE_VERTEX_KEY: True,
        ai_platform.VERTEX_REGION_KEY: vertex.region,
        ai_platform.TRAINING_ARGS_KEY: {
            "project": vertex.project,
            "job_spec": {
                "worker_pool_specs": [
                    {
                        "machine_spec": {"machine_type": vertex.training_machine_type},
                        "replica_count": 1,
                        "container_spec": {"image_uri": vertex.pipeline_image},
                    }
                ],
                "service_account": vertex.service_account,
            },
        },
    }


def experiment_properties(vertex: VertexConfig) -> Optional[Dict[str, str]]:
    """The trainer's and evaluator's Vertex AI Experiments parameters, or None without one.

    The run is named after the pipeline job: Vertex AI Pipelines replaces KFP's
    `{{$.pipeline_job_name}}` placeholder in a parameter with the running job's
    name, so every run of a compiled (or scheduled) DAG gets its own name.
    """
    target = vertex.experiment_target
    if target is None:
        return None
    return {EXPERIMENT_PROPERTY: target.to_json(), RUN_PROPERTY: PIPELINE_JOB_NAME_PLACEHOLDER}


def create_vertex_pipeline(
    config: PipelineConfig, vertex: VertexConfig, retraining: bool
) -> tfx.dsl.Pipeline:
    """The shared DAG with Google Cloud arguments; checks the settings first."""
    vertex.require_ready()
    check_pipeline_settings(config)
    # The simulator needs MovieLens on local disk, which the pipeline image does not ship.
    cloud_config = config.replace(evaluator={"use_simulator": False})
    return pipeline.create_pipeline(
        cloud_config,
        pipeline_root=vertex.pipeline_root,
        push_base_directory="",  # unused: the Vertex Pusher uploads instead
        endpoints=BigQueryEndpoints(project=vertex.bigquery_project_id),
        retraining=retraining,
        beam_pipeline_args=beam_pipeline_args(vertex),
        vertex_push=deploy.vertex_push_config(vertex),
        vertex_training_job=vertex_training_job_config(vertex),
        experiment_properties=experiment_properties(vertex),
    )


def compile_pipeline(
    config: PipelineConfig,
    vertex: VertexConfig,
    retraining: bool = False,
    output_dir: Optional[pathlib.Path] = None,
) -> pathlib.Path:
    """Writes the DAG's Vertex pipeline job JSON and returns its path.

    Every step runs the pipeline image; the file is replaced if it exists.
    """
    dag = create_vertex_pipeline(config, vertex, retraining)
    directory = pathlib.Path(output_dir or DEFAULT_OUTPUT_DIR)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dag.pipeline_info.pipeline_name}.json"
    path.unlink(missing_ok=True)
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(
            default_image=vertex.pipeline_image
        ),
        output_dir=str(directory),
        output_filename=path.name,
    )
    runner.run(dag)
    path.write_text(yaml_safe_json(json.loads(path.read_text())))
    return path


def yaml_safe_json(value: Any) -> str:
    """JSON whose floats all have a decimal point, so YAML 1.1 reads them as floats.

    aiplatform loads pipeline files with a YAML 1.1 parser, which reads a JSON
    number such as 1e-06 as the string "1e-06"; the request would then carry a
    string where the compiled spec has a double. 1.0e-06 is the same JSON number
    and a YAML float.
    """
    if isinstance(value, dict):
        items = (f"{json.dumps(key)}: {yaml_safe_json(item)}" for key, item in value.items())
        return "{" + ", ".join(items) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(yaml_safe_json(item) for item in value) + "]"
    if isinstance(value, float):
        mantissa, e, exponent = repr(value).partition("e")
        if e and "." not in mantissa:
            return f"{mantissa}.0e{exponent}"
    return json.dumps(value)
