"""The run root's TensorBoard logs found through ML Metadata, and the loop's per-round writer.

The store is a real ML Metadata SQLite file laid out as TFX's local runner
records a run (pipeline, pipeline_run and node contexts; output events); the
evaluator's DAG test checks the same on a store TFX itself wrote. One test
starts the real TensorBoard on the spec and asks it for its runs.
"""

import json
import math
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from bandit_core.summary_writer import SummaryWriter
from custom_components.bandit_trainer import training_summaries
from custom_components.policy_evaluator import evaluation_summaries
from tests.helpers.summary_events import read_scalars
from tfx_pipeline.lineage.store import LineageError
from tfx_pipeline.reports.tensorboard_logs import (
    SummaryDirectory,
    logdir_spec,
    tensorboard_logdir_spec,
    write_loop_round,
)

PIPELINE = "movielens-bandits-train"
FIRST_RUN, SECOND_RUN = "2026-12-01T10:28:31.185073", "2026-12-01T11:02:05.000001"
# Where the trainer and the evaluator put their events below their artifacts.
SUMMARY_DIRS = {
    "ModelRun": training_summaries.SUMMARY_DIR,
    "ModelEvaluation": evaluation_summaries.SUMMARY_DIR,
}
LIVE, ABANDONED = metadata_store_pb2.Artifact.LIVE, metadata_store_pb2.Artifact.ABANDONED


class RecordedRuns:
    """Writes executions, their output artifacts and TFX's contexts into a real MLMD store."""

    def __init__(self, path: Path):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        self.store = metadata_store.MetadataStore(config)
        self.root = path.parent
        self.outputs = 0
        self.pipeline = self._context("pipeline", PIPELINE)

    def output(
        self, run_id: str, node: str, type_name: str, with_events: bool = True, state=LIVE
    ) -> str:
        """One execution of `node` in run `run_id` with one output; returns its directory."""
        self.outputs += 1
        uri = self.root / "pipeline_root" / node / type_name / str(self.outputs)
        uri.mkdir(parents=True)
        if with_events:
            with SummaryWriter(str(uri / SUMMARY_DIRS.get(type_name, "train"))) as writer:
                writer.scalar("written/by", 1.0, 0)
        artifact = metadata_store_pb2.Artifact(
            type_id=self._type(metadata_store_pb2.ArtifactType, type_name),
            uri=str(uri),
            state=state,
        )
        execution = metadata_store_pb2.Execution(
            type_id=self._type(metadata_store_pb2.ExecutionType, f"components.{node}"),
            last_known_state=metadata_store_pb2.Execution.COMPLETE,
        )
        event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
        contexts = [
            self.pipeline,
            self._context("pipeline_run", run_id),
            self._context("node", f"{PIPELINE}.{node}"),
        ]
        self.store.put_execution(execution, [(artifact, event)], contexts)
        return str(uri)

    def _type(self, kind, name: str) -> int:
        put = {
            metadata_store_pb2.ArtifactType: self.store.put_artifact_type,
            metadata_store_pb2.ExecutionType: self.store.put_execution_type,
            metadata_store_pb2.ContextType: self.store.put_context_type,
        }[kind]
        return put(kind(name=name))

    def _context(self, type_name: str, name: str) -> metadata_store_pb2.Context:
        type_id = self._type(metadata_store_pb2.ContextType, type_name)
        found = self.store.get_context_by_type_and_name(type_name, name)
        if found is not None:
            return found
        context = metadata_store_pb2.Context(type_id=type_id, name=name)
        [context.id] = self.store.put_contexts([context])
        return context


def test_the_spec_names_each_trainer_and_evaluator_run_oldest_first(tmp_path):
    runs = RecordedRuns(tmp_path / "metadata.sqlite")
    runs.output(FIRST_RUN, "BanditTrainer", "ModelRun", with_events=False)  # before summaries
    runs.output(FIRST_RUN, "BanditTrainer", "Model")  # not a summary artifact
    trainer = runs.output(SECOND_RUN, "BanditTrainer", "ModelRun")
    runs.output(SECOND_RUN, "BanditTrainer", "ModelRun", state=ABANDONED)
    evaluator = runs.output(SECOND_RUN, "PolicyEvaluator", "ModelEvaluation")

    spec = tensorboard_logdir_spec(tmp_path / "metadata.sqlite")

    run = "2026-12-01T11-02-05.000001"
    assert spec == (
        f"{PIPELINE}/{run}/BanditTrainer:{trainer},{PIPELINE}/{run}/PolicyEvaluator:{evaluator}"
    )


