"""Paths mean one thing: a relative `--root` names the same run as its absolute form.

The BigQuery emulator runs in its data directory, so a relative data path
handed to it used to name a second, empty database inside the first.
"""

import json
import os

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from bandit_core.bigquery import clients, tables
from tfx_pipeline import cli
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.local.emulator import BigQueryEmulator

EVENT = "served-0001"


def _seed_run_root(root) -> None:
    """A run root as the demo leaves it: one logged prediction, an MLMD store without pushes."""
    config = PipelineConfig()
    bq = config.bigquery
    with BigQueryEmulator(project=bq.project, data_dir=root / "bigquery") as emulator:
        client = clients.make_bigquery_client(emulator.endpoints)
        table = tables.ensure_table(
            client, bq.dataset, bq.predictions_table, tables.PREDICTIONS_SCHEMA
        )
        client.insert_rows_json(
            table,
            [{"event_id": EVENT, "event_time": "2026-06-01T08:00:00+00:00", "model_version": "v7"}],
        )
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(root / "metadata.sqlite")
    connection.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    metadata_store.MetadataStore(connection)


def test_trace_event_with_a_relative_root_reads_the_same_tables(tmp_path, monkeypatch, capsys):
    root = tmp_path / "runs"
    _seed_run_root(root)
    monkeypatch.chdir(tmp_path)

    answers = []
    for given in ("runs", str(root)):
        assert cli.main(["lineage", "trace-event", EVENT, "--root", given]) == 1
        answers.append(capsys.readouterr().err)

    relative, absolute = answers
    assert relative == absolute
    assert "holds no pushed models" in relative  # the prediction was found, then its model not
    assert not (root / "bigquery" / "runs").exists()


def test_relative_paths_in_options_and_the_config_file_are_taken_from_the_working_directory(
    tmp_path, monkeypatch
):
    (tmp_path / "conf").mkdir()
    (tmp_path / "conf" / "c.json").write_text(
        json.dumps(
            {
                "movielens": {"data_dir": "data/ml-100k"},
                "bigquery": {"emulator_data_dir": "~/bq"},
                "local": {"root": "from-file"},
            }
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))

    from_file = cli.load_cli_config(
        cli.build_parser().parse_args(["train", "--config", "conf/c.json"])
    )
    assert from_file.movielens.data_dir == str(tmp_path / "data" / "ml-100k")
    assert from_file.bigquery.emulator_data_dir == str(tmp_path / "home" / "bq")
    assert from_file.local.root == str(tmp_path / "from-file")

    args = cli.build_parser().parse_args(
        ["train", "--config", "conf/c.json", "--root", "../elsewhere/./r", "--movielens-dir", "d"]
    )
    overridden = cli.load_cli_config(args)
    assert overridden.local.root == os.path.normpath(tmp_path / ".." / "elsewhere" / "r")
    assert overridden.movielens.data_dir == str(tmp_path / "d")
    assert PipelineConfig().local.root == "" == cli.load_cli_config(
        cli.build_parser().parse_args(["train"])
    ).local.root


def test_every_path_option_becomes_absolute(tmp_path, monkeypatch):
    from tfx_pipeline import paths

    monkeypatch.chdir(tmp_path)
    parser = cli.build_parser()
    for argv in (
        ["report", "--out", "rep", "--movielens-dir", "ml"],
        ["emulator", "--data-dir", "bq"],
        ["lineage", "show", "--metadata", "m.sqlite", "--dot", "g.dot", "--type", "Model"],
        ["lineage", "runs", "--metadata-config", "mlmd.pbtxt", "--config", "c.json"],
        ["vertex", "submit", "--output-dir", "out", "--pipeline-json", "p.json"],
    ):
        args = paths.absolute_path_options(parser.parse_args(argv))
        given = [getattr(args, name) for name in paths.PATH_OPTIONS if getattr(args, name, None)]
        assert given and all(os.path.isabs(p) and p.startswith(str(tmp_path)) for p in given)
