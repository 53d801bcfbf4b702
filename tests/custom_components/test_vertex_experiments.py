"""The Vertex AI Experiments writer against the fake control plane, read back from the fake.

The fake parses every request strictly into its `aiplatform_v1` type and answers
404/409/400 as Vertex does, so these tests show the writer sends what the API
accepts, reuses what exists, and says what to do when it cannot record.
"""

import json
import math
import socket

import pytest

from bandit_core.summary_writer import SummaryWriter
from custom_components import vertex_experiments
from custom_components.vertex_calls import (
    VertexCaller,
    VertexCallError,
    VertexLocation,
)
from custom_components.vertex_experiments import (
    ExperimentsWriter,
    ExperimentTarget,
)
from custom_components.vertex_tensorboard import (
    ScalarPoint,
    TensorboardRunWriter,
)
from tests.helpers.fake_vertex_server import FakeVertexServer
from tests.helpers.summary_events import read_scalars

PROJECT, REGION = "my-proj", "us-central1"
STORE = f"projects/{PROJECT}/locations/{REGION}/metadataStores/default"
TENSORBOARD = f"projects/{PROJECT}/locations/{REGION}/tensorboards/42"
EXPERIMENT = "movielens-bandits"
RUN = "movielens-bandits-retrain-20261201030000"
RUN_CONTEXT = f"{STORE}/contexts/{EXPERIMENT}-{RUN}"
TB_RUN = f"{TENSORBOARD}/experiments/{EXPERIMENT}/runs/{RUN}"


@pytest.fixture
def fake():
    with FakeVertexServer() as server:
        server.experiments.add_tensorboard(TENSORBOARD)
        server.experiments.page_size = 2  # so that listing the time series pages
        yield server


def target(fake: FakeVertexServer, **change: str) -> ExperimentTarget:
    values = dict(
        project=PROJECT,
        region=REGION,
        experiment=EXPERIMENT,
        tensorboard=TENSORBOARD,
        api_endpoint=fake.endpoint,
    )
    return ExperimentTarget(**{**values, **change})


@pytest.fixture
def logdir(tmp_path):
    """A TensorBoard run as the trainer writes it: a loss curve and per-arm snapshots."""
    directory = str(tmp_path / "train")
    with SummaryWriter(directory) as writer:
        for step in range(5):
            writer.scalar("loss/epoch", 2.0 / (step + 1), step)
        for arm, rows in enumerate((30, 12, 7)):
            writer.scalar(f"arm_rows/arm_{arm}", float(rows), 0)
        writer.histogram("predicted_reward/arm_0", [0.1, 0.2, 0.4], 0)
    return directory


def run_metadata(fake: FakeVertexServer) -> dict:
    return fake.experiments.contexts[RUN_CONTEXT]["metadata"]


def test_a_run_is_recorded_as_the_sdk_records_it(fake, logdir):
    writer = ExperimentsWriter(target(fake))
    name = writer.log_run(
        RUN, {"agent": "LinUCB", "alpha": 0.5, "train_rows": 49}, {"train_rows": 49},
        vertex_experiments.RUNNING, logdir,
    )

    assert name == RUN_CONTEXT
    experiment = fake.experiments.contexts[f"{STORE}/contexts/{EXPERIMENT}"]
    assert experiment["schemaTitle"] == "system.Experiment"
    assert experiment["metadata"] == {
        "experiment_deleted": False,
        "backing_tensorboard_resource": TENSORBOARD,
    }
    run = fake.experiments.contexts[RUN_CONTEXT]
    assert run["schemaTitle"] == "system.ExperimentRun"
    assert run["displayName"] == RUN
    assert run["parentContexts"] == [experiment["name"]]
    assert run["metadata"] == {
        "_params": {"agent": "LinUCB", "alpha": 0.5, "train_rows": 49},
        "_metrics": {"train_rows": 49},
        "_state": "RUNNING",
    }
    artifact = f"{STORE}/artifacts/{EXPERIMENT}-{RUN}-tb-run"
    assert fake.experiments.context_artifacts[RUN_CONTEXT] == [artifact]
    assert fake.metadata.artifacts[artifact]["schemaTitle"] == "google.VertexTensorboardRun"
    assert fake.metadata.artifacts[artifact]["metadata"]["resourceName"] == TB_RUN
    assert fake.metadata.artifacts[artifact]["uri"] == f"{fake.endpoint}/v1/{TB_RUN}"
    experiments = fake.experiments.tensorboard_experiments
    tb_experiment = experiments[f"{TENSORBOARD}/experiments/{EXPERIMENT}"]
    assert tb_experiment["labels"] == {"vertex_tensorboard_experiment_source": "vertex_experiment"}
    # Every scalar of the log directory, none of its histograms.
    assert fake.experiments.scalars(TB_RUN) == read_scalars(logdir)


