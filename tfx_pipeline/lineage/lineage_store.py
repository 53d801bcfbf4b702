"""The few reads the lineage questions make of a metadata store, whichever store it is.

Two stores implement them: a local ML Metadata store (`mlmd_store`) and Vertex
ML Metadata with Vertex AI Pipelines (`vertex_store`). Both answer in MLMD's
messages, the vocabulary TFX records in, so the graph logic above them is
written once and a question gets the same answer from either store.
"""

import dataclasses
from typing import List, Optional, Protocol, Sequence

from ml_metadata.proto import metadata_store_pb2

UPSTREAM, DOWNSTREAM, NEIGHBOURS = "upstream", "downstream", "neighbours"


@dataclasses.dataclass(frozen=True)
class RunExecution:
    node: str
    execution_id: int
    state: str
    start: str
    end: str


@dataclasses.dataclass(frozen=True)
class PipelineRun:
    """One pipeline run: its status, time span and component executions."""

    pipeline: str
    run_id: str
    status: str
    start: str
    end: str
    executions: List[RunExecution]


class LineageStore(Protocol):
    """Read-only access to pipeline runs, artifacts, executions and the events between them."""

    def pipeline_runs(self) -> List[PipelineRun]:
        """Every run, oldest first; empty when nothing has run yet."""

    def artifact(self, artifact_id: int) -> Optional[metadata_store_pb2.Artifact]:
        """The artifact with this id, or None."""

    def artifacts_by_uri(self, uri: str) -> List[metadata_store_pb2.Artifact]:
        """Artifacts stored at `uri` (with or without a trailing slash)."""

    def artifacts_of_type(self, type_name: str) -> List[metadata_store_pb2.Artifact]:
        """Artifacts of a TFX type such as Model or mlbandits.LoggedInteractions."""

    def artifact_type_names(self) -> List[str]:
        """The artifact types the store holds, for error messages."""

    def pushed_models(self) -> List[metadata_store_pb2.Artifact]:
        """Artifacts a Pusher really pushed (custom property pushed = 1)."""

    def lineage_subgraph(
        self,
        artifact_ids: Sequence[int],
        execution_ids: Sequence[int],
        direction: str,
        hops: int,
    ) -> metadata_store_pb2.LineageGraph:
        """Nodes reached from the starting ones within `hops` events walked in `direction`,
        with the events walked and the pipeline, run and node contexts of each node."""

    def table_writers(self, table: str, before_ms: int) -> List[metadata_store_pb2.Artifact]:
        """LIVE artifacts created before `before_ms` whose `table` property may be `table`.

        A superset is allowed: the caller compares exactly.
        """

    def table_readers(self, table: str, after_ms: int) -> List[metadata_store_pb2.Execution]:
        """Executions created after `after_ms` whose query may read `table` (a superset)."""
