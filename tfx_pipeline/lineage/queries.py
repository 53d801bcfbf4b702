"""The lineage questions: runs, one artifact, a pushed model or a served
prediction traced upstream, and an artifact traced downstream.

Everything walks the store's events, never component names, so a component
added between Trainer and Pusher shows up on its own. The questions take any
`LineageStore` (a local ML Metadata store or Vertex ML Metadata), or an MLMD
`MetadataStore` as `store.open_store` returns it.
"""

import datetime
import os
from typing import Any, Dict, List, Optional, Tuple, Union

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from tfx_pipeline.lineage.graph import (
    GraphBuilder,
    LineageEdge,
    LineageGraph,
    LineageNode,
    artifact_key,
)
from tfx_pipeline.lineage.lineage_store import (
    DOWNSTREAM,
    NEIGHBOURS,
    UPSTREAM,
    LineageStore,
    PipelineRun,
)
from tfx_pipeline.lineage.mlmd_store import as_lineage_store
from tfx_pipeline.lineage.store import LineageError, artifact_order, custom_string

MAX_HOPS = 100  # MLMD caps a traversal at 100 hops
# What a server may report as the model version of a pushed model: the local Pusher's
# version directory, or on Vertex the Model resource and the deployed model's id.
_VERSION_PROPERTIES = ("pushed_version", "pushed_destination", "vertex_deployed_model_id")
AnyStore = Union[LineageStore, metadata_store.MetadataStore]


def list_runs(store: AnyStore) -> List[PipelineRun]:
    """Every pipeline run, oldest first, with the executions of its components."""
    runs = as_lineage_store(store).pipeline_runs()
    if not runs:
        raise LineageError(
            "the store holds no pipeline runs yet; run `mlbandits train` "
            "(or `mlbandits vertex submit`) first"
        )
    return runs


def show_artifact(
    store: AnyStore,
    artifact_id: Optional[int] = None,
    uri: Optional[str] = None,
    type_name: Optional[str] = None,
) -> LineageGraph:
    """One artifact (by id, URI, or latest of a type) with its producer and consumers."""
    if sum(x is not None for x in (artifact_id, uri, type_name)) != 1:
        raise LineageError("name exactly one of: an artifact id, --uri or --type")
    store = as_lineage_store(store)
    if artifact_id is not None:
        artifact = _artifact_by_id(store, artifact_id)
    elif uri is not None:
        artifact = _artifact_by_uri(store, uri)
    else:
        artifact = _latest_of_type(store, type_name)
    builder = GraphBuilder(store)
    builder.add_subgraph(store.lineage_subgraph([artifact.id], [], NEIGHBOURS, hops=1))
    return builder.build(artifact_key(artifact.id), NEIGHBOURS)


def find_pushed_model(
    store: AnyStore,
    model_version: Optional[str] = None,
    push_dir: Optional[str] = None,
) -> metadata_store_pb2.Artifact:
    """The pushed-model artifact by the version the server reports, or by its directory."""
    if (model_version is None) == (push_dir is None):
        raise LineageError("name exactly one of a model version or a push directory")
    pushed = as_lineage_store(store).pushed_models()
    if model_version is not None:
        found = [a for a in pushed if model_version in _served_versions(a)]
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


def trace_upstream(store: AnyStore, artifact_id: int) -> LineageGraph:
    """Everything the artifact was derived from, down to the BigQuery tables read."""
    store = as_lineage_store(store)
    _artifact_by_id(store, artifact_id)
    builder = GraphBuilder(store)
    builder.add_subgraph(store.lineage_subgraph([artifact_id], [], UPSTREAM, MAX_HOPS))
    while True:
        writers = builder.link_read_tables()
        if not writers:
            break
        builder.add_subgraph(store.lineage_subgraph(writers, [], UPSTREAM, MAX_HOPS))
    return builder.build(artifact_key(artifact_id), UPSTREAM)


def trace_downstream(store: AnyStore, artifact_id: int) -> LineageGraph:
    """Everything derived from the artifact, e.g. the models trained from an Examples."""
    store = as_lineage_store(store)
    _artifact_by_id(store, artifact_id)
    builder = GraphBuilder(store)
    builder.add_subgraph(store.lineage_subgraph([artifact_id], [], DOWNSTREAM, MAX_HOPS))
    while True:
        readers = builder.link_written_tables()
        if not readers:
            break
        builder.add_subgraph(store.lineage_subgraph([], readers, DOWNSTREAM, MAX_HOPS))
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
    store: AnyStore, client: Any, predictions_table_id: str, event_id: str
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


def _artifact_by_id(store: LineageStore, artifact_id: int) -> metadata_store_pb2.Artifact:
    found = store.artifact(artifact_id)
    if found is None:
        raise LineageError(
            f"no artifact with id {artifact_id}; `mlbandits lineage runs` and "
            "`mlbandits lineage show --type Model` list what the store holds"
        )
    return found


def _artifact_by_uri(store: LineageStore, uri: str) -> metadata_store_pb2.Artifact:
    found = store.artifacts_by_uri(uri)
    if not found:
        raise LineageError(f"no artifact has uri {uri!r}")
    return max(found, key=artifact_order)


def _latest_of_type(store: LineageStore, type_name: str) -> metadata_store_pb2.Artifact:
    found = store.artifacts_of_type(type_name)
    if not found:
        known = store.artifact_type_names()
        raise LineageError(
            f"no artifact of type {type_name!r}; types in this store: {', '.join(known) or 'none'}"
        )
    return max(found, key=artifact_order)


def _served_versions(artifact: metadata_store_pb2.Artifact) -> List[str]:
    return [v for v in (custom_string(artifact, p) for p in _VERSION_PROPERTIES) if v]


def _push_paths(artifact: metadata_store_pb2.Artifact) -> Tuple[str, str]:
    return (
        _normal_path(custom_string(artifact, "pushed_destination")),
        _normal_path(artifact.uri),
    )


def _known_versions(pushed: List[metadata_store_pb2.Artifact]) -> str:
    if not pushed:
        return "the store holds no pushed models (has a pipeline pushed yet?)"
    latest = sorted(pushed, key=artifact_order)[-10:]
    versions = ", ".join((_served_versions(a) or [f"artifact #{a.id}"])[0] for a in latest)
    return f"pushed versions in this store (latest {len(latest)}): {versions}"


def _normal_path(path: str) -> str:
    if "://" in path:
        return path.rstrip("/")
    return os.path.normpath(os.path.abspath(path)) if path else ""
