"""Lineage over a real store: a training run, a retraining run over served predictions,
then traces up and down, by model version, push directory and event id, and the errors."""

import argparse
import collections
import dataclasses
import json
import pathlib
import shutil
import sqlite3

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from bandit_core.bigquery import clients, tables
from custom_components.bigquery_ingester import queries
from custom_components.movielens_generator import logged_data
from custom_components.movielens_generator.component import LoggedInteractions
from simulation.bandit_loader import load_movielens_bandit
from simulation.movielens_data import default_data_dir
from tests.tfx_pipeline.lineage.hand_built_run import HandBuiltRun
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.lineage import cli as lineage_cli
from tfx_pipeline.lineage.graph import LineageEdge, LineageGraph, LineageNode
from tfx_pipeline.lineage.lineage_store import UPSTREAM
from tfx_pipeline.lineage.mlmd_store import MlmdLineageStore
from tfx_pipeline.lineage.queries import (
    find_pushed_model,
    list_runs,
    show_artifact,
    trace_downstream,
    trace_event,
    trace_upstream,
)
from tfx_pipeline.lineage.rendering import render_graphviz, to_dot, to_tree_text
from tfx_pipeline.lineage.store import LineageError, open_store
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.local.emulator import BigQueryEmulator

e2e = pytest.mark.e2e
needs_movielens = pytest.mark.skipif(
    not (default_data_dir() / "u.data").exists(),
    reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
)

NUM_EVENTS = 1000
NUM_SERVED = 400
SERVED_EVENT = "served-0005"
BATCH = LoggedInteractions.TYPE_NAME  # the Generator's output type, whatever it is named
WINDOW = ("2000-01-01T00:00:00+00:00", "2100-01-01T00:00:00+00:00")
SERVED_AT = "2026-06-01T08:00:00+00:00"
TRAINING_EDGES = {
    ("MovieLensGenerator", "output", BATCH),
    (BATCH, "wrote", "table local-proj.mlbandits.logged_interactions"),
    ("table local-proj.mlbandits.logged_interactions", "reads", "BigQueryExampleGen"),
    ("BigQueryExampleGen", "output", "Examples"),
    ("Examples", "input", "StatisticsGen"),
    ("StatisticsGen", "output", "ExampleStatistics"),
    ("ExampleStatistics", "input", "ExampleValidator"),
    ("BanditSchemaGen", "output", "Schema"),
    ("Schema", "input", "ExampleValidator"),
    ("ExampleValidator", "output", "ExampleAnomalies"),
    ("ExampleAnomalies", "input", "BanditTrainer"),
    ("Examples", "input", "BanditTrainer"),
    ("BanditTrainer", "output", "Model"),
    ("Model", "input", "Pusher"),
    ("Model", "input", "PolicyEvaluator"),
    ("Examples", "input", "PolicyEvaluator"),
    ("PolicyEvaluator", "output", "ModelBlessing"),
    ("ModelBlessing", "input", "Pusher"),
    ("Pusher", "output", "PushedModel"),
}


