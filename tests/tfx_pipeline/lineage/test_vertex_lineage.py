"""`mlbandits lineage ... --vertex` against the fake Vertex control plane.

A run's ML Metadata is recorded as Vertex AI Pipelines would have recorded the
same run (`vertex_recording`) and served by the fake; every question asked
with `--vertex` must print what the local store prints for that run: the same
tree, JSON and DOT. Three things Vertex cannot know as the local store does
are mapped, and only those: a run's id (a pipeline job id there), an
execution's type (Vertex's `system.ContainerExecution` schema instead of the
TFX component class), and whether a whole-numbered custom property of an
artifact was an int or a double (TFX writes both as a JSON number; the store
reads a whole number as an int). JSON is compared with its number types; the
tree and DOT, whose text shows 5 and 5.0 apart, with whole numbers written
one way on both sides.
"""

import argparse
import dataclasses
import json
import pathlib
import re
import socket
from typing import List, Tuple

import pytest
from google.api_core import client_options, exceptions
from google.auth import credentials as auth_credentials
from google.cloud import aiplatform_v1

from bandit_core.bigquery import clients, tables
from simulation.movielens_data import default_data_dir
from tests.helpers.fake_vertex_server import FakeVertexServer
from tests.tfx_pipeline.lineage.hand_built_run import HandBuiltRun
from tests.tfx_pipeline.lineage.vertex_recording import VertexRecording, record_on_vertex
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.lineage import cli as lineage_cli
from tfx_pipeline.lineage.store import open_store
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.local.emulator import BigQueryEmulator

PROJECT, REGION = "lineage-proj", "us-central1"
LOCATION = f"projects/{PROJECT}/locations/{REGION}"
STORE = f"{LOCATION}/metadataStores/default"
VERTEX_EXECUTION_TYPE = "system.ContainerExecution"
WHOLE_DOUBLE = re.compile(r"(?<![\w.])(-?[0-9]+)\.0(?![0-9.])")
SERVED_EVENT = "served-0001"
NUM_EVENTS = 1000
e2e = pytest.mark.e2e
needs_movielens = pytest.mark.skipif(
    not (default_data_dir() / "u.data").exists(),
    reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
)
QUERY = "SELECT * FROM `p.d.logged` WHERE event_time < TIMESTAMP('2030-01-01T00:00:00+00:00')"


def _config(root: pathlib.Path, endpoint: str, **vertex: str) -> PipelineConfig:
    settings = {"project": PROJECT, "region": REGION, "api_endpoint": endpoint, **vertex}
    return PipelineConfig().replace(local={"root": str(root)}, vertex=settings).validate()


def _cli(argv: List[str], config: PipelineConfig, capsys) -> Tuple[int, str, str]:
    parser = argparse.ArgumentParser(prog="mlbandits")
    lineage_cli.add_lineage_commands(parser.add_subparsers(dest="command"))
    status = lineage_cli.run_lineage_command(parser.parse_args(["lineage", *argv]), config)
    out, err = capsys.readouterr()
    return status, out, err


def _on_vertex(local_text: str, recording: VertexRecording) -> str:
    """The local answer with each run named by its pipeline job."""
    for run_id, job_id in recording.job_ids.items():
        local_text = local_text.replace(run_id, job_id)
    return local_text


def _whole_numbers_one_way(text: str) -> str:
    return WHOLE_DOUBLE.sub(r"\1", text)


def _typed_json(answer: str) -> str:
    """JSON in one canonical text, so that 5 and 5.0 differ."""
    return json.dumps(json.loads(answer), sort_keys=True)


def _vertex_json(local_json: str, recording: VertexRecording) -> str:
    answer = json.loads(_on_vertex(local_json, recording))
    for node in answer.get("nodes", []) if isinstance(answer, dict) else []:
        if node["kind"] == "execution":
            node["type_name"] = VERTEX_EXECUTION_TYPE
        if node["kind"] == "artifact":
            node["custom_properties"] = {
                name: int(v) if isinstance(v, float) and v.is_integer() else v
                for name, v in node["custom_properties"].items()
            }
    return json.dumps(answer, sort_keys=True)


