"""The run summary tells a step that never ran from a step that found nothing.

Each store is built by hand the way TFX records a run: a pipeline context, a
run context under it, one node context and execution per component.
"""

import os
import pathlib
from typing import Optional

import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME

from tfx_pipeline.reports import run_summary

PIPELINE = "p"
COMPLETE, FAILED = metadata_store_pb2.Execution.COMPLETE, metadata_store_pb2.Execution.FAILED


class _Run:
    """A fresh store holding one run of pipeline `p`."""

    def __init__(self, path: pathlib.Path):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(path / "metadata.sqlite")
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        )
        self.store = metadata_store.MetadataStore(config)
        self._root = path
        pipeline, run = self._context("pipeline", PIPELINE), self._context("pipeline_run", "r1")
        self.store.put_parent_contexts(
            [metadata_store_pb2.ParentContext(child_id=run.id, parent_id=pipeline.id)]
        )
        self._run_contexts = [pipeline, run]

    def execute(self, node: str, state: int, output: Optional[metadata_store_pb2.Artifact] = None):
        execution = metadata_store_pb2.Execution(
            type_id=self.store.put_execution_type(metadata_store_pb2.ExecutionType(name=node)),
            last_known_state=state,
        )
        events = []
        if output is not None:
            events.append((output, metadata_store_pb2.Event(type=metadata_store_pb2.Event.OUTPUT)))
        contexts = self._run_contexts + [self._context("node", f"{PIPELINE}.{node}")]
        self.store.put_execution(execution, events, contexts)

    def anomalies(self, found: int) -> metadata_store_pb2.Artifact:
        """An ExampleAnomalies artifact whose train split holds `found` anomalies."""
        uri = self._root / "anomalies"
        proto = anomalies_pb2.Anomalies()
        for i in range(found):
            proto.anomaly_info[f"feature_{i}"].short_description = "Out-of-range values"
        os.makedirs(uri / "Split-train")
        (uri / "Split-train" / DEFAULT_FILE_NAME).write_bytes(proto.SerializeToString())
        artifact_type = metadata_store_pb2.ArtifactType(name="ExampleAnomalies")
        artifact_type.properties["split_names"] = metadata_store_pb2.STRING
        artifact = metadata_store_pb2.Artifact(
            type_id=self.store.put_artifact_type(artifact_type), uri=str(uri)
        )
        artifact.properties["split_names"].string_value = '["train"]'
        return artifact

    def summary(self) -> run_summary.RunSummary:
        return run_summary.summarize_latest_run(self.store, PIPELINE)

    def _context(self, type_name: str, name: str) -> metadata_store_pb2.Context:
        type_id = self.store.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        (context_id,) = self.store.put_contexts(
            [metadata_store_pb2.Context(type_id=type_id, name=name)]
        )
        return self.store.get_contexts_by_id([context_id])[0]


def test_a_run_stopped_before_validation_says_validation_did_not_run_and_what_stopped(tmp_path):
    run = _Run(tmp_path)
    run.execute("MovieLensGenerator", COMPLETE)
    run.execute("BigQueryExampleGen", FAILED)

    summary = run.summary()

    assert summary.validated is False
    assert summary.anomalies_status == "not run"
    assert summary.anomalies == []
    assert summary.failed_components == ["BigQueryExampleGen"]


@pytest.mark.parametrize("found, status", [(0, "none"), (2, "2")])
def test_a_validated_run_reports_none_or_how_many(tmp_path, found, status):
    run = _Run(tmp_path)
    run.execute("ExampleValidator", COMPLETE, run.anomalies(found))

    summary = run.summary()

    assert summary.validated is True
    assert summary.anomalies_status == status
    assert len(summary.anomalies) == found
    assert summary.failed_components == []
