"""`mlbandits simulate --endpoint`: the loop closed through a Vertex endpoint, offline.

A real serving process on a trained policy, logging to the BigQuery emulator,
sits behind the fake Vertex control plane's endpoint; the Simulator reaches it
only through aiplatform_v1's REST client, predictions and rewards alike through
`:predict`. Every answered event must then be in the emulator's predictions
table with its reward in the rewards table. The fake's `:predict` itself is
checked first: Vertex's refusals and its traffic split.
"""

import contextlib
import http.server
import json
import socket
import threading
from pathlib import Path
from typing import Dict, Iterator, List, Tuple

import pytest
from google.api_core import client_options, exceptions
from google.auth import credentials as auth_credentials
from google.cloud import aiplatform_v1

from bandit_core.bigquery import clients
from bandit_core.bigquery.clients import BigQueryEndpoints
from serving.event_spool import PREDICTIONS, REWARDS, EventSpool
from simulation.movielens_data import default_data_dir
from tests.helpers.fake_vertex_server import FakeVertexServer
from tests.helpers.policy_factory import save_linucb_policy
from tests.tfx_pipeline.vertex.test_fake_vertex_endpoints import deploy, upload
from tests.tfx_pipeline.vertex.test_fake_vertex_server import PARENT, assert_refused, send
from tfx_pipeline import cli
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop.serving_process import ServingProcess
from tfx_pipeline.local.emulator import BigQueryEmulator

REQUESTS = 40
SHIP_DEADLINE_S = 60.0
HAS_MOVIELENS = (default_data_dir() / "u.data").exists()


@pytest.fixture
def fake():
    with FakeVertexServer() as server:
        yield server


def create_endpoint(fake: FakeVertexServer) -> str:
    status, operation = send(fake, "POST", f"/v1/{PARENT}/endpoints", {"displayName": "bandits"})
    assert status == 200, operation
    return operation["response"]["name"]


@contextlib.contextmanager
def labelled_container(label: str) -> Iterator[str]:
    """A stand-in container answering one prediction per instance, `{"served_by": label}`."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            data = json.dumps({"predictions": [{"served_by": label}] * len(body["instances"])})
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data.encode())

        def log_message(self, *args) -> None:
            return None

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/predict"
    finally:
        server.shutdown()
        server.server_close()


def predict(fake: FakeVertexServer, endpoint: str, instances: List[dict]) -> Dict:
    """Through Google's REST client, as the Simulator calls it."""
    client = aiplatform_v1.PredictionServiceClient(
        credentials=auth_credentials.AnonymousCredentials(),
        transport="rest",
        client_options=client_options.ClientOptions(api_endpoint=fake.endpoint),
    )
    response = client.predict(endpoint=endpoint, instances=instances)
    return type(response).to_dict(response)


def test_predict_on_an_unknown_endpoint_is_404(fake):
    answer = send(fake, "POST", f"/v1/{PARENT}/endpoints/404:predict", {"instances": [{}]})
    assert_refused(answer, 404, "NOT_FOUND", f"Endpoint {PARENT}/endpoints/404 not found")


def test_predict_on_an_endpoint_without_a_deployed_model_is_a_failed_precondition(fake):
    endpoint = create_endpoint(fake)
    answer = send(fake, "POST", f"/v1/{endpoint}:predict", {"instances": [{"a": 1}]})
    assert_refused(answer, 400, "FAILED_PRECONDITION", "has no deployed models: deploy a Model")
    with pytest.raises(exceptions.BadRequest, match="has no deployed models"):
        predict(fake, endpoint, [{"observation": [0.0]}])


