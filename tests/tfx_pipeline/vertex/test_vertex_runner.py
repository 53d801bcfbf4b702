"""Both DAGs compiled for Vertex AI Pipelines, checked from the pipeline job JSON itself."""

import argparse
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from bandit_core.bigquery.clients import BigQueryEndpoints
from custom_components.bigquery_ingester.queries import (
    build_accepted_query,
    build_examples_query,
    build_serving_logs_query,
)
from custom_components.movielens_generator.component import LoggedInteractions
from custom_components.vertex_experiments import (
    EXPERIMENT_PROPERTY,
    RUN_PROPERTY,
    ExperimentTarget,
)
from tfx_pipeline import pipeline
from tfx_pipeline.config import ConfigError, PipelineConfig, _from_mapping
from tfx_pipeline.vertex.cli import add_vertex_commands, run_vertex_command
from tfx_pipeline.vertex.config import VertexConfig, cron_problem
from tfx_pipeline.vertex.runner import compile_pipeline

PIPELINE_IMAGE = "us-central1-docker.pkg.dev/my-proj/mlbandits/pipeline:1.0"
SERVING_IMAGE = "us-central1-docker.pkg.dev/my-proj/mlbandits/serving:1.0"
SERVICE_ACCOUNT = "pipelines@my-proj.iam.gserviceaccount.com"
VERTEX = VertexConfig(
    project="my-proj",
    region="us-central1",
    pipeline_root="gs://my-bucket/pipeline-root",
    service_account=SERVICE_ACCOUNT,
    pipeline_image=PIPELINE_IMAGE,
    serving_image=SERVING_IMAGE,
    endpoint_name="bandit-endpoint",
    serving_machine_type="n1-standard-4",
    serving_max_replicas=2,
)
TRAINING_TASKS = {
    "MovieLensGenerator": [],
    "DataContractGate": ["MovieLensGenerator"],
    "BigQueryExampleGen": ["DataContractGate"],
    "StatisticsGen": ["BigQueryExampleGen"],
    "BanditSchemaGen": [],
    "ExampleValidator": ["BanditSchemaGen", "StatisticsGen"],
    "BanditTrainer": ["BigQueryExampleGen", "ExampleValidator"],
    "latest_blessed_model_resolver-model-blessing-resolver": [],
    "latest_blessed_model_resolver-model-resolver": [],
    "PolicyEvaluator": [
        "BanditTrainer",
        "BigQueryExampleGen",
        "latest_blessed_model_resolver-model-resolver",
    ],
    "Pusher": ["BanditTrainer", "PolicyEvaluator"],
}
BOTH_DAGS = pytest.mark.parametrize("dag", ["training_job", "retraining_job"])
EXPERIMENT = "movielens-bandits"
TENSORBOARD = "projects/my-proj/locations/us-central1/tensorboards/42"
RECORDING_TASKS = ("BanditTrainer", "PolicyEvaluator")


@pytest.fixture(scope="module")
def training_job(tmp_path_factory) -> dict:
    # KFP v2 accepts custom artifact types only as `namespace.TypeName` without properties.
    assert "." in LoggedInteractions.TYPE_NAME and not LoggedInteractions.PROPERTIES, (
        "LoggedInteractions must become a namespaced type (mlbandits.LoggedInteractions) "
        "with custom properties instead of PROPERTIES before the training DAG compiles"
    )
    vertex = dataclasses.replace(VERTEX, dataflow=True, dataflow_machine_type="n2-standard-8")
    path = compile_pipeline(PipelineConfig(), vertex, False, tmp_path_factory.mktemp("train"))
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def retraining_path(tmp_path_factory) -> Path:
    vertex = dataclasses.replace(
        VERTEX, training="vertex_training_job", experiment=EXPERIMENT, tensorboard=TENSORBOARD
    )
    path = compile_pipeline(PipelineConfig(), vertex, True, tmp_path_factory.mktemp("retrain"))
    assert path.name == "movielens-bandits-retrain.json"
    return path


@pytest.fixture(scope="module")
def retraining_job(retraining_path) -> dict:
    return json.loads(retraining_path.read_text())


