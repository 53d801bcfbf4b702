"""Pushes, canaries and rollbacks through Google's REST clients against a local Vertex.

The fake answers as Vertex does (strict bodies, traffic splits adding up to
100, no undeploying a model that still has traffic), so a rollout that would
be refused on Google Cloud fails here too.
"""

import argparse
import dataclasses
import json
from pathlib import Path
from typing import Dict, Optional

import pytest
from google.api_core import exceptions
from tfx.types import standard_artifacts

from bandit_core.policy_evaluation_file import EVALUATION_FILE
from custom_components.vertex_pusher import rollout
from custom_components.vertex_pusher.endpoint_client import EndpointClient
from custom_components.vertex_pusher.executor import Executor
from custom_components.vertex_pusher.settings import RolloutSettings
from tests.helpers.fake_vertex_server import FakeVertexServer
from tfx_pipeline.deploy import vertex_push_config
from tfx_pipeline.vertex.cli import add_vertex_commands, run_vertex_command
from tfx_pipeline.vertex.config import VertexConfig

ENDPOINT = "bandits"
VERTEX = VertexConfig(
    project="my-proj",
    region="europe-west4",
    pipeline_root="gs://my-bucket/pipeline-root",
    service_account="pipelines@my-proj.iam.gserviceaccount.com",
    pipeline_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/pipeline:1.0",
    serving_image="europe-west4-docker.pkg.dev/my-proj/mlbandits/serving:1.0",
    endpoint_name=ENDPOINT,
)


@pytest.fixture
def fake():
    with FakeVertexServer() as server:
        yield server


def settings_for(fake: FakeVertexServer, canary: int = 0) -> RolloutSettings:
    vertex = dataclasses.replace(VERTEX, api_endpoint=fake.endpoint, canary_traffic_percent=canary)
    return vertex_push_config(vertex)


def push(
    fake: FakeVertexServer, number: Optional[int], canary: int = 0, evaluation=None
) -> rollout.RolloutResult:
    """Push model `number` (None: the run blessed nothing) as one pipeline run's pusher would."""
    artifact_uri = None if number is None else f"gs://my-bucket/pipeline-root/Pusher/{number}"
    client = EndpointClient(settings_for(fake, canary))
    return rollout.push(client, artifact_uri, f"{ENDPOINT}-{number}", evaluation)


def evaluation(canary_value: float, logged: float = 0.5) -> Dict:
    """The next run's evaluation, whose baseline is the canary."""
    return {
        "rule": {"estimator": "dr"},
        "logging_policy_value": logged,
        "baseline": {"estimates": {"dr": {"value": canary_value}}},
    }


def deployed(fake: FakeVertexServer) -> Dict[str, str]:
    """Deployed model id -> the artifact directory of the Model it serves."""
    endpoint = fake.prediction.endpoint_named(ENDPOINT)
    return {
        d["id"]: fake.prediction.models[d["model"]]["artifactUri"]
        for d in endpoint.get("deployedModels", [])
    }


def traffic(fake: FakeVertexServer) -> Dict[str, int]:
    return fake.prediction.endpoint_named(ENDPOINT).get("trafficSplit", {})


def test_three_pushes_leave_two_deployed_models_with_all_traffic_on_the_newest(fake):
    ids = []
    for number in (1, 2, 3):
        result = push(fake, number)
        ids.append(result.deployed_model_id)
        assert len(deployed(fake)) <= 2
        assert traffic(fake) == result.traffic == {result.deployed_model_id: 100}
    assert deployed(fake) == {
        ids[1]: "gs://my-bucket/pipeline-root/Pusher/2",
        ids[2]: "gs://my-bucket/pipeline-root/Pusher/3",
    }
    assert result.undeployed == (ids[0],)
    # Google's client over REST: every call carries the REST transport's response format.
    methods = {r.path.rsplit("/", 1)[-1].split(":")[-1] for r in fake.vertex_requests()}
    assert {"upload", "deployModel", "undeployModel"} <= methods
    assert all(r.query.get("$alt", "").startswith("json") for r in fake.vertex_requests())


def test_a_canary_shares_traffic_until_the_next_evaluation_promotes_it(fake):
    first = push(fake, 1, canary=10).deployed_model_id
    second = push(fake, 2, canary=10).deployed_model_id
    assert traffic(fake) == {first: 90, second: 10}

    third = push(fake, 3, canary=10, evaluation=evaluation(0.6))
    assert third.canary_verdict.startswith("promoted: canary DR 0.6")
    assert traffic(fake) == {second: 90, third.deployed_model_id: 10}
    assert set(deployed(fake)) == {second, third.deployed_model_id}

    unblessed_run = push(fake, None, canary=10, evaluation=evaluation(0.7))
    assert unblessed_run.model == ""
    assert traffic(fake) == {third.deployed_model_id: 100}
    assert set(deployed(fake)) == {second, third.deployed_model_id}