@pytest.mark.parametrize(
    "body, expected",
    [
        ({"instance": [{"a": 1}]}, 'no field named "instance"'),
        ({"instances": []}, "PredictRequest.instances is required"),
        ({"instances": [{}], "endpoint": "x"}, 'Unknown name "endpoint"'),
    ],
    ids=["misspelled", "no-instances", "endpoint-in-body"],
)
def test_a_malformed_predict_is_refused(fake, body, expected):
    endpoint = create_endpoint(fake)
    deploy(fake, endpoint, upload(fake, 1), {"0": 100})
    answer = send(fake, "POST", f"/v1/{endpoint}:predict", body)
    assert_refused(answer, 400, "INVALID_ARGUMENT", expected)


def test_predict_follows_the_traffic_split_and_names_the_deployed_model(fake):
    endpoint = create_endpoint(fake)
    older_model, newer_model = upload(fake, 1), upload(fake, 2)
    older = deploy(fake, endpoint, older_model, {"0": 100})
    newer = deploy(fake, endpoint, newer_model, {"0": 25, older: 75})
    with labelled_container("older") as older_url, labelled_container("newer") as newer_url:
        fake.prediction.serve_deployed_model(older, older_url)
        fake.prediction.serve_deployed_model(newer, newer_url)
        answers = [predict(fake, endpoint, [{"n": i}, {"n": -i}]) for i in range(8)]
    served = [
        (a["deployed_model_id"], a["model"], a["predictions"][0]["served_by"]) for a in answers
    ]
    assert served.count((older, older_model, "older")) == 6
    assert served.count((newer, newer_model, "newer")) == 2
    assert all(len(a["predictions"]) == 2 for a in answers)


def test_a_container_that_cannot_answer_is_passed_on_with_its_status(fake):
    endpoint = create_endpoint(fake)
    deployed = deploy(fake, endpoint, upload(fake, 1), {"0": 100})
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{closed.getsockname()[1]}/predict"
    fake.prediction.serve_deployed_model(deployed, url)
    answer = send(fake, "POST", f"/v1/{endpoint}:predict", {"instances": [{"a": 1}]})
    assert_refused(answer, 503, "UNAVAILABLE", f"the container at {url} cannot be reached")


def test_a_deployed_model_without_a_container_cannot_be_served(fake):
    with pytest.raises(ValueError, match="no DeployedModel '9'"):
        fake.prediction.serve_deployed_model("9", "http://127.0.0.1:9/predict")


@pytest.mark.parametrize(
    "argv, expected",
    [
        (
            ["--endpoint", "projects/p/endpoints/1"],
            "argument --endpoint: 'projects/p/endpoints/1' is neither an endpoint resource name",
        ),
        (
            ["--endpoint", "4242"],
            "--endpoint 4242 is a bare endpoint id, which needs vertex.project in the --config "
            "file; set it, or pass the full name projects/PROJECT/locations/REGION/endpoints/4242",
        ),
        (["--url", "127.0.0.1:8080"], "argument --url: '127.0.0.1:8080' is not a server URL"),
        (["--url", "http://h:1", "--requests", "0"], "argument --requests: '0' must be"),
        ([], "one of the arguments --endpoint --url is required"),
    ],
    ids=["bad-name", "bare-id-without-project", "bad-url", "no-requests", "no-target"],
)
def test_bad_simulate_flags_name_the_flag_and_the_fix(tmp_path, capsys, argv, expected):
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps({"local": {"root": str(tmp_path / "root")}}))
    try:
        status = cli.main(["simulate", *argv, "--config", str(config_path)])
    except SystemExit as exit_:
        status = exit_.code
    assert status == 2
    assert expected in capsys.readouterr().err


def _served_and_rewarded(client, project: str, config: PipelineConfig) -> Tuple[int, int, int]:
    """(predictions, rewards, predictions joined to exactly one reward by event id)."""
    dataset = f"{project}.{config.bigquery.dataset}"
    predictions = f"`{dataset}.{config.bigquery.predictions_table}`"
    rewards = f"`{dataset}.{config.bigquery.rewards_table}`"
    query = (
        f"SELECT (SELECT COUNT(DISTINCT event_id) FROM {predictions}) AS served, "
        f"(SELECT COUNT(DISTINCT event_id) FROM {rewards}) AS rewarded, "
        f"(SELECT COUNT(*) FROM {predictions} AS p JOIN {rewards} AS r "
        "ON p.event_id = r.event_id) AS joined"
    )
    row = next(iter(client.query(query).result()))
    return row["served"], row["rewarded"], row["joined"]