def assert_same_answers(
    argv: List[str],
    store_path: pathlib.Path,
    config: PipelineConfig,
    recording: VertexRecording,
    capsys,
    tmp_path: pathlib.Path,
) -> str:
    """Asks locally and on Vertex as tree, JSON and (for graphs) DOT; returns the tree."""
    graph = argv[0] != "runs"
    answers = {}
    for where, extra in (("local", ["--metadata", str(store_path)]), ("vertex", ["--vertex"])):
        dot = ["--dot", str(tmp_path / f"{where}.dot")] if graph else []
        status, tree, err = _cli([*argv, *extra, *dot], config, capsys)
        assert status == 0, err
        status, as_json, err = _cli([*argv, *extra, "--json"], config, capsys)
        assert status == 0, err
        dot_text = (tmp_path / f"{where}.dot").read_text() if graph else ""
        answers[where] = (tree, as_json, dot_text)
    (tree, as_json, dot_text), (vertex_tree, vertex_json, vertex_dot) = answers.values()
    assert _typed_json(vertex_json) == _vertex_json(as_json, recording)
    assert _whole_numbers_one_way(vertex_tree) == _whole_numbers_one_way(
        _on_vertex(tree, recording)
    )
    assert _whole_numbers_one_way(vertex_dot) == _whole_numbers_one_way(
        _on_vertex(dot_text, recording)
    )
    return vertex_tree


@pytest.fixture
def hand_built(tmp_path):
    """A run with a Generator's table read by ExampleGen, through to a pushed model, and a
    Reporter beside the Trainer that the model does not derive from."""
    path = tmp_path / "metadata.sqlite"
    steps = HandBuiltRun(path)
    batch = steps.run(
        "Generator", {}, {"batch": ("Batch", {"table": "p.d.logged", "rows_written": 300})}
    )
    input_config = json.dumps({"splits": [{"name": "single_split", "pattern": QUERY}]})
    examples = steps.run(
        "ExampleGen", {}, {"examples": ("Examples", {})}, {"input_config": input_config}
    )
    model = steps.run("Trainer", {"examples": examples}, {"model": ("Model", {"upper": 5.0})})
    steps.run("Reporter", {"examples": examples}, {"report": ("Report", {"mean": 0.5})})
    blessing = steps.run("Evaluator", {"model": model}, {"blessing": ("ModelBlessing", {})})
    steps.run(
        "Pusher",
        {"model": model, "model_blessing": blessing},
        {"pushed_model": ("PushedModel", {"pushed": 1, "pushed_version": "42"})},
    )
    return path, {"batch": batch.id, "model": model.id, "examples": examples.id}


@pytest.fixture
def fake():
    with FakeVertexServer() as server:
        yield server


def test_vertex_answers_equal_local_answers(hand_built, fake, tmp_path, capsys):
    path, ids = hand_built
    recording = record_on_vertex(open_store(path), LOCATION)
    fake.metadata.load(**recording.resources())
    fake.metadata.page_size = 1  # a list of several takes several pages
    config = _config(tmp_path, fake.endpoint)

    tree = assert_same_answers(
        ["trace-model", "--model-version", "42"], path, config, recording, capsys, tmp_path
    )
    for argv in (
        ["runs"],
        ["downstream", str(ids["batch"])],
        ["show", str(ids["model"])],
        ["show", "--type", "Model"],
        ["show", "--uri", "/runs/ExampleGen/examples/"],
    ):
        assert_same_answers(argv, path, config, recording, capsys, tmp_path)

    assert "reads BigQuery table p.d.logged" in tree and "written by Batch #" in tree
    assert "Reporter" not in tree
    pages = [r for r in fake.vertex_requests() if r.path.endswith("/executions")]
    assert len(pages) > 1 and "pageToken" in pages[-1].query


