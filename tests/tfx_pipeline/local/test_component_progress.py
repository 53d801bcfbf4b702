"""A line per component from LocalDagRunner's log records, its key output read from ML Metadata.

The records are the ones TFX 1.15's LocalDagRunner and launcher log; the
store is a real SQLite MLMD store holding what a PolicyEvaluator and a
Pusher publish.
"""

import io
import re

from absl import logging as absl_logging
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline import console
from tfx_pipeline.local.component_progress import ComponentProgress
from tfx_pipeline.reports import component_outputs


def _store(path) -> metadata_store.MetadataStore:
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = (
        metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
    )
    return metadata_store.MetadataStore(config)


def _execution_with_output(store, type_name: str, **custom) -> int:
    """An execution that published one artifact of `type_name` with `custom` properties."""
    artifact_type = metadata_store_pb2.ArtifactType(name=type_name)
    artifact = metadata_store_pb2.Artifact(type_id=store.put_artifact_type(artifact_type))
    for name, value in custom.items():
        field = {int: "int_value", float: "double_value", str: "string_value"}[type(value)]
        setattr(artifact.custom_properties[name], field, value)
    execution_type = metadata_store_pb2.ExecutionType(name=f"{type_name}Producer")
    execution = metadata_store_pb2.Execution(type_id=store.put_execution_type(execution_type))
    event = metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)
    execution_id, _, _ = store.put_execution(execution, [(artifact, event)], [])
    return execution_id


def test_each_component_gets_a_line_with_its_seconds_and_key_output(tmp_path):
    store = _store(tmp_path / "metadata.sqlite")
    evaluated = _execution_with_output(
        store, "ModelEvaluation", blessed=1, candidate_dr=3.7126,
        candidate_dr_lower=3.6, candidate_dr_upper=3.81,
    )
    pushed = _execution_with_output(
        store, "PushedModel", pushed=1, pushed_version="1796120788"
    )
    piped = io.StringIO()
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with ComponentProgress(console.StatusLine(piped), tmp_path / "metadata.sqlite"):
            for node, execution_id in (("PolicyEvaluator", evaluated), ("Pusher", pushed)):
                absl_logging.info("Component %s is running.", node)
                absl_logging.info("Going to run a new execution %d", execution_id)
                absl_logging.info("Component %s is finished.", node)
            absl_logging.info("Component %s is running.", "BanditTrainer")
            absl_logging.error("Execution %d failed.", 99)
    finally:
        absl_logging.set_verbosity(verbosity)

    lines = [" ".join(line.split()) for line in piped.getvalue().splitlines()]
    assert [re.sub(r"\d+\.\d s", "N s", line) for line in lines] == [
        "PolicyEvaluator started",
        "PolicyEvaluator N s DR 3.713 [3.600, 3.810], blessed",
        "Pusher started",
        "Pusher N s pushed version 1796120788",
        "BanditTrainer started",
        "BanditTrainer N s failed",
    ]


def test_transient_components_print_nothing_off_a_terminal(tmp_path):
    piped = io.StringIO()
    verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    try:
        with ComponentProgress(console.StatusLine(piped), tmp_path / "absent.sqlite") as progress:
            progress.permanent = False
            absl_logging.info("Component %s is running.", "StatisticsGen")
            absl_logging.info("Component %s is finished.", "StatisticsGen")
    finally:
        absl_logging.set_verbosity(verbosity)
    assert piped.getvalue() == ""


def test_outputs_without_a_key_fact_describe_as_nothing(tmp_path):
    store = _store(tmp_path / "metadata.sqlite")
    execution_id = _execution_with_output(store, "Schema")
    assert component_outputs.describe_execution_outputs(store, execution_id) == ""
    not_pushed = _execution_with_output(store, "PushedModel", pushed=0)
    assert component_outputs.describe_execution_outputs(store, not_pushed) == "not pushed"