@pytest.mark.skipif(
    not HAS_MOVIELENS, reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR"
)
def test_simulate_through_a_vertex_endpoint_rewards_every_served_event_in_bigquery(
    tmp_path: Path, fake, capsys
):
    vertex = {"project": "my-proj", "region": "europe-west4", "api_endpoint": fake.endpoint}
    settings = {"local": {"root": str(tmp_path / "root")}, "vertex": vertex, "loop": {"seed": 3}}
    config = PipelineConfig().replace(**settings).validate()
    save_linucb_policy(config.local.serving_model_dir / "1", seed=0)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(settings))
    endpoint = create_endpoint(fake)
    deployed = deploy(fake, endpoint, upload(fake, 1), {"0": 100})
    with BigQueryEmulator() as emulator, ServingProcess(config, emulator.endpoints) as server:
        fake.prediction.serve_deployed_model(deployed, server.url + config.serving.predict_route)
        endpoint_id = endpoint.rsplit("/", 1)[1]  # resolved in vertex.project and vertex.region
        status = cli.main(
            ["simulate", "--endpoint", endpoint_id, "--requests", str(REQUESTS), "--config",
             str(config_path)]
        )
        out = capsys.readouterr().out
        assert status == 0, out
        client = clients.make_bigquery_client(emulator.endpoints)
        rewards_table = (
            f"{emulator.project}.{config.bigquery.dataset}.{config.bigquery.rewards_table}"
        )
        server.wait_until_logged(client, rewards_table, REQUESTS, SHIP_DEADLINE_S)
        counts = _served_and_rewarded(client, emulator.project, config)
    assert f"simulate: {REQUESTS} users to {endpoint} at {fake.endpoint}" in out
    assert f"rewarded            : {REQUESTS}" in out and "errors              : 0" in out
    assert counts == (REQUESTS, REQUESTS, REQUESTS)
    predicts = [r for r in fake.vertex_requests() if r.path == f"/v1/{endpoint}:predict"]
    rewards = [r for r in predicts if "reward" in r.body["instances"][0]]
    assert (len(predicts), len(rewards)) == (2 * REQUESTS, REQUESTS)


@pytest.mark.skipif(
    not HAS_MOVIELENS, reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR"
)
def test_simulate_a_local_url_rewards_on_the_servers_reward_route(tmp_path: Path, capsys):
    """BigQuery is a closed port: the rewards wait in the server's spool, one per served event."""
    settings = {"local": {"root": str(tmp_path / "root")}}
    config = PipelineConfig().replace(**settings).validate()
    save_linucb_policy(config.local.serving_model_dir / "1", seed=0)
    config_path = tmp_path / "config.json"
    config_path.write_text(json.dumps(settings))
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    nowhere = BigQueryEndpoints("local-proj", f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")
    with ServingProcess(config, nowhere) as server:
        status = cli.main(
            ["simulate", "--url", server.url, "--requests", "12", "--config", str(config_path)]
        )
        server.kill()  # no 30 s flush towards the closed port; the spool is durable
    out = capsys.readouterr().out
    assert status == 0, out
    assert "rewarded            : 12" in out and "errors              : 0" in out
    spool = EventSpool(config.local.spool_path)
    try:
        served = [r.payload["event_id"] for r in spool.peek(100, PREDICTIONS)]
        rewarded = [r.payload["event_id"] for r in spool.peek(100, REWARDS)]
    finally:
        spool.close()
    assert len(served) == 12 and sorted(rewarded) == sorted(served)