def tasks(job: dict) -> dict:
    return {
        name: sorted(task.get("dependentTasks", []))
        for name, task in job["pipelineSpec"]["root"]["dag"]["tasks"].items()
    }


def executor(job: dict, task: str) -> dict:
    return job["pipelineSpec"]["deploymentSpec"]["executors"][f"{task}_executor"]["container"]


def executor_class(job: dict, task: str) -> str:
    args = executor(job, task)["args"]
    return args[args.index("--executor_class_path") + 1]


def beam_args(job: dict, task: str) -> list:
    return [arg for arg in executor(job, task)["args"] if arg.startswith("--") and "=" in arg]


def parameter(job: dict, task: str, name: str):
    value = job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]["parameters"][name]
    return value["runtimeValue"]["constantValue"]["stringValue"]


def test_training_dag_tasks_and_dependencies(training_job):
    assert tasks(training_job) == TRAINING_TASKS
    assert training_job["pipelineSpec"]["pipelineInfo"]["name"] == "movielens-bandits-train"
    assert training_job["runtimeConfig"]["gcsOutputDirectory"] == VERTEX.pipeline_root


def test_retraining_dag_is_the_same_dag_without_generator(retraining_job):
    expected = {name: deps for name, deps in TRAINING_TASKS.items() if name != "MovieLensGenerator"}
    expected["DataContractGate"] = []
    assert tasks(retraining_job) == expected
    assert "MovieLensGenerator" not in json.dumps(retraining_job)
    assert retraining_job["pipelineSpec"]["pipelineInfo"]["name"] == "movielens-bandits-retrain"


@BOTH_DAGS
def test_every_task_runs_the_pipeline_image(dag, request):
    job = request.getfixturevalue(dag)
    executors = job["pipelineSpec"]["deploymentSpec"]["executors"]
    assert len(executors) == len(tasks(job))
    # Resolver nodes are metadata queries Vertex runs itself; every other task is our image.
    containers = {name: body for name, body in executors.items() if "resolver" not in name}
    assert all("resolver" in name for name in executors.keys() - containers.keys())
    for body in containers.values():
        assert body["container"]["image"] == PIPELINE_IMAGE
        assert body["container"]["command"][-1].endswith("kubeflow_v2_run_executor")


def test_training_reads_logged_interactions_from_real_bigquery(training_job):
    config = PipelineConfig()
    (split,) = json.loads(parameter(training_job, "BigQueryExampleGen", "input_config"))["splits"]
    table = "my-proj.mlbandits.logged_interactions"
    source = build_examples_query(table, "", "", "")
    # The gate judges the same rows ExampleGen reads the accepted ones of.
    assert parameter(training_job, "DataContractGate", "source_query") == source
    assert split["pattern"] == build_accepted_query(source, config.data_contract)
    # The stock executor, not the emulator's: no custom executor, no emulator endpoints.
    assert executor_class(training_job, "BigQueryExampleGen") == (
        "tfx.extensions.google_cloud_big_query.example_gen.executor.Executor"
    )
    generator = training_job["pipelineSpec"]["root"]["dag"]["tasks"]["MovieLensGenerator"]
    params = {
        name: value["runtimeValue"]["constantValue"]
        for name, value in generator["inputs"]["parameters"].items()
    }
    assert params["bigquery_project"] == {"stringValue": "my-proj"}
    assert params["bigquery_table"] == {"stringValue": config.bigquery.table}
    assert params["bigquery_rest_endpoint"] == {"stringValue": ""}


def test_the_file_reads_the_same_through_aiplatforms_yaml_loader(retraining_path):
    text = retraining_path.read_text()
    assert "1.0e-06" in text  # validation.min_propensity, which json.dumps writes as 1e-06
    assert yaml.safe_load(text) == json.loads(text)


def test_retraining_joins_serving_logs_from_real_bigquery(retraining_job):
    (split,) = json.loads(parameter(retraining_job, "BigQueryExampleGen", "input_config"))["splits"]
    source = build_serving_logs_query(
        "my-proj.mlbandits.predictions", "my-proj.mlbandits.rewards", "", ""
    )
    assert parameter(retraining_job, "DataContractGate", "source_query") == source
    assert split["pattern"] == build_accepted_query(source, PipelineConfig().data_contract)
    assert "local-proj" not in json.dumps(retraining_job)


