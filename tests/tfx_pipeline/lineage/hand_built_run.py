"""A store built by hand the way TFX records runs, for lineage tests that need no pipeline."""

import pathlib
import time
from typing import Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2


class HandBuiltRun:
    """Records component executions into a fresh MLMD store the way TFX does."""

    def __init__(self, path: pathlib.Path):
        config = metadata_store_pb2.ConnectionConfig()
        config.sqlite.filename_uri = str(path)
        config.sqlite.connection_mode = (
            metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE_OPENCREATE
        )
        self._store = metadata_store.MetadataStore(config)
        self._contexts = [self._context("pipeline", "p"), self._context("pipeline_run", "r1")]
        pipeline, run = self._contexts
        self._store.put_parent_contexts(
            [metadata_store_pb2.ParentContext(child_id=run.id, parent_id=pipeline.id)]
        )

    def run(self, node: str, inputs: dict, outputs: dict, properties: Optional[dict] = None):
        """One COMPLETE execution; returns its single output artifact."""
        time.sleep(0.01)  # MLMD times are in milliseconds; keep steps apart
        execution = metadata_store_pb2.Execution(
            type_id=self._store.put_execution_type(metadata_store_pb2.ExecutionType(name=node)),
            last_known_state=metadata_store_pb2.Execution.COMPLETE,
        )
        for name, value in (properties or {}).items():
            execution.custom_properties[name].string_value = value
        events = [(a, _event(metadata_store_pb2.Event.INPUT, k)) for k, a in inputs.items()]
        for key, (type_name, custom) in outputs.items():
            artifact = metadata_store_pb2.Artifact(
                type_id=self._store.put_artifact_type(
                    metadata_store_pb2.ArtifactType(name=type_name)
                ),
                uri=f"/runs/{node}/{key}",
                state=metadata_store_pb2.Artifact.LIVE,
            )
            for name, value in custom.items():
                field = {int: "int_value", float: "double_value"}.get(type(value), "string_value")
                setattr(artifact.custom_properties[name], field, value)
            events.append((artifact, _event(metadata_store_pb2.Event.OUTPUT, key)))
        contexts = self._contexts + [self._context("node", f"p.{node}")]
        _, artifact_ids, _ = self._store.put_execution(execution, events, contexts)
        (output,) = self._store.get_artifacts_by_id(artifact_ids[len(inputs) :])
        return output

    def _context(self, type_name: str, name: str) -> metadata_store_pb2.Context:
        type_id = self._store.put_context_type(metadata_store_pb2.ContextType(name=type_name))
        (context_id,) = self._store.put_contexts(
            [metadata_store_pb2.Context(type_id=type_id, name=name)]
        )
        return self._store.get_contexts_by_id([context_id])[0]


def _event(kind: int, key: str) -> metadata_store_pb2.Event:
    path = metadata_store_pb2.Event.Path(
        steps=[
            metadata_store_pb2.Event.Path.Step(key=key),
            metadata_store_pb2.Event.Path.Step(index=0),
        ]
    )
    return metadata_store_pb2.Event(type=kind, path=path)