def test_vertex_errors_say_what_exists_and_what_to_do(hand_built, fake, tmp_path, capsys):
    path, _ = hand_built
    fake.metadata.load(**record_on_vertex(open_store(path), LOCATION).resources())
    config = _config(tmp_path, fake.endpoint)

    for argv, message in (
        (["downstream", "99999"], "no artifact with id 99999"),
        (["trace-model", "--model-version", "v0"], "no pushed model has model_version 'v0'.*42"),
        (["show", "--type", "Nope"], "types in this store: Batch, Examples, Model"),
        (["show", "--uri", "gs://nowhere"], "no artifact has uri 'gs://nowhere'"),
    ):
        status, _, err = _cli([*argv, "--vertex"], config, capsys)
        assert status == 1
        assert err.startswith("mlbandits lineage: ")
        assert re.search(message, err), err

    no_project = PipelineConfig().replace(local={"root": str(tmp_path)})
    status, _, err = _cli(["runs", "--vertex"], no_project, capsys)
    assert status == 1 and "--vertex needs vertex.project" in err and '"vertex" section' in err


def test_an_empty_location_has_no_runs(fake, tmp_path, capsys):
    status, _, err = _cli(["runs", "--vertex"], _config(tmp_path, fake.endpoint), capsys)
    assert status == 1 and "no pipeline runs yet" in err


def test_unreachable_vertex_is_reported_with_the_endpoint(tmp_path, capsys):
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    status, _, err = _cli(["runs", "--vertex"], _config(tmp_path, closed), capsys)
    assert status == 1
    assert f"cannot reach Vertex AI at {closed}" in err and "vertex.api_endpoint" in err


def test_missing_credentials_are_reported_with_the_fix(tmp_path, capsys, monkeypatch):
    """Google's endpoint needs application default credentials; none are found here."""
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(tmp_path / "absent.json"))
    status, _, err = _cli(["runs", "--vertex"], _config(tmp_path, ""), capsys)
    assert status == 1 and "gcloud auth application-default login" in err


def test_vertex_excludes_the_local_store_options(tmp_path, capsys):
    config = PipelineConfig().replace(local={"root": str(tmp_path)})
    with pytest.raises(SystemExit):
        _cli(["runs", "--vertex", "--metadata", str(tmp_path / "m.sqlite")], config, capsys)
    assert "not allowed with argument" in capsys.readouterr().err


def test_records_without_numeric_ids_are_refused_by_name(hand_built, fake, tmp_path, capsys):
    """Only what Vertex Pipelines records (numeric ids) is traced; a hand-made artifact
    read by the trainer stops the trace with its name, not with a crash."""
    path, _ = hand_built
    recording = record_on_vertex(open_store(path), LOCATION)
    handmade = f"{STORE}/artifacts/my-notes"
    trainer = next(e["name"] for e in recording.executions if e.get("displayName") == "Trainer")
    fake.metadata.load(
        artifacts=[*recording.artifacts, {"name": handmade, "schemaTitle": "system.Artifact"}],
        executions=recording.executions,
        events=[*recording.events, {"artifact": handmade, "execution": trainer, "type": "INPUT"}],
        pipeline_jobs=recording.pipeline_jobs,
    )
    status, _, err = _cli(
        ["trace-model", "--model-version", "42", "--vertex"],
        _config(tmp_path, fake.endpoint),
        capsys,
    )
    assert status == 1 and f"{handmade} has a non-numeric id" in err


def test_the_fake_refuses_what_vertex_refuses(fake):
    """Malformed filters, paging and stores get Google's errors through Google's client."""
    client = aiplatform_v1.MetadataServiceClient(
        credentials=auth_credentials.AnonymousCredentials(),
        transport="rest",
        client_options=client_options.ClientOptions(api_endpoint=fake.endpoint),
    )
    for bad_filter in (
        "colour = blue",
        'create_time < "yesterday"',
        'metadata.rows.number_value = "many"',
        "uri =",
    ):
        with pytest.raises(exceptions.BadRequest):
            list(client.list_artifacts(request={"parent": STORE, "filter": bad_filter}))
    with pytest.raises(exceptions.BadRequest):
        list(client.list_artifacts(request={"parent": STORE, "page_token": "nonsense"}))
    with pytest.raises(exceptions.NotFound):
        list(client.list_artifacts(parent=f"{LOCATION}/metadataStores/other"))
    with pytest.raises(exceptions.NotFound):
        client.query_artifact_lineage_subgraph(artifact=f"{STORE}/artifacts/1")
    with pytest.raises(ValueError, match="not a Artifact"):
        fake.metadata.load([{"name": f"{STORE}/artifacts/1", "colour": "blue"}], [], [], [])


