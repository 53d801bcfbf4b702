"""The lineage questions: runs, one artifact, a pushed model or a served
prediction traced upstream, and an artifact traced downstream.

Everything walks MLMD events (via `get_lineage_subgraph`), never component
names, so a component added between Trainer and Pusher shows up on its own.
"""

import datetime
import os
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline.lineage.graph import (
    DOWNSTREAM,
    NEIGHBOURS,
    UPSTREAM,
    GraphBuilder,
    LineageEdge,
    LineageGraph,
    LineageNode,
    PipelineRun,
    RunExecution,
    artifact_key,
)
from tfx_pipeline.lineage.store import (
    LineageError,
    artifact_order,
    context_order,
    custom_string,
    iso_time,
)

MAX_HOPS = 100  # MLMD caps a traversal at 100 hops
MAX_START_NODES = 100  # and at 100 starting nodes per query
_ZERO = metadata_store_pb2.Value(int_value=0)


def list_runs(store: metadata_store.MetadataStore) -> List[PipelineRun]:
    """Every pipeline run, oldest first, with the executions of its components."""
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise LineageError("the store holds no pipeline runs yet; run `mlbandits train` first")
    node_names = _execution_node_names(store)
    return [_pipeline_run(store, run, node_names) for run in sorted(runs, key=context_order)]


def show_artifact(
    store: metadata_store.MetadataStore,
    artifact_id: Optional[int] = None,
    uri: Optional[str] = None,
    type_name: Optional[str] = None,
) -> LineageGraph:
    """One artifact (by id, URI, or latest of a type) with its producer and consumers."""
    if sum(x is not None for x in (artifact_id, uri, type_name)) != 1:
        raise LineageError("name exactly one of: an artifact id, --uri or --type")
    if artifact_id is not None:
        artifact = _artifact_by_id(store, artifact_id)
    elif uri is not None:
        artifact = _artifact_by_uri(store, uri)
    else:
        artifact = _latest_of_type(store, type_name)
    builder = GraphBuilder(store)
    builder.add_subgraph(_lineage_subgraph(store, [artifact.id], [], NEIGHBOURS, hops=1))
    return builder.build(artifact_key(artifact.id), NEIGHBOURS)


def find_pushed_model(
    store: metadata_store.MetadataStore,
    model_version: Optional[str] = None,
    push_dir: Optional[str] = None,
) -> metadata_store_pb2.Artifact:
    """The pushed-model artifact by the version the server reports, or by its directory."""
    if (model_version is None) == (push_dir is None):
        raise LineageError("name exactly one of a model version or a push directory")
    pushed = _pushed_models(store)
    if model_version is not None:
        found = [a for a in pushed if custom_string(a, "pushed_version") == model_version]
        wanted = f"model_version {model_version!r}"
    else:
        target = _normal_path(push_dir)
        found = [a for a in pushed if target in _push_paths(a)]
        wanted = f"push directory {push_dir!r}"
    if not found:
        raise LineageError(f"no pushed model has {wanted}; {_known_versions(pushed)}")
    if len(found) > 1:
        where = ", ".join(custom_string(a, "pushed_destination") for a in found)
        raise LineageError(
            f"{len(found)} pushed models have {wanted} ({where}); name one with --push-dir"
        )
    return found[0]


def trace_upstream(store: metadata_store.MetadataStore, artifact_id: int) -> LineageGraph:
    """Everything the artifact was derived from, down to the BigQuery tables read."""
    _artifact_by_id(store, artifact_id)
    builder = GraphBuilder(store)
    builder.add_subgraph(_lineage_subgraph(store, [artifact_id], [], UPSTREAM))
    while True:
        writers = builder.link_read_tables()
        if not writers:
            break
        builder.add_subgraph(_lineage_subgraph(store, writers, [], UPSTREAM))
    return builder.build(artifact_key(artifact_id), UPSTREAM)


def trace_downstream(store: metadata_store.MetadataStore, artifact_id: int) -> LineageGraph:
    """Everything derived from the artifact, e.g. the models trained from an Examples."""
    _artifact_by_id(store, artifact_id)
    builder = GraphBuilder(store)
    builder.add_subgraph(_lineage_subgraph(store, [artifact_id], [], DOWNSTREAM))
    while True:
        readers = builder.link_written_tables()
        if not readers:
            break
        builder.add_subgraph(_lineage_subgraph(store, [], readers, DOWNSTREAM))
    return builder.build(artifact_key(artifact_id), DOWNSTREAM)


def find_prediction(client: Any, predictions_table_id: str, event_id: str) -> Dict[str, Any]:
    """The logged prediction with `event_id` (the first, if the logger resent it).

    BigQuery is imported here: only this question needs it, and it loads slowly.
    """
    from google.api_core import exceptions as api_exceptions
    from google.cloud import bigquery

    query = (
        "SELECT event_id, event_time, user_id, action, propensity, model_version, policy_id "
        f"FROM `{predictions_table_id}` WHERE event_id = @event_id ORDER BY event_time LIMIT 1"
    )
    job_config = bigquery.QueryJobConfig(
        query_parameters=[bigquery.ScalarQueryParameter("event_id", "STRING", event_id)]
    )
    try:
        rows = list(client.query(query, job_config=job_config).result())
    except api_exceptions.NotFound as e:
        raise LineageError(
            f"prediction log table {predictions_table_id} does not exist; "
            "has the prediction server logged anything yet?"
        ) from e
    except api_exceptions.GoogleAPICallError as e:
        raise LineageError(f"querying {predictions_table_id} failed: {e}") from e
    if not rows:
        raise LineageError(f"no prediction with event_id {event_id!r} in {predictions_table_id}")
    return {k: v.isoformat() if isinstance(v, datetime.datetime) else v for k, v in rows[0].items()}