def test_the_second_step_adds_to_the_same_run_and_completes_it(fake, logdir, tmp_path):
    writer = ExperimentsWriter(target(fake))
    writer.log_run(RUN, {"agent": "LinUCB"}, {"train_rows": 49}, vertex_experiments.RUNNING, logdir)
    eval_dir = str(tmp_path / "eval")
    with SummaryWriter(eval_dir) as summaries:
        summaries.scalar("candidate/dr", 3.5, 0)
        summaries.scalar("candidate/dr_lower", 3.1, 0)
    ExperimentsWriter(target(fake)).log_run(
        RUN, {"blessing_estimator": "dr"}, {"candidate_dr": 3.5, "blessed": 1},
        vertex_experiments.COMPLETE, eval_dir,
    )

    assert run_metadata(fake) == {
        "_params": {"agent": "LinUCB", "blessing_estimator": "dr"},
        "_metrics": {"train_rows": 49, "candidate_dr": 3.5, "blessed": 1},
        "_state": "COMPLETE",
    }
    assert len(fake.experiments.contexts) == 2
    assert list(fake.experiments.tensorboard_runs) == [TB_RUN]
    assert fake.experiments.scalars(TB_RUN) == {**read_scalars(logdir), **read_scalars(eval_dir)}


def test_a_retried_step_reuses_everything_and_leaves_one_point_per_step(fake, logdir):
    for _ in range(2):
        ExperimentsWriter(target(fake)).log_run(
            RUN, {"agent": "LinUCB"}, {"train_rows": 49}, vertex_experiments.RUNNING, logdir
        )

    writes = [r for r in fake.vertex_requests() if r.path.endswith(":write")]
    assert len(writes) == 2
    assert len(fake.experiments.contexts) == 2
    assert len(fake.experiments.time_series) == len(read_scalars(logdir))
    assert fake.experiments.scalars(TB_RUN) == read_scalars(logdir)
    assert run_metadata(fake)["_metrics"] == {"train_rows": 49}


def test_without_a_tensorboard_only_params_and_metrics_are_recorded(fake, logdir):
    ExperimentsWriter(target(fake, tensorboard="")).log_run(
        RUN, {"agent": "LinTS"}, {"train_rows": 3}, vertex_experiments.RUNNING, logdir
    )

    assert run_metadata(fake)["_params"] == {"agent": "LinTS"}
    assert not any("/tensorboards/" in r.path for r in fake.vertex_requests())
    experiment = fake.experiments.contexts[f"{STORE}/contexts/{EXPERIMENT}"]
    assert vertex_experiments.BACKING_TENSORBOARD_KEY not in experiment["metadata"]


def test_more_points_than_one_write_holds_go_in_several_writes(fake):
    ExperimentsWriter(target(fake)).log_run(RUN, {}, {}, vertex_experiments.RUNNING)
    points = [ScalarPoint("loss/batch", step, step / 7.0, 1.7e9 + step) for step in range(5001)]
    caller = VertexCaller(VertexLocation(PROJECT, REGION, fake.endpoint))
    TensorboardRunWriter(caller, TENSORBOARD).write(TB_RUN, points)

    writes = [r for r in fake.vertex_requests() if r.path.endswith(":write")]
    assert [sum(len(d["values"]) for d in w.body["timeSeriesData"]) for w in writes] == [5000, 1]
    assert fake.experiments.scalars(TB_RUN)["loss/batch"] == [(p.step, p.value) for p in points]


def test_an_experiment_name_taken_by_another_kind_of_context_is_refused(fake):
    name = f"{STORE}/contexts/{EXPERIMENT}"
    fake.experiments.contexts[name] = {"name": name, "schemaTitle": "system.PipelineRun"}
    with pytest.raises(VertexCallError) as raised:
        ExperimentsWriter(target(fake)).log_run(RUN, {}, {}, vertex_experiments.RUNNING)
    assert "invalid setting vertex.experiment" in str(raised.value)
    assert "'system.PipelineRun', not 'system.Experiment'" in str(raised.value)
    assert RUN_CONTEXT not in fake.experiments.contexts


def test_a_missing_tensorboard_is_refused_before_anything_is_written(fake):
    missing = f"projects/{PROJECT}/locations/{REGION}/tensorboards/7"
    with pytest.raises(VertexCallError) as raised:
        ExperimentsWriter(target(fake, tensorboard=missing)).log_run(
            RUN, {}, {}, vertex_experiments.RUNNING
        )
    assert str(raised.value).startswith(f"invalid setting vertex.tensorboard: {missing} does not")
    assert "gcloud ai tensorboards create --region us-central1" in str(raised.value)
    assert fake.experiments.contexts == {}