@dataclasses.dataclass(frozen=True)
class TrainedRun:
    config: PipelineConfig
    emulator: BigQueryEmulator
    fake: FakeVertexServer
    recording: VertexRecording
    version: str
    batch_id: int


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One training DAG, one served prediction logged for its model, and the run as Vertex
    AI Pipelines would have recorded it, served by the fake control plane."""
    root = tmp_path_factory.mktemp("vertex-lineage")
    config = (
        PipelineConfig()
        .replace(
            local={"root": str(root), "beam_workers": 1},
            generator={"num_events": NUM_EVENTS, "seed": 7},
            evaluator={"blessing_estimator": "dm", "blessing_comparison": "point_estimate"},
        )
        .validate()
    )
    with BigQueryEmulator(data_dir=tmp_path_factory.mktemp("bigquery")) as emulator:
        local_runner.run_pipeline(config, emulator.endpoints)
        store = open_store(config.local.metadata_path)
        (pushed,) = store.get_artifacts_by_type("PushedModel")
        version = pushed.custom_properties["pushed_version"].string_value
        (batch,) = [a for a in store.get_artifacts() if a.custom_properties.get("table")]
        _log_prediction(emulator, config, version)
        recording = record_on_vertex(store, LOCATION)
        with FakeVertexServer() as fake:
            fake.metadata.load(**recording.resources())
            yield TrainedRun(config, emulator, fake, recording, version, batch.id)


def _log_prediction(emulator: BigQueryEmulator, config: PipelineConfig, version: str) -> None:
    """What the prediction server logs for one request the pushed model answered."""
    prediction = {
        "event_id": SERVED_EVENT,
        "event_time": "2026-06-01T08:00:00+00:00",
        "user_id": 7,
        "observation": [0.5] * config.movielens.observation_dim,
        "action": 3,
        "propensity": 0.25,
        "model_version": version,
        "policy_id": "LinUCB",
    }
    client = clients.make_bigquery_client(emulator.endpoints)
    bq = config.bigquery
    table = tables.ensure_table(client, bq.dataset, bq.predictions_table, tables.PREDICTIONS_SCHEMA)
    tables.insert_rows(client, table, [prediction])


@e2e
@needs_movielens
@pytest.mark.parametrize("question", ["trace-model", "trace-event", "downstream", "show", "runs"])
def test_a_trained_run_answers_the_same_on_vertex(trained, question, capsys, tmp_path):
    bq_endpoint = ["--bigquery-endpoint", trained.emulator.rest_endpoint]
    argv = {
        "trace-model": ["trace-model", "--model-version", trained.version],
        "trace-event": ["trace-event", SERVED_EVENT, *bq_endpoint],
        "downstream": ["downstream", str(trained.batch_id)],
        "show": ["show", "--type", "Model"],
        "runs": ["runs"],
    }[question]
    config = _config(
        trained.config.local.root_dir,
        trained.fake.endpoint,
        bigquery_project=trained.config.bigquery.project,
    )
    store_path = trained.config.local.metadata_path

    tree = assert_same_answers(argv, store_path, config, trained.recording, capsys, tmp_path)

    (job_id,) = trained.recording.job_ids.values()
    if question == "runs":
        assert tree.startswith(f"movielens-bandits-train  run {job_id}  COMPLETE")
    if question in ("trace-model", "trace-event"):
        assert f"run movielens-bandits-train {job_id}" in tree
        assert "MovieLensGenerator" in tree and "rows = train=" in tree