@BOTH_DAGS
def test_pusher_rolls_out_on_one_named_vertex_endpoint(dag, request):
    job = request.getfixturevalue(dag)
    assert executor_class(job, "Pusher") == "custom_components.vertex_pusher.executor.Executor"
    constants = {
        name: value["runtimeValue"]["constantValue"]
        for name, value in job["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"]["inputs"][
            "parameters"
        ].items()
    }
    assert constants == {
        "project": {"stringValue": "my-proj"},
        "region": {"stringValue": "us-central1"},
        "endpoint_name": {"stringValue": "bandit-endpoint"},
        "serving_image": {"stringValue": SERVING_IMAGE},
        "serving_machine_type": {"stringValue": "n1-standard-4"},
        "serving_min_replicas": {"intValue": "1"},
        "serving_max_replicas": {"intValue": "2"},
        "service_account": {"stringValue": SERVICE_ACCOUNT},
        "canary_traffic_percent": {"intValue": "0"},
        "api_endpoint": {"stringValue": ""},
    }
    artifacts = job["pipelineSpec"]["root"]["dag"]["tasks"]["Pusher"]["inputs"]["artifacts"]
    # The evaluation settles a running canary, so it reaches the pusher too.
    producers = {name: artifact["taskOutputArtifact"] for name, artifact in artifacts.items()}
    assert {
        name: (producer["producerTask"], producer["outputArtifactKey"])
        for name, producer in producers.items()
    } == {
        "model": ("BanditTrainer", "model"),
        "model_blessing": ("PolicyEvaluator", "blessing"),
        "evaluation": ("PolicyEvaluator", "evaluation"),
    }


def test_beam_steps_run_on_dataflow_when_configured(training_job):
    assert beam_args(training_job, "StatisticsGen") == [
        "--runner=DataflowRunner",
        "--project=my-proj",
        "--temp_location=gs://my-bucket/pipeline-root/tmp",
        "--region=us-central1",
        "--machine_type=n2-standard-8",
        "--max_num_workers=4",
        f"--service_account_email={SERVICE_ACCOUNT}",
        f"--sdk_container_image={PIPELINE_IMAGE}",
    ]
    assert beam_args(training_job, "BigQueryExampleGen") == beam_args(training_job, "StatisticsGen")


def test_beam_steps_run_on_the_direct_runner_otherwise(retraining_job):
    assert beam_args(retraining_job, "BigQueryExampleGen") == [
        "--runner=DirectRunner",
        "--project=my-proj",
        "--temp_location=gs://my-bucket/pipeline-root/tmp",
        "--direct_running_mode=multi_processing",
        "--direct_num_workers=0",
    ]


def test_training_runs_in_the_step_by_default(training_job):
    assert executor_class(training_job, "BanditTrainer") == (
        "custom_components.bandit_trainer.executor.Executor"
    )


def test_training_can_run_as_a_vertex_custom_job(retraining_job):
    assert executor_class(retraining_job, "BanditTrainer") == (
        "custom_components.bandit_trainer.vertex_job.VertexJobExecutor"
    )
    custom_config = json.loads(parameter(retraining_job, "BanditTrainer", "custom_config"))
    assert custom_config == {
        "ai_platform_enable_vertex": True,
        "ai_platform_vertex_region": "us-central1",
        "ai_platform_training_args": {
            "project": "my-proj",
            "job_spec": {
                "worker_pool_specs": [
                    {
                        "machine_spec": {"machine_type": "n1-standard-4"},
                        "replica_count": 1,
                        "container_spec": {"image_uri": PIPELINE_IMAGE},
                    }
                ],
                "service_account": SERVICE_ACCOUNT,
            },
        },
    }


