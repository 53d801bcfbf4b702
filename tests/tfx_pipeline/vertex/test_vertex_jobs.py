"""Submit and schedule through the real aiplatform client against a local Vertex AI REST server."""

import argparse
import dataclasses
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.fake_vertex_server import FakeVertexServer
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.vertex.cli import add_vertex_commands, run_vertex_command
from tfx_pipeline.vertex.config import VertexConfig
from tfx_pipeline.vertex.jobs import schedule, submit
from tfx_pipeline.vertex.runner import compile_pipeline

SERVICE_ACCOUNT = "pipelines@my-proj.iam.gserviceaccount.com"
PARENT = "projects/my-proj/locations/europe-west4"
VERTEX = VertexConfig(
    project="my-proj",
    region="europe-west4",
    pipeline_root="gs://my-bucket/pipeline-root",
    service_account=SERVICE_ACCOUNT,
    pipeline_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/pipeline:1.0",
    serving_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/serving:1.0",
    retrain_cron="0 3 * * *",
)


@pytest.fixture(scope="module")
def retraining_json(tmp_path_factory) -> Path:
    return compile_pipeline(PipelineConfig(), VERTEX, True, tmp_path_factory.mktemp("compiled"))


@pytest.fixture
def fake(monkeypatch):
    with FakeVertexServer() as server:
        # PipelineJob.submit first checks the pipeline root's bucket through the storage client.
        monkeypatch.setenv("STORAGE_EMULATOR_HOST", server.endpoint)
        yield server


@pytest.fixture
def vertex(fake) -> VertexConfig:
    return dataclasses.replace(VERTEX, api_endpoint=fake.endpoint)


def run_cli(tmp_path: Path, vertex: VertexConfig, *args: str) -> int:
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"vertex": dataclasses.asdict(vertex)}))
    parser = argparse.ArgumentParser(prog="mlbandits")
    add_vertex_commands(parser.add_subparsers(dest="command", required=True))
    return run_vertex_command(parser.parse_args(["vertex", *args, "--config", str(config)]))


def test_submit_creates_the_pipeline_job(fake, vertex, retraining_json):
    result = submit(retraining_json, vertex)

    (request,) = fake.vertex_requests()
    assert (request.method, request.path) == ("POST", f"/v1/{PARENT}/pipelineJobs")
    job_id = request.query["pipelineJobId"]
    assert job_id.startswith("movielens-bandits-retrain-")
    compiled = json.loads(retraining_json.read_text())
    assert request.body["pipelineSpec"] == compiled["pipelineSpec"]
    assert request.body["displayName"] == "movielens-bandits-retrain"
    assert request.body["serviceAccount"] == SERVICE_ACCOUNT
    assert request.body["runtimeConfig"] == {"gcsOutputDirectory": VERTEX.pipeline_root}
    assert result["pipelineJob"] == f"{PARENT}/pipelineJobs/{job_id}"
    assert ("GET", "/storage/v1/b/my-bucket") in [(r.method, r.path) for r in fake.requests]


def test_submit_dry_run_is_the_exact_request_and_sends_nothing(fake, vertex, retraining_json):
    dry = submit(retraining_json, vertex, dry_run=True)
    assert fake.requests == []

    submit(retraining_json, vertex)
    (request,) = fake.vertex_requests()
    assert dry["parent"] == PARENT
    assert request.body == dry["pipelineJob"]