def test_a_canary_the_next_evaluation_finds_worse_is_rolled_back(fake):
    first = push(fake, 1, canary=25).deployed_model_id
    second = push(fake, 2, canary=25).deployed_model_id

    result = push(fake, None, canary=25, evaluation=evaluation(0.4))
    assert result.canary_verdict.startswith("rolled back: canary DR 0.4")
    assert traffic(fake) == {first: 100}
    assert set(deployed(fake)) == {first}
    assert result.undeployed == (second,)


def run_cli(fake: FakeVertexServer, tmp_path: Path, *args: str) -> int:
    config = tmp_path / "config.json"
    vertex = dataclasses.replace(VERTEX, api_endpoint=fake.endpoint)
    config.write_text(json.dumps({"vertex": dataclasses.asdict(vertex)}))
    parser = argparse.ArgumentParser(prog="mlbandits")
    add_vertex_commands(parser.add_subparsers(dest="command", required=True))
    return run_vertex_command(
        parser.parse_args(["vertex", "rollback", *args, "--config", str(config)])
    )


def test_rollback_returns_traffic_to_the_previous_model(fake, tmp_path, capsys):
    first = push(fake, 1).deployed_model_id
    second = push(fake, 2).deployed_model_id
    assert traffic(fake) == {second: 100}

    assert run_cli(fake, tmp_path, "--dry-run") == 0
    planned = json.loads(capsys.readouterr().out)
    assert planned["summary"] == f"would: {first} gets 100%; undeploy {second}"
    assert traffic(fake) == {second: 100}

    assert run_cli(fake, tmp_path) == 0
    assert json.loads(capsys.readouterr().out)["traffic"] == {first: 100}
    assert traffic(fake) == {first: 100}
    assert set(deployed(fake)) == {first}

    assert run_cli(fake, tmp_path) == 1
    assert "nothing to roll back to" in capsys.readouterr().err
    assert traffic(fake) == {first: 100}


def test_rollback_of_a_running_canary_returns_all_traffic_to_the_stable_model(fake, tmp_path):
    first = push(fake, 1, canary=10).deployed_model_id
    push(fake, 2, canary=10)
    assert run_cli(fake, tmp_path) == 0
    assert traffic(fake) == {first: 100}
    assert set(deployed(fake)) == {first}


def test_rollback_without_an_endpoint_names_the_settings_to_check(fake, tmp_path, capsys):
    assert run_cli(fake, tmp_path) == 1
    err = capsys.readouterr().err
    assert "no endpoint named 'bandits' in projects/my-proj/locations/europe-west4" in err
    assert "vertex.endpoint_name" in err


def test_operations_not_done_at_once_are_polled_until_they_are(fake):
    fake.prediction.pending_polls = 1
    result = push(fake, 1)
    assert traffic(fake) == {result.deployed_model_id: 100}
    polls = [r for r in fake.requests if "/operations/" in r.path]
    # create endpoint, upload, deploy: each read once more before it is done
    assert [r.method for r in polls] == ["GET"] * 3


def artifact(kind, uri: Path, **int_properties: int):
    made = kind()
    made.uri = str(uri)
    for name, value in int_properties.items():
        made.set_int_custom_property(name, value)
    return made


def test_the_executor_settles_a_canary_on_a_run_that_blessed_nothing(fake, tmp_path):
    first = push(fake, 1, canary=10).deployed_model_id
    second = push(fake, 2, canary=10).deployed_model_id
    evaluation_dir = tmp_path / "evaluation"
    evaluation_dir.mkdir()
    (evaluation_dir / EVALUATION_FILE).write_text(json.dumps(evaluation(0.55)))
    pushed = artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    settings = settings_for(fake, canary=10)

    Executor().Do(
        {
            "model": [artifact(standard_artifacts.Model, tmp_path / "model")],
            "model_blessing": [
                artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing", blessed=0)
            ],
            "evaluation": [artifact(standard_artifacts.ModelEvaluation, evaluation_dir)],
        },
        {"pushed_model": [pushed]},
        dataclasses.asdict(settings),
    )

    assert traffic(fake) == {second: 100}
    assert set(deployed(fake)) == {first, second}
    assert pushed.get_int_custom_property("pushed") == 0
    assert json.loads(pushed.get_string_custom_property("rollout"))["canary_verdict"].startswith(
        "promoted"
    )


def test_a_blessed_model_outside_cloud_storage_is_refused_as_vertex_refuses_it(fake, tmp_path):
    model_dir = tmp_path / "model" / "Format-Serving"
    model_dir.mkdir(parents=True)
    (model_dir / "saved_model.pb").write_bytes(b"policy")
    pushed = artifact(standard_artifacts.PushedModel, tmp_path / "pushed")

    with pytest.raises(exceptions.BadRequest, match="artifact_uri must be a Cloud Storage"):
        Executor().Do(
            {
                "model": [artifact(standard_artifacts.Model, tmp_path / "model")],
                "model_blessing": [
                    artifact(standard_artifacts.ModelBlessing, tmp_path / "blessing", blessed=1)
                ],
            },
            {"pushed_model": [pushed]},
            dataclasses.asdict(settings_for(fake)),
        )
    assert (tmp_path / "pushed" / "saved_model.pb").read_bytes() == b"policy"
    assert fake.prediction.models == {}