def test_runs_are_recorded_in_vertex_experiments_when_an_experiment_is_set(retraining_job):
    for task in RECORDING_TASKS:
        target = ExperimentTarget.from_json(parameter(retraining_job, task, EXPERIMENT_PROPERTY))
        assert target == ExperimentTarget(
            project="my-proj", region="us-central1", experiment=EXPERIMENT, tensorboard=TENSORBOARD
        )
        # Vertex AI Pipelines fills in the running job's name.
        assert parameter(retraining_job, task, RUN_PROPERTY) == "{{$.pipeline_job_name}}"


def test_nothing_is_recorded_without_an_experiment(training_job):
    for task in RECORDING_TASKS:
        inputs = training_job["pipelineSpec"]["root"]["dag"]["tasks"][task]["inputs"]
        assert not {EXPERIMENT_PROPERTY, RUN_PROPERTY} & set(inputs["parameters"])


def test_the_local_dag_never_records_even_with_an_experiment_configured():
    config = PipelineConfig().replace(vertex={"experiment": EXPERIMENT})
    dag = pipeline.create_pipeline(
        config, "/tmp/root", "/tmp/serving", BigQueryEndpoints(project="local-proj")
    )
    recording = [c for c in dag.components if c.id in RECORDING_TASKS]
    assert [c.id for c in recording] == list(RECORDING_TASKS)
    for component in recording:
        assert component.exec_properties[EXPERIMENT_PROPERTY] is None
        assert component.exec_properties[RUN_PROPERTY] is None