def trace_event(
    store: metadata_store.MetadataStore, client: Any, predictions_table_id: str, event_id: str
) -> LineageGraph:
    """A served prediction, the pushed model that served it, and that model's upstream."""
    prediction = find_prediction(client, predictions_table_id, event_id)
    if not prediction.get("model_version"):
        raise LineageError(f"prediction {event_id!r} has no model_version; it cannot be traced")
    pushed = find_pushed_model(store, model_version=prediction["model_version"])
    graph = trace_upstream(store, pushed.id)
    key = f"prediction:{event_id}"
    graph.nodes[key] = LineageNode(
        key=key,
        kind="prediction",
        type_name="Prediction",
        name=event_id,
        uri=predictions_table_id,
        create_time=prediction.get("event_time") or "",
        properties=prediction,
    )
    graph.edges.append(LineageEdge(artifact_key(pushed.id), key, "served"))
    graph.root = key
    return graph


def _lineage_subgraph(
    store: metadata_store.MetadataStore,
    artifact_ids: Sequence[int],
    execution_ids: Sequence[int],
    direction: str,
    hops: int = MAX_HOPS,
) -> metadata_store_pb2.LineageGraph:
    """MLMD's own traversal, in batches of its 100-start-node limit."""
    directions = {
        UPSTREAM: metadata_store_pb2.LineageSubgraphQueryOptions.UPSTREAM,
        DOWNSTREAM: metadata_store_pb2.LineageSubgraphQueryOptions.DOWNSTREAM,
        NEIGHBOURS: metadata_store_pb2.LineageSubgraphQueryOptions.BIDIRECTIONAL,
    }
    merged = metadata_store_pb2.LineageGraph()
    for field, ids in (
        ("starting_artifacts", artifact_ids),
        ("starting_executions", execution_ids),
    ):
        for start in range(0, len(ids), MAX_START_NODES):
            batch = ", ".join(str(i) for i in ids[start : start + MAX_START_NODES])
            options = metadata_store_pb2.LineageSubgraphQueryOptions(
                max_num_hops=hops, direction=directions[direction]
            )
            getattr(options, field).filter_query = f"id IN ({batch})"
            merged.MergeFrom(store.get_lineage_subgraph(options))
    return merged


def _artifact_by_id(
    store: metadata_store.MetadataStore, artifact_id: int
) -> metadata_store_pb2.Artifact:
    found = store.get_artifacts_by_id([artifact_id])
    if not found:
        raise LineageError(
            f"no artifact with id {artifact_id}; `mlbandits lineage runs` and "
            "`mlbandits lineage show --type Model` list what the store holds"
        )
    return found[0]


def _artifact_by_uri(store: metadata_store.MetadataStore, uri: str) -> metadata_store_pb2.Artifact:
    found = store.get_artifacts_by_uri(uri) or store.get_artifacts_by_uri(uri.rstrip("/"))
    if not found:
        raise LineageError(f"no artifact has uri {uri!r}")
    return max(found, key=artifact_order)


def _latest_of_type(
    store: metadata_store.MetadataStore, type_name: str
) -> metadata_store_pb2.Artifact:
    found = store.get_artifacts_by_type(type_name)
    if not found:
        known = sorted(t.name for t in store.get_artifact_types())
        raise LineageError(
            f"no artifact of type {type_name!r}; types in this store: {', '.join(known) or 'none'}"
        )
    return max(found, key=artifact_order)


def _pushed_models(store: metadata_store.MetadataStore) -> List[metadata_store_pb2.Artifact]:
    """Artifacts a Pusher really pushed: it records pushed=0 when it declines to."""
    versioned = store.get_artifacts(
        list_options=metadata_store.ListOptions(
            filter_query="custom_properties.pushed_version.string_value != ''"
        )
    )
    return [a for a in versioned if a.custom_properties.get("pushed", _ZERO).int_value == 1]


def _push_paths(artifact: metadata_store_pb2.Artifact) -> Tuple[str, str]:
    return (
        _normal_path(custom_string(artifact, "pushed_destination")),
        _normal_path(artifact.uri),
    )


def _known_versions(pushed: List[metadata_store_pb2.Artifact]) -> str:
    if not pushed:
        return "the store holds no pushed models (has a pipeline pushed yet?)"
    latest = sorted(pushed, key=artifact_order)[-10:]
    versions = ", ".join(custom_string(a, "pushed_version") for a in latest)
    return f"pushed versions in this store (latest {len(latest)}): {versions}"


def _normal_path(path: str) -> str:
    if "://" in path:
        return path.rstrip("/")
    return os.path.normpath(os.path.abspath(path)) if path else ""


def _execution_node_names(store: metadata_store.MetadataStore) -> Dict[int, str]:
    names = {}
    for node in store.get_contexts_by_type("node"):
        short = node.name.rsplit(".", 1)[-1]
        for execution in store.get_executions_by_context(node.id):
            names[execution.id] = short
    return names


def _pipeline_run(
    store: metadata_store.MetadataStore, run: metadata_store_pb2.Context, node_names: Dict[int, str]
) -> PipelineRun:
    parents = store.get_parent_contexts_by_context(run.id)
    executions = sorted(
        store.get_executions_by_context(run.id), key=lambda e: (e.create_time_since_epoch, e.id)
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