def test_an_experiment_backed_by_another_tensorboard_is_refused(fake):
    other = f"projects/{PROJECT}/locations/{REGION}/tensorboards/43"
    fake.experiments.add_tensorboard(other)
    ExperimentsWriter(target(fake, tensorboard=other)).log_run(
        RUN, {}, {}, vertex_experiments.RUNNING
    )
    with pytest.raises(VertexCallError) as raised:
        ExperimentsWriter(target(fake)).log_run(RUN, {}, {}, vertex_experiments.RUNNING)
    assert str(raised.value).startswith(
        f"invalid setting vertex.tensorboard: experiment {EXPERIMENT} is backed by {other}"
    )


@pytest.mark.parametrize(
    "run, problem",
    [
        ("{{$.pipeline_job_name}}", "must be 1 to 128 lowercase letters, digits and hyphens"),
        ("Run_1", "must be 1 to 128 lowercase letters, digits and hyphens"),
        ("r" * 104, "is 122 characters, over Vertex AI's 121: shorten vertex.experiment"),
    ],
)
def test_bad_run_names_are_refused_with_the_fix(fake, run, problem):
    with pytest.raises(VertexCallError, match="cannot record the run") as raised:
        ExperimentsWriter(target(fake)).log_run(run, {}, {}, vertex_experiments.RUNNING)
    assert problem in str(raised.value)
    assert fake.vertex_requests() == []


@pytest.mark.parametrize(
    "metrics, message",
    [
        ({"loss": math.nan}, "metric 'loss' is nan; leave undefined values out"),
        ({"blessed": True}, "metric 'blessed': True is not a number or a string"),
        ({"rows": [1, 2]}, "metric 'rows': [1, 2] is not a number or a string"),
    ],
)
def test_values_vertex_cannot_store_are_refused(fake, metrics, message):
    with pytest.raises(ValueError) as raised:
        ExperimentsWriter(target(fake)).log_run(RUN, {}, metrics, vertex_experiments.RUNNING)
    assert str(raised.value) == message


def test_an_unreachable_endpoint_is_retried_then_explained():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = f"http://127.0.0.1:{probe.getsockname()[1]}"
    unreachable = ExperimentTarget(PROJECT, REGION, EXPERIMENT, api_endpoint=closed)
    with pytest.raises(VertexCallError) as raised:
        ExperimentsWriter(unreachable, retry_seconds=0.5).log_run(
            RUN, {}, {}, vertex_experiments.RUNNING
        )
    assert str(raised.value).startswith(
        f"Vertex AI at {closed} did not answer the request to create system.Experiment "
        f"{EXPERIMENT} within 0.5 s"
    )
    assert "check vertex.api_endpoint, the network" in str(raised.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("not json", "vertex_experiment 'not json' is not JSON"),
        ('["a"]', "must be a JSON object of strings with the keys api_endpoint, experiment"),
        ('{"project": "p", "region": "r", "experiment": "e", "colour": "red"}', "JSON object"),
        ('{"project": "p", "region": "r"}', "is incomplete"),
        (
            '{"project": "p", "region": "r", "experiment": "Bad_Name"}',
            "invalid setting vertex.experiment: 'Bad_Name' must be 4 to 128 lowercase letters",
        ),
    ],
)
def test_a_malformed_step_property_is_refused(text, message):
    with pytest.raises(VertexCallError) as raised:
        ExperimentTarget.from_json(text)
    assert message in str(raised.value)


def test_the_step_property_round_trips():
    sent = ExperimentTarget(PROJECT, REGION, EXPERIMENT, TENSORBOARD, "http://127.0.0.1:1")
    assert ExperimentTarget.from_json(sent.to_json()) == sent
    assert json.loads(sent.to_json())["experiment"] == EXPERIMENT


def test_nothing_is_sent_when_the_step_was_not_asked_to_record(logdir):
    assert vertex_experiments.log_pipeline_run({}, {"a": 1}, {}, "RUNNING", logdir, "x") is None
    assert (
        vertex_experiments.log_pipeline_run(
            {vertex_experiments.EXPERIMENT_PROPERTY: None}, {}, {}, "RUNNING", logdir, "x"
        )
        is None
    )


def test_a_failure_to_record_says_the_outputs_are_kept(fake, logdir):
    properties = {
        vertex_experiments.EXPERIMENT_PROPERTY: target(fake).to_json(),
        vertex_experiments.RUN_PROPERTY: "{{$.pipeline_job_name}}",
    }
    with pytest.raises(VertexCallError) as raised:
        vertex_experiments.log_pipeline_run(
            properties, {}, {}, "RUNNING", logdir, "The trained policy is saved in gs://b/m"
        )
    assert "The trained policy is saved in gs://b/m, but this run is not recorded" in str(
        raised.value
    )
    assert "leave vertex.experiment empty to run without recording" in str(raised.value)