@pytest.mark.parametrize(
    "change, setting",
    [
        ({"project": ""}, "vertex.project"),
        ({"region": ""}, "vertex.region"),
        ({"pipeline_root": "/tmp/root"}, "vertex.pipeline_root"),
        ({"service_account": ""}, "vertex.service_account"),
        ({"pipeline_image": "python:3.10"}, "vertex.pipeline_image"),
        ({"serving_image": "us-docker.pkg.dev/my-proj/repo/serving"}, "vertex.serving_image"),
        ({"retrain_cron": "every day"}, "vertex.retrain_cron"),
        ({"training": "tpu"}, "vertex.training"),
        ({"experiment": "MovieLens_Bandits"}, "vertex.experiment"),
        ({"experiment": "abc"}, "vertex.experiment"),
        ({"tensorboard": TENSORBOARD}, "vertex.tensorboard"),
        ({"experiment": EXPERIMENT, "tensorboard": "tensorboards/42"}, "vertex.tensorboard"),
        (
            {
                "experiment": EXPERIMENT,
                "tensorboard": "projects/my-proj/locations/europe-west4/tensorboards/42",
            },
            "vertex.tensorboard",
        ),
    ],
)
def test_bad_vertex_settings_stop_compilation(tmp_path, change, setting):
    with pytest.raises(ConfigError, match=setting):
        compile_pipeline(PipelineConfig(), dataclasses.replace(VERTEX, **change), True, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_a_local_movielens_dir_cannot_compile(tmp_path):
    config = PipelineConfig().replace(movielens={"data_dir": "/home/me/ml-100k"})
    with pytest.raises(ConfigError, match="movielens.data_dir"):
        compile_pipeline(config, VERTEX, True, tmp_path)


def test_defaults_pass_so_local_runs_need_no_vertex_section():
    VertexConfig().validate()
    with pytest.raises(ConfigError, match="vertex.project: missing"):
        VertexConfig().require_ready()


def test_vertex_section_parses_like_the_other_sections():
    parsed = _from_mapping(VertexConfig, {"project": "my-proj", "dataflow": True}, "vertex.")
    assert parsed == VertexConfig(project="my-proj", dataflow=True)
    with pytest.raises(ConfigError, match="vertex.dataflow"):
        _from_mapping(VertexConfig, {"dataflow": "yes"}, "vertex.")


@pytest.mark.parametrize(
    "cron", ["0 3 * * *", "*/15 9-17 * * MON-FRI", "CRON_TZ=Europe/Paris 30 6 1,15 JAN-JUN *"]
)
def test_valid_crons(cron):
    assert cron_problem(cron) is None


@pytest.mark.parametrize(
    "cron, problem",
    [
        ("0 3 * *", "needs 5 fields"),
        ("60 * * * *", "minute"),
        ("0 24 * * *", "hour"),
        ("0 0 0 * *", "day of month"),
        ("0 0 * 13 *", "month"),
        ("0 0 * * 8", "day of week"),
        ("*/0 * * * *", "minute"),
        ("*/² * * * *", "minute"),
        ("0 ² * * *", "hour"),
        ("TZ=Nowhere/Town 0 0 * * *", "time zone"),
    ],
)
def test_malformed_crons(cron, problem):
    assert problem in cron_problem(cron)


def vertex_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mlbandits")
    add_vertex_commands(parser.add_subparsers(dest="command", required=True))
    return parser


def write_config(path: Path, vertex: VertexConfig) -> str:
    path.write_text(json.dumps({"vertex": dataclasses.asdict(vertex)}))
    return str(path)


def test_cli_compile_writes_the_job_and_dry_run_prints_it(tmp_path, capsys):
    config = write_config(tmp_path / "config.json", VERTEX)
    out = tmp_path / "out"
    args = ["vertex", "compile", "--retraining", "--config", config, "--output-dir", str(out)]

    assert run_vertex_command(vertex_parser().parse_args(args + ["--dry-run"])) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pipelineSpec"]["pipelineInfo"]["name"] == "movielens-bandits-retrain"
    assert not out.exists()

    assert run_vertex_command(vertex_parser().parse_args(args)) == 0
    written = Path(json.loads(capsys.readouterr().out)["pipeline_json"])
    assert written == out / "movielens-bandits-retrain.json"
    assert json.loads(written.read_text())["pipelineSpec"] == printed["pipelineSpec"]


def test_cli_reports_bad_settings_by_name(tmp_path, capsys):
    config = write_config(tmp_path / "config.json", dataclasses.replace(VERTEX, region=""))
    args = vertex_parser().parse_args(["vertex", "compile", "--config", config])
    assert run_vertex_command(args) == 2
    assert "vertex.region: missing" in capsys.readouterr().err


def test_the_per_arm_dag_compiles_with_the_items_example_gen_feeding_the_trainer(tmp_path):
    config = PipelineConfig().replace(
        movielens={"problem": "per_arm"}, trainer={"agent": "InteractionLinUCB"}
    )
    vertex = dataclasses.replace(VERTEX, training="vertex_training_job")
    job = json.loads(compile_pipeline(config, vertex, False, tmp_path).read_text())
    tasks = job["pipelineSpec"]["root"]["dag"]["tasks"]
    assert set(tasks["ItemsExampleGen"].get("dependentTasks", [])) == {"MovieLensGenerator"}
    trainer_inputs = tasks["BanditTrainer"]["inputs"]["artifacts"]
    assert trainer_inputs["items"]["taskOutputArtifact"]["producerTask"] == "ItemsExampleGen"
    assert "BigQueryExampleGen" in tasks["PolicyEvaluator"]["dependentTasks"]


def test_dataflow_runs_in_the_pipeline_project_when_bigquery_lives_elsewhere(tmp_path):
    vertex = dataclasses.replace(VERTEX, dataflow=True, bigquery_project="bq-data-proj")
    job = json.loads(compile_pipeline(PipelineConfig(), vertex, True, tmp_path).read_text())
    for task in ("BigQueryExampleGen", "StatisticsGen"):
        args = beam_args(job, task)
        assert "--project=my-proj" in args, args
        assert f"--service_account_email={SERVICE_ACCOUNT}" in args
    (split,) = json.loads(parameter(job, "BigQueryExampleGen", "input_config"))["splits"]
    source = build_serving_logs_query(
        "bq-data-proj.mlbandits.predictions", "bq-data-proj.mlbandits.rewards", "", ""
    )
    assert split["pattern"] == build_accepted_query(source, PipelineConfig().data_contract)
    gate = job["pipelineSpec"]["root"]["dag"]["tasks"]["DataContractGate"]["inputs"]["parameters"]
    assert gate["bigquery_project"]["runtimeValue"]["constantValue"] == {
        "stringValue": "bq-data-proj"
    }
