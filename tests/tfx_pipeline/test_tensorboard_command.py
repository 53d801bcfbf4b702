"""`mlbandits tensorboard` and the feedback loop's per-round TensorBoard run."""

import datetime
import shlex
import socket

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from bandit_core.summary_writer import SummaryWriter
from tests.helpers.summary_events import read_scalars
from tfx_pipeline import cli
from tfx_pipeline.demo_loop.loop_summaries import LoopSummaries, loop_logs_dir
from tfx_pipeline.reports.tensorboard_logs import LOOP_REGRET, LOOP_REWARD


def _record_model_run(root) -> str:
    """A run root whose store holds one ModelRun with events, as the trainer leaves it."""
    uri = root / "pipeline_root" / "BanditTrainer" / "model_run" / "1"
    with SummaryWriter(str(uri / "train")) as writer:
        writer.scalar("train/loss", 0.5, 0)
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(root / "metadata.sqlite")
    store = metadata_store.MetadataStore(connection)
    type_id = store.put_artifact_type(metadata_store_pb2.ArtifactType(name="ModelRun"))
    store.put_artifacts(
        [
            metadata_store_pb2.Artifact(
                type_id=type_id, uri=str(uri), state=metadata_store_pb2.Artifact.LIVE
            )
        ]
    )
    return str(uri)


def _rounded(scalars):
    """Summaries hold float32: 0.2 reads back as 0.20000000298."""
    return {
        tag: [(step, round(value, 6)) for step, value in points]
        for tag, points in scalars.items()
    }


def _spec(out: str) -> str:
    command = shlex.split(out)
    return command[command.index("--logdir_spec") + 1]


def test_the_loop_writes_reward_and_regret_per_round_a_run_per_demo(tmp_path):
    first = LoopSummaries(tmp_path, datetime.datetime(2026, 12, 1, 10, 0, 0))
    for round_index, (reward, regret) in enumerate([(0.2, 0.9), (0.5, 0.6), (0.7, 0.4)]):
        first.record(round_index, reward, regret)
    second = LoopSummaries(tmp_path, datetime.datetime(2026, 12, 1, 11, 0, 0))
    second.record(0, 0.3, 0.8)
    assert first.logdir.parent == second.logdir.parent == loop_logs_dir(tmp_path)
    scalars = _rounded(read_scalars(str(first.logdir)))
    assert scalars[LOOP_REWARD] == [(0, 0.2), (1, 0.5), (2, 0.7)]
    assert scalars[LOOP_REGRET] == [(0, 0.9), (1, 0.6), (2, 0.4)]
    assert _rounded(read_scalars(str(second.logdir)))[LOOP_REWARD] == [(0, 0.3)]


def test_print_only_names_the_trainers_and_the_loops_logs(tmp_path, capsys):
    model_run = _record_model_run(tmp_path)
    LoopSummaries(tmp_path, datetime.datetime(2026, 12, 1)).record(0, 0.1, 0.9)
    assert cli.main(["tensorboard", "--root", str(tmp_path), "--port", "6123", "--print-only"]) == 0
    out = capsys.readouterr().out
    command = shlex.split(out)
    assert command[0].endswith("tensorboard")
    assert command[command.index("--port") + 1] == "6123"
    entries = dict(entry.split(":", 1) for entry in _spec(out).split(","))
    assert entries["loop"] == str(loop_logs_dir(tmp_path))
    assert model_run in entries.values()


def test_print_only_without_a_loop_names_only_the_pipelines_logs(tmp_path, capsys):
    model_run = _record_model_run(tmp_path)
    assert cli.main(["tensorboard", "--root", str(tmp_path), "--print-only"]) == 0
    spec = _spec(capsys.readouterr().out)
    assert [entry.split(":", 1)[1] for entry in spec.split(",")] == [model_run]


def test_a_root_without_runs_says_what_to_run_first(tmp_path, capsys):
    missing = tmp_path / "never-ran"
    assert cli.main(["tensorboard", "--root", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"no run at {missing}" in err and f"mlbandits train --root {missing}" in err
    assert not missing.exists(), "a read-only command creates no root"


def test_a_tensorboard_port_in_use_is_named(tmp_path, capsys):
    _record_model_run(tmp_path)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert cli.main(["tensorboard", "--root", str(tmp_path), "--port", str(port)]) == 1
    err = capsys.readouterr().err
    assert f"port {port} on 127.0.0.1, wanted by TensorBoard, is in use" in err
    assert "pass another --port" in err