@dataclasses.dataclass(frozen=True)
class TwoRuns:
    config: PipelineConfig
    emulator: BigQueryEmulator
    first_version: str
    second_version: str

    @property
    def store_path(self) -> pathlib.Path:
        return self.config.local.metadata_path

    def store(self) -> MlmdLineageStore:
        return MlmdLineageStore(open_store(self.store_path))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Trains from the Generator, serves 200 predictions with that model, retrains on them."""
    root = tmp_path_factory.mktemp("lineage")
    config = (
        PipelineConfig()
        .replace(
            local={"root": str(root), "beam_workers": 1},
            generator={"num_events": NUM_EVENTS, "seed": 7},
            evaluator={"blessing_estimator": "dm", "blessing_comparison": "point_estimate"},
        )
        .validate()
    )
    retrain_config = config.replace(ingestion={"window_start": WINDOW[0], "window_end": WINDOW[1]})
    with BigQueryEmulator(data_dir=tmp_path_factory.mktemp("bigquery")) as emulator:
        local_runner.run_pipeline(config, emulator.endpoints)
        (first,) = _pushed_versions(config)
        _log_served_predictions(emulator, config, first)
        local_runner.run_pipeline(retrain_config, emulator.endpoints, retraining=True)
        (second,) = set(_pushed_versions(config)) - {first}
        yield TwoRuns(config, emulator, first, second)


def _pushed_versions(config: PipelineConfig) -> list:
    store = open_store(config.local.metadata_path)
    return [
        a.custom_properties["pushed_version"].string_value
        for a in store.get_artifacts_by_type("PushedModel")
    ]


def _log_served_predictions(
    emulator: BigQueryEmulator, config: PipelineConfig, version: str
) -> None:
    """What the prediction server and the reward reporter would have logged."""
    bandit = load_movielens_bandit("", config.movielens.rank_k, config.movielens.num_actions)
    batch = logged_data.simulate_uniform_logging(bandit, NUM_SERVED, seed=99)
    # A fixed time: ExampleGen hashes whole examples into splits, event time included,
    # so a fixed time keeps the retraining split, and with it the blessing, the same.
    now = SERVED_AT
    ids = [f"served-{i:04d}" for i in range(NUM_SERVED)]
    predictions = [
        {
            "event_id": ids[i],
            "event_time": now,
            "user_id": int(batch.user_ids[i]),
            "observation": [float(x) for x in batch.observations[i]],
            "action": int(batch.actions[i]),
            "propensity": float(batch.propensities[i]),
            "model_version": version,
            "policy_id": "LinUCB",
        }
        for i in range(NUM_SERVED)
    ]
    rewards = [
        {"event_id": ids[i], "reward_time": now, "reward": float(batch.rewards[i])}
        for i in range(NUM_SERVED)
    ]
    client = clients.make_bigquery_client(emulator.endpoints)
    bq = config.bigquery
    for table, schema, rows in (
        (bq.predictions_table, tables.PREDICTIONS_SCHEMA, predictions),
        (bq.rewards_table, tables.REWARDS_SCHEMA, rewards),
    ):
        tables.insert_rows(client, tables.ensure_table(client, bq.dataset, table, schema), rows)


def _label(node: LineageNode) -> str:
    if node.kind == "execution":
        return node.name
    if node.kind == "table":
        return f"table {node.name}"
    return node.type_name


def _type_edges(graph: LineageGraph) -> set:
    return {
        (_label(graph.nodes[e.source]), e.kind, _label(graph.nodes[e.target])) for e in graph.edges
    }


def _one(graph: LineageGraph, label: str) -> LineageNode:
    (node,) = [n for n in graph.nodes.values() if _label(n) == label]
    return node


def _cli(argv: list, config: PipelineConfig) -> int:
    parser = argparse.ArgumentParser(prog="mlbandits")
    lineage_cli.add_lineage_commands(parser.add_subparsers(dest="command"))
    return lineage_cli.run_lineage_command(parser.parse_args(["lineage", *argv]), config)


@e2e
@needs_movielens
def test_trained_model_traces_back_to_query_rows_and_generator(runs):
    store = runs.store()
    graph = trace_upstream(store, find_pushed_model(store, model_version=runs.first_version).id)

    assert _type_edges(graph) == TRAINING_EDGES
    assert collections.Counter(map(_label, graph.nodes.values())).most_common(1)[0][1] == 1
    assert graph.nodes[graph.root].type_name == "PushedModel"
    example_gen = _one(graph, "BigQueryExampleGen")
    bq = runs.config.bigquery
    assert example_gen.facts["query"] == queries.build_accepted_query(
        queries.build_examples_query(f"{bq.project}.{bq.dataset}.{bq.table}"),
        runs.config.data_contract,
    )
    assert example_gen.facts["window"] == {"column": "", "start": "", "end": ""}
    examples = _one(graph, "Examples")
    assert examples.facts["rows_total"] == NUM_EVENTS == example_gen.facts["rows_total"]
    assert set(examples.facts["rows_per_split"]) == {"train", "eval"}
    assert _one(graph, BATCH).property("rows_written") == NUM_EVENTS
    assert _one(graph, "MovieLensGenerator").property("seed") == 7
    assert _one(graph, "BanditTrainer").property("agent") == "LinUCB"
    assert _one(graph, "Pusher").state == "COMPLETE"
    run_ids = {n.run_id for n in graph.nodes.values() if n.kind != "table"}
    assert len(run_ids) == 1 and "" not in run_ids


@e2e
@needs_movielens
def test_retrained_model_traces_to_the_serving_log_window_in_its_own_run(runs):
    store = runs.store()
    first = trace_upstream(store, find_pushed_model(store, model_version=runs.first_version).id)
    second = trace_upstream(store, find_pushed_model(store, model_version=runs.second_version).id)

    bq = runs.config.bigquery
    prefix = f"{bq.project}.{bq.dataset}"
    predictions, rewards = (
        f"table {prefix}.{bq.predictions_table}",
        f"table {prefix}.{bq.rewards_table}",
    )
    example_gen = _one(second, "BigQueryExampleGen")
    assert {
        (predictions, "reads", "BigQueryExampleGen"),
        (rewards, "reads", "BigQueryExampleGen"),
    } <= _type_edges(second)
    assert not second.predecessors(_one(second, predictions).key)
    assert "MovieLensGenerator" not in map(_label, second.nodes.values())
    assert example_gen.facts["query"] == queries.build_accepted_query(
        queries.build_serving_logs_query(
            f"{prefix}.{bq.predictions_table}", f"{prefix}.{bq.rewards_table}", *WINDOW
        ),
        runs.config.data_contract,
    )
    assert example_gen.facts["window"] == {
        "column": "p.event_time",
        "start": WINDOW[0],
        "end": WINDOW[1],
    }
    assert _one(second, "Examples").facts["rows_total"] == NUM_SERVED
    first_runs = {n.run_id for n in first.nodes.values() if n.kind == "execution"}
    second_runs = {n.run_id for n in second.nodes.values() if n.kind == "execution"}
    assert len(first_runs) == len(second_runs) == 1 and first_runs != second_runs
    assert {n.pipeline for n in second.nodes.values() if n.kind == "execution"} == {
        "movielens-bandits-retrain"
    }


@e2e
@needs_movielens
def test_downstream_of_the_first_data_finds_exactly_the_first_model(runs):
    store = runs.store()
    (examples, _) = sorted(store.artifacts_of_type("Examples"), key=lambda a: a.id)
    (batch,) = store.artifacts_of_type(BATCH)

    from_examples = trace_downstream(store, examples.id)
    from_batch = trace_downstream(store, batch.id)

    for graph in (from_examples, from_batch):
        pushed = [n.property("pushed_version") for n in graph.of_type("PushedModel")]
        assert pushed == [runs.first_version]
        assert len(graph.of_type("Model")) == 1
    table = "table local-proj.mlbandits.logged_interactions"
    assert {(BATCH, "wrote", table), (table, "reads", "BigQueryExampleGen")} <= _type_edges(
        from_batch
    )


@e2e
@needs_movielens
def test_trace_model_by_push_directory_matches_trace_by_version(runs):
    store = runs.store()
    by_version = find_pushed_model(store, model_version=runs.second_version)
    by_dir = find_pushed_model(
        store, push_dir=str(runs.config.local.serving_model_dir / runs.second_version) + "/"
    )
    assert by_dir.id == by_version.id


@e2e
@needs_movielens
def test_trace_event_reaches_the_model_that_served_it(runs, capsys, tmp_path):
    dot = tmp_path / "event.dot"
    argv = [
        "trace-event",
        SERVED_EVENT,
        "--metadata",
        str(runs.store_path),
        "--json",
        "--dot",
        str(dot),
    ]
    assert _cli(argv + ["--bigquery-endpoint", runs.emulator.rest_endpoint], runs.config) == 0

    out, err = capsys.readouterr()
    graph = json.loads(out)
    nodes = {n["key"]: n for n in graph["nodes"]}
    assert graph["root"] == f"prediction:{SERVED_EVENT}"
    assert nodes[graph["root"]]["properties"]["model_version"] == runs.first_version
    (served,) = [e for e in graph["edges"] if e["kind"] == "served"]
    assert nodes[served["source"]]["custom_properties"]["pushed_version"] == runs.first_version
    assert "MovieLensGenerator" in {n["name"] for n in nodes.values()}
    assert dot.read_text().startswith("digraph lineage {")
    if shutil.which("dot"):
        assert dot.with_suffix(".svg").read_text().lstrip().startswith("<?xml")
    else:
        assert "not installed" in err


@e2e
@needs_movielens
def test_cli_prints_a_tree_runs_and_artifacts(runs, capsys):
    assert _cli(["trace-model", "--model-version", runs.first_version], runs.config) == 0
    tree = capsys.readouterr().out
    assert tree.startswith("PushedModel #")
    assert "reads BigQuery table local-proj.mlbandits.logged_interactions" in tree
    assert "rows = train=" in tree and f"(total {NUM_EVENTS}, from StatisticsGen)" in tree

    assert _cli(["runs", "--json"], runs.config) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [(r["pipeline"], r["status"]) for r in listed] == [
        ("movielens-bandits-train", "COMPLETE"),
        ("movielens-bandits-retrain", "COMPLETE"),
    ]
    assert [e["node"] for e in listed[1]["executions"]][-1] == "Pusher"
    assert "MovieLensGenerator" not in {e["node"] for e in listed[1]["executions"]}
    assert all(r["start"] <= r["end"] for r in listed)

    store = runs.store()
    latest = show_artifact(store, type_name="Model")
    (model,) = latest.of_type("Model")
    assert model.run_id == _one(latest, "BanditTrainer").run_id
    assert show_artifact(store, uri=model.uri).root == latest.root
    assert _cli(["show", str(model.id)], runs.config) == 0
    shown = capsys.readouterr().out
    assert (
        shown.startswith(f"Model #{model.id}") and "produced by:" in shown and "(as model)" in shown
    )


@e2e
@needs_movielens
def test_a_connection_config_file_opens_the_same_store(runs, tmp_path, capsys):
    config_file = tmp_path / "mlmd.pbtxt"
    config_file.write_text(
        f'sqlite {{ filename_uri: "{runs.store_path}" connection_mode: READONLY }}'
    )
    assert _cli(["runs", "--metadata-config", str(config_file)], runs.config) == 0
    assert "movielens-bandits-retrain" in capsys.readouterr().out


@e2e
@needs_movielens
def test_unknown_ids_versions_and_events_say_what_exists(runs):
    store = runs.store()
    with pytest.raises(LineageError, match="no artifact with id 99999"):
        trace_upstream(store, 99999)
    with pytest.raises(LineageError, match="no artifact with id 99999"):
        trace_downstream(store, 99999)
    with pytest.raises(
        LineageError, match=f"no pushed model has model_version 'v0'.*{runs.first_version}"
    ):
        find_pushed_model(store, model_version="v0")
    with pytest.raises(LineageError, match="no pushed model has push directory"):
        find_pushed_model(store, push_dir="/nowhere")
    with pytest.raises(LineageError, match="types in this store: .*PushedModel"):
        show_artifact(store, type_name="Nope")
    client = clients.make_bigquery_client(runs.emulator.endpoints)
    bq = runs.config.bigquery
    with pytest.raises(LineageError, match="no prediction with event_id 'nope'"):
        trace_event(store, client, f"{bq.project}.{bq.dataset}.{bq.predictions_table}", "nope")
    with pytest.raises(LineageError, match="does not exist"):
        trace_event(store, client, f"{bq.project}.{bq.dataset}.missing", SERVED_EVENT)


def test_missing_empty_and_garbage_stores_are_refused_untouched(tmp_path):
    empty = tmp_path / "empty.sqlite"
    empty.touch()
    garbage = tmp_path / "garbage.sqlite"
    garbage.write_bytes(b"definitely not sqlite\n" * 50)
    broken = tmp_path / "broken.sqlite"
    broken.write_bytes(b"SQLite format 3\x00" + b"\xff" * 4000)
    foreign = tmp_path / "foreign.sqlite"
    with sqlite3.connect(foreign) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    cases = {
        tmp_path / "absent.sqlite": "no ML Metadata store at",
        tmp_path: "no ML Metadata store at",
        empty: "is an empty file",
        garbage: "is not a SQLite database",
        broken: "is a corrupt SQLite database",
        foreign: "without ML Metadata tables",
    }
    for path, message in cases.items():
        before = path.read_bytes() if path.is_file() else None
        with pytest.raises(LineageError, match=message):
            open_store(path)
        assert (path.read_bytes() if path.is_file() else None) == before
    assert not (tmp_path / "absent.sqlite").exists()


def test_a_store_without_runs_says_so(tmp_path):
    path = tmp_path / "metadata.sqlite"
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    metadata_store.MetadataStore(config)

    store = open_store(path)  # an MLMD store as such, as Python callers pass it
    with pytest.raises(LineageError, match="no pipeline runs yet"):
        list_runs(store)
    with pytest.raises(LineageError, match="holds no pushed models"):
        find_pushed_model(store, model_version="1")


def test_cli_reports_errors_on_stderr_with_exit_code_1(tmp_path, capsys):
    config = PipelineConfig().replace(local={"root": str(tmp_path)}).validate()
    assert _cli(["runs"], config) == 1
    assert "no ML Metadata store at" in capsys.readouterr().err
    mysql = tmp_path / "mysql.pbtxt"
    mysql.write_text('mysql { host: "127.0.0.1" port: 1 database: "mlmd" }')
    assert (
        _cli(["trace-model", "--model-version", "1", "--metadata-config", str(mysql)], config) == 1
    )
    assert "cannot open the configured ML Metadata store" in capsys.readouterr().err
    nonsense = tmp_path / "nonsense.pbtxt"
    nonsense.write_text("hello: world")
    assert _cli(["runs", "--metadata-config", str(nonsense)], config) == 1
    assert "neither an MLMD ConnectionConfig" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        _cli(["downstream", "abc"], config)
    assert "is not an artifact id" in capsys.readouterr().err


def test_dot_output_and_rendering_without_graphviz(tmp_path, monkeypatch):
    graph = LineageGraph(
        root="artifact:2",
        direction=UPSTREAM,
        nodes={
            "artifact:2": LineageNode("artifact:2", "artifact", "Model", id=2, run_id='r"1'),
            "execution:1": LineageNode("execution:1", "execution", "Trainer", id=1, name="Trainer"),
        },
        edges=[LineageEdge("execution:1", "artifact:2", "output", "model")],
    )
    dot = to_dot(graph)
    assert '"execution:1" -> "artifact:2" [label="model"];' in dot
    assert 'run r\\"1' in dot and "penwidth" in dot
    monkeypatch.setenv("PATH", "")
    assert render_graphviz(dot, tmp_path / "g.svg") is None
    assert to_tree_text(graph).splitlines()[1].startswith("└── made by Trainer (execution #1")


def test_tracing_follows_events_not_component_names(tmp_path):
    """A hand-built store: an Evaluator between Trainer and Pusher, the batch's
    table recorded as a custom property; neither needs any change to the tracer."""
    path = tmp_path / "metadata.sqlite"
    steps = HandBuiltRun(path)
    batch = steps.run("Generator", {}, {"batch": ("Batch", {"table": "p.d.logged"})})
    query = "SELECT * FROM `p.d.logged` WHERE event_time < TIMESTAMP('2030-01-01T00:00:00+00:00')"
    input_config = json.dumps({"splits": [{"name": "single_split", "pattern": query}]})
    examples = steps.run(
        "ExampleGen", {}, {"examples": ("Examples", {})}, {"input_config": input_config}
    )
    model = steps.run("Trainer", {"examples": examples}, {"model": ("Model", {})})
    blessing = steps.run("Evaluator", {"model": model}, {"blessing": ("ModelBlessing", {})})
    steps.run(
        "Pusher",
        {"model": model, "model_blessing": blessing},
        {"pushed_model": ("PushedModel", {"pushed": 1, "pushed_version": "42"})},
    )

    store = MlmdLineageStore(open_store(path))
    graph = trace_upstream(store, find_pushed_model(store, model_version="42").id)

    assert ("Evaluator", "output", "ModelBlessing") in _type_edges(graph)
    assert ("ModelBlessing", "input", "Pusher") in _type_edges(graph)
    assert {
        ("Batch", "wrote", "table p.d.logged"),
        ("table p.d.logged", "reads", "ExampleGen"),
    } <= (_type_edges(graph))
    assert _one(graph, "ExampleGen").facts["window"]["end"] == "2030-01-01T00:00:00+00:00"
    assert "rows_total" not in _one(graph, "Examples").facts
    downstream = trace_downstream(store, batch.id)
    assert [n.property("pushed_version") for n in downstream.of_type("PushedModel")] == ["42"]


def test_table_names_with_filter_syntax_neither_break_nor_widen_the_table_links(tmp_path):
    """Table properties go into MLMD filter strings: a quote must not break the query,
    and LIKE's `_` or a case difference must not link a batch to another table."""
    steps = HandBuiltRun(tmp_path / "metadata.sqlite")
    quoted, exact, *lookalikes = [
        steps.run(f"Generator{i}", {}, {"batch": ("Batch", {"table": table})})
        for i, table in enumerate(
            ("p.d.it's 100%", "p.d.log_ed", "p.d.logxed", "p.d.LOG_ED", "p.d.log%ed")
        )
    ]
    query = "SELECT * FROM `p.d.log_ed`"
    input_config = json.dumps({"splits": [{"name": "single_split", "pattern": query}]})
    examples = steps.run(
        "ExampleGen", {}, {"examples": ("Examples", {})}, {"input_config": input_config}
    )

    store = MlmdLineageStore(open_store(tmp_path / "metadata.sqlite"))
    assert list(trace_downstream(store, quoted.id).nodes) == [f"artifact:{quoted.id}"]
    writers = {e.source for e in trace_upstream(store, examples.id).edges if e.kind == "wrote"}
    assert writers == {f"artifact:{exact.id}"}
    for lookalike in lookalikes:
        assert trace_downstream(store, lookalike.id).of_type("Examples") == []
    assert [n.id for n in trace_downstream(store, exact.id).of_type("Examples")] == [examples.id]