def test_an_artifact_without_a_recorded_producer_is_named_by_type_and_id(tmp_path):
    runs = RecordedRuns(tmp_path / "metadata.sqlite")
    logdir = tmp_path / "imported" / "train"
    with SummaryWriter(str(logdir)) as writer:
        writer.scalar("written/by", 1.0, 0)
    artifact = metadata_store_pb2.Artifact(
        type_id=runs.store.put_artifact_type(metadata_store_pb2.ArtifactType(name="ModelRun")),
        uri=str(logdir.parent),
        state=LIVE,
    )
    [artifact_id] = runs.store.put_artifacts([artifact])

    spec = tensorboard_logdir_spec(tmp_path / "metadata.sqlite")

    assert spec == f"ModelRun/{artifact_id}:{logdir.parent}"


def test_a_missing_store_says_how_to_make_one(tmp_path):
    with pytest.raises(LineageError) as raised:
        tensorboard_logdir_spec(tmp_path / "metadata.sqlite")
    assert "no ML Metadata store at" in str(raised.value)
    assert "run `mlbandits train` to make one" in str(raised.value)


def test_a_store_without_summaries_says_what_to_run(tmp_path):
    runs = RecordedRuns(tmp_path / "metadata.sqlite")
    runs.output(FIRST_RUN, "BanditTrainer", "ModelRun", with_events=False)
    with pytest.raises(LineageError) as raised:
        tensorboard_logdir_spec(tmp_path / "metadata.sqlite")
    assert "records no TensorBoard summaries yet: run `mlbandits train`" in str(raised.value)


def test_a_path_with_a_comma_cannot_go_into_the_spec():
    with pytest.raises(LineageError) as raised:
        logdir_spec([SummaryDirectory("p/run/BanditTrainer", "/runs/a,b/ModelRun/7")])
    assert "cannot name /runs/a,b/ModelRun/7: the path holds a comma" in str(raised.value)
    assert "move the run root to a path without commas" in str(raised.value)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_tensorboard_opens_every_run_of_the_spec(tmp_path):
    runs = RecordedRuns(tmp_path / "metadata.sqlite")
    runs.output(FIRST_RUN, "BanditTrainer", "ModelRun")
    runs.output(FIRST_RUN, "PolicyEvaluator", "ModelEvaluation")
    spec = tensorboard_logdir_spec(tmp_path / "metadata.sqlite")
    port = _free_port()
    board = subprocess.Popen(
        [
            sys.executable, "-m", "tensorboard.main", "--logdir_spec", spec, "--port", str(port),
            "--host", "127.0.0.1", "--load_fast", "false",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        run = "2026-12-01T10-28-31.185073"
        expected = [
            f"{PIPELINE}/{run}/BanditTrainer/train", f"{PIPELINE}/{run}/PolicyEvaluator/eval"
        ]
        served = []
        deadline = time.monotonic() + 60
        while len(served) < len(expected) and time.monotonic() < deadline:
            assert board.poll() is None, "TensorBoard exited"
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/data/runs") as response:
                    served = json.load(response)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.5)
        assert sorted(served) == expected
    finally:
        board.terminate()
        board.wait(timeout=30)


def test_loop_rounds_read_back_in_order_from_one_event_file(tmp_path):
    for round_index in range(12):
        write_loop_round(str(tmp_path), round_index, 1.0 + round_index, 1.0 / (round_index + 1))

    assert len(os.listdir(tmp_path)) == 1
    scalars = read_scalars(str(tmp_path))
    assert scalars["loop/reward"] == [(i, pytest.approx(1.0 + i)) for i in range(12)]
    assert scalars["loop/regret"] == [(i, pytest.approx(1.0 / (i + 1))) for i in range(12)]


@pytest.mark.parametrize(
    "round_index, reward, regret, message",
    [
        (-1, 1.0, 0.5, "summary 'loop/reward': step -1 must be a whole number >= 0"),
        (0, math.nan, 0.5, "summary 'loop/reward': value nan is not finite"),
        (0, 1.0, math.inf, "summary 'loop/regret': value inf is not finite"),
        (0, 1.0, None, "summary 'loop/regret': value None is not a number"),
    ],
)
def test_a_bad_loop_round_is_refused_and_writes_nothing(
    tmp_path, round_index, reward, regret, message
):
    logdir = tmp_path / "loop"
    with pytest.raises(ValueError) as raised:
        write_loop_round(str(logdir), round_index, reward, regret)
    assert message in str(raised.value)
    assert not logdir.exists()
