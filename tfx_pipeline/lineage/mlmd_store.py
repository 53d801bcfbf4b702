"""The lineage reads over a local ML Metadata store (SQLite, MySQL or an MLMD server)."""

import re
from typing import Dict, List, Optional, Sequence, Set, Union

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline.lineage.lineage_store import (
    DOWNSTREAM,
    NEIGHBOURS,
    UPSTREAM,
    LineageStore,
    PipelineRun,
    RunExecution,
)
from tfx_pipeline.lineage.store import by_property, context_order, iso_time

MAX_START_NODES = 100  # MLMD caps a traversal at 100 starting nodes per query
_FILTER_UNSAFE = re.compile(r"[^A-Za-z0-9.:-]")
_DIRECTIONS = {
    UPSTREAM: metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM,
    DOWNSTREAM: metadata_store_pb2.LineageSubgraphQueryOptions.DOWNSTREAM,
    NEIGHBOURS: metadata_store_pb2.LineageSubgraphQueryOptions.BIDIRECTIONAL,
}


class MlmdLineageStore:
    """A `LineageStore` answered by MLMD's own queries and traversal."""

    def __init__(self, store: metadata_store.MetadataStore):
        self._store = store

    def pipeline_runs(self) -> List[PipelineRun]:
        runs = self._store.get_contexts_by_type("pipeline_run")
        node_names = self._execution_node_names()
        return [self._pipeline_run(run, node_names) for run in sorted(runs, key=context_order)]

    def artifact(self, artifact_id: int) -> Optional[metadata_store_pb2.Artifact]:
        found = self._store.get_artifacts_by_id([artifact_id])
        return found[0] if found else None

    def artifacts_by_uri(self, uri: str) -> List[metadata_store_pb2.Artifact]:
        return self._store.get_artifacts_by_uri(uri) or self._store.get_artifacts_by_uri(
            uri.rstrip("/")
        )

    def artifacts_of_type(self, type_name: str) -> List[metadata_store_pb2.Artifact]:
        return self._store.get_artifacts_by_type(type_name)

    def artifact_type_names(self) -> List[str]:
        return sorted(t.name for t in self._store.get_artifact_types())

    def pushed_models(self) -> List[metadata_store_pb2.Artifact]:
        return self._store.get_artifacts(
            list_options=metadata_store.ListOptions(
                filter_query="custom_properties.pushed.int_value = 1"
            )
        )

    def lineage_subgraph(
        self,
        artifact_ids: Sequence[int],
        execution_ids: Sequence[int],
        direction: str,
        hops: int,
    ) -> metadata_store_pb2.LineageGraph:
        """MLMD's own traversal, in batches of its 100-start-node limit."""
        merged = metadata_store_pb2.LineageGraph()
        for field, ids in (
            ("starting_artifacts", artifact_ids),
            ("starting_executions", execution_ids),
        ):
            for start in range(0, len(ids), MAX_START_NODES):
                batch = ", ".join(str(i) for i in ids[start : start + MAX_START_NODES])
                options = metadata_store_pb2.LineageSubgraphQueryOptions(
                    max_num_hops=hops, direction=_DIRECTIONS[direction]
                )
                getattr(options, field).filter_query = f"id IN ({batch})"
                merged.MergeFrom(self._store.get_lineage_subgraph(options))
        return merged

    def table_writers(self, table: str, before_ms: int) -> List[metadata_store_pb2.Artifact]:
        return by_property(
            self._store.get_artifacts,
            f"table.string_value LIKE '{_like_pattern(table)}'",
            f"create_time_since_epoch < {before_ms} AND state = LIVE",
        )

    def table_readers(self, table: str, after_ms: int) -> List[metadata_store_pb2.Execution]:
        return by_property(
            self._store.get_executions,
            f"input_config.string_value LIKE '%`{_like_pattern(table)}`%'",
            f"create_time_since_epoch > {after_ms}",
        )

    def _execution_node_names(self) -> Dict[int, str]:
        names = {}
        for node in self._store.get_contexts_by_type("node"):
            short = node.name.rsplit(".", 1)[-1]
            for execution in self._store.get_executions_by_context(node.id):
                names[execution.id] = short
        return names

    def _pipeline_run(
        self, run: metadata_store_pb2.Context, node_names: Dict[int, str]
    ) -> PipelineRun:
        parents = self._store.get_parent_contexts_by_context(run.id)
        executions = sorted(
            self._store.get_executions_by_context(run.id),
            key=lambda e: (e.create_time_since_epoch, e.id),
        )
        states = {e.last_known_state for e in executions}
        return PipelineRun(
            pipeline=parents[0].name if parents else "",
            run_id=run.name,
            status=_run_status(states),
            start=iso_time(min((e.create_time_since_epoch for e in executions), default=0)),
            end=iso_time(max((e.last_update_time_since_epoch for e in executions), default=0)),
            executions=[
                RunExecution(
                    node=node_names.get(e.id, ""),
                    execution_id=e.id,
                    state=metadata_store_pb2.Execution.State.Name(e.last_known_state),
                    start=iso_time(e.create_time_since_epoch),
                    end=iso_time(e.last_update_time_since_epoch),
                )
                for e in executions
            ],
        )


def as_lineage_store(
    store: Union[LineageStore, metadata_store.MetadataStore],
) -> LineageStore:
    """`store` as a LineageStore; an MLMD store, as `open_store` returns it, is wrapped."""
    if isinstance(store, metadata_store.MetadataStore):
        return MlmdLineageStore(store)
    return store


def _run_status(states: Set[int]) -> str:
    """One failed component fails the run; unfinished ones mean it is live or was interrupted."""
    execution = metadata_store_pb2.Execution
    for state, status in (
        (execution.FAILED, "FAILED"),
        (execution.CANCELED, "CANCELED"),
        (execution.RUNNING, "INCOMPLETE"),
        (execution.NEW, "INCOMPLETE"),
    ):
        if state in states:
            return status
    return "COMPLETE" if states else "EMPTY"


def _like_pattern(value: str) -> str:
    """`value` as a LIKE pattern that matches it and may match more; callers compare exactly.

    MLMD's filter syntax has no LIKE escape and does not pass a backslash through, so
    quotes, `%` and backslashes cannot be written literally: each character outside a
    table id's plain set becomes `_`, which matches any one character, itself included.
    """
    return _FILTER_UNSAFE.sub("_", value)