def test_cli_submit_dry_run_prints_the_request(tmp_path, fake, vertex, retraining_json, capsys):
    args = ["submit", "--retraining", "--dry-run", "--pipeline-json", str(retraining_json)]
    assert run_cli(tmp_path, vertex, *args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["pipelineJob"]["serviceAccount"] == SERVICE_ACCOUNT
    compiled = json.loads(retraining_json.read_text())
    assert printed["pipelineJob"]["pipelineSpec"] == compiled["pipelineSpec"]
    assert fake.requests == []


def test_cli_schedule_creates_a_cron_schedule_of_the_retraining_dag(
    tmp_path, fake, vertex, retraining_json, capsys
):
    args = ["schedule", "--pipeline-json", str(retraining_json), "--cron", "0 */6 * * *"]
    assert run_cli(tmp_path, vertex, *args) == 0
    assert json.loads(capsys.readouterr().out)["schedule"] == f"{PARENT}/schedules/1"

    listing, create = fake.vertex_requests()
    assert (listing.method, listing.path) == ("GET", f"/v1/{PARENT}/schedules")
    assert listing.query["filter"] == 'display_name="movielens-bandits-retrain-schedule"'
    assert (create.method, create.path) == ("POST", f"/v1/{PARENT}/schedules")
    body = create.body
    assert body["displayName"] == "movielens-bandits-retrain-schedule"
    assert body["cron"] == "0 */6 * * *"
    assert body["maxConcurrentRunCount"] == "1"
    job_request = body["createPipelineJobRequest"]
    assert job_request["parent"] == PARENT
    assert job_request["pipelineJob"]["serviceAccount"] == SERVICE_ACCOUNT
    assert job_request["pipelineJob"]["runtimeConfig"] == {
        "gcsOutputDirectory": VERTEX.pipeline_root
    }
    assert job_request["pipelineJob"]["pipelineSpec"] == (
        json.loads(retraining_json.read_text())["pipelineSpec"]
    )


def test_schedule_dry_run_is_the_exact_request_and_sends_nothing(fake, vertex, retraining_json):
    dry = schedule(retraining_json, vertex, dry_run=True)
    assert fake.requests == []

    schedule(retraining_json, vertex)
    create = fake.vertex_requests()[-1]
    assert dry["parent"] == PARENT
    assert create.body == dry["schedule"]


def test_a_second_schedule_of_the_same_dag_is_refused(
    tmp_path, fake, vertex, retraining_json, capsys
):
    args = ["schedule", "--pipeline-json", str(retraining_json)]
    assert run_cli(tmp_path, vertex, *args) == 0
    assert run_cli(tmp_path, vertex, *args) == 1
    assert "already exists" in capsys.readouterr().err
    assert [r.method for r in fake.vertex_requests()] == ["GET", "POST", "GET"]


@pytest.mark.parametrize(
    "change, extra, setting",
    [
        ({"project": ""}, [], "vertex.project"),
        ({"region": ""}, [], "vertex.region"),
        ({"pipeline_root": "/data/pipeline-root"}, [], "vertex.pipeline_root"),
        ({"pipeline_image": "tensorflow/tfx:1.15.1"}, [], "vertex.pipeline_image"),
        ({"serving_image": "my-server:latest"}, [], "vertex.serving_image"),
        ({}, ["--cron", "0 3 * *"], "vertex.retrain_cron"),
        ({}, ["--cron", "0 25 * * *"], "vertex.retrain_cron"),
    ],
)
def test_bad_config_fails_before_anything_is_sent(
    tmp_path, fake, vertex, retraining_json, capsys, change, extra, setting
):
    bad = dataclasses.replace(vertex, **change)
    args = ["schedule", "--pipeline-json", str(retraining_json), *extra]
    assert run_cli(tmp_path, bad, *args) == 2
    assert setting in capsys.readouterr().err
    assert fake.requests == []


def test_a_job_compiled_for_another_image_is_not_sent(
    tmp_path, fake, vertex, retraining_json, capsys
):
    newer = dataclasses.replace(
        vertex, pipeline_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/pipeline:2.0"
    )
    args = ["submit", "--retraining", "--pipeline-json", str(retraining_json)]
    assert run_cli(tmp_path, newer, *args) == 2
    assert "vertex.pipeline_image" in capsys.readouterr().err
    assert fake.requests == []


def test_a_file_holding_the_other_dag_is_refused(tmp_path, fake, vertex, retraining_json, capsys):
    assert run_cli(tmp_path, vertex, "submit", "--pipeline-json", str(retraining_json)) == 2
    assert "not 'movielens-bandits-train'" in capsys.readouterr().err
    assert fake.requests == []


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends


@pytest.mark.parametrize("command", ["submit", "schedule"])
def test_dry_runs_need_no_credentials(tmp_path, retraining_json, command):
    """No key file, no gcloud config, no metadata server: google-auth finds nothing."""
    home = tmp_path / "home"
    home.mkdir()
    config = tmp_path / "config.json"
    config.write_text(json.dumps({"vertex": dataclasses.asdict(VERTEX)}))
    metadata = f"127.0.0.1:{closed_port()}"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(home),
        "CLOUDSDK_CONFIG": str(home / "gcloud"),
        "GCE_METADATA_HOST": metadata,
        "GCE_METADATA_IP": metadata,
    }
    retraining = ["--retraining"] if command == "submit" else []
    cli = [sys.executable, "-m", "tfx_pipeline.cli", "vertex", command, *retraining]
    options = ["--dry-run", "--pipeline-json", str(retraining_json), "--config", str(config)]
    done = subprocess.run(
        [*cli, *options], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr
    printed = json.loads(done.stdout)
    assert printed["parent"] == PARENT
    body = printed["pipelineJob"] if command == "submit" else printed["schedule"]
    assert "credentials" not in done.stderr.lower(), done.stderr
    assert body["displayName"].startswith("movielens-bandits-retrain")
