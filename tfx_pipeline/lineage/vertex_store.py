"""The lineage reads over Vertex ML Metadata and Vertex AI Pipelines (`lineage ... --vertex`).

A TFX run on Vertex AI Pipelines records one Artifact per output (its
properties in `metadata`), one Execution per step (its parameters as
`input:<name>` in `metadata`) and the Events between them in the region's
`default` metadata store. This store reads them through Google's
`aiplatform_v1` clients over REST and answers in MLMD's messages, with what the
pipeline jobs add (`vertex_runs`): run, step and key of each record, and the
types TFX's numbers had (`vertex_values`), so a question gets the answer it
gets locally.

A traversal walks one record at a time in the asked direction
(`queryArtifactLineageSubgraph` with one hop from an artifact,
`queryExecutionInputsAndOutputs` from an execution), since Vertex's own
subgraph query has no direction and reaches every run the resolver linked.
"""

import datetime
from typing import Any, Callable, Dict, List, Optional, Sequence, Set, Tuple

import proto
from google.api_core import client_options
from google.api_core import exceptions as api_exceptions
from google.auth import credentials as auth_credentials
from google.auth import exceptions as auth_exceptions
from google.cloud import aiplatform_v1
from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from requests import exceptions as requests_exceptions

from tfx_pipeline.lineage import vertex_runs, vertex_values
from tfx_pipeline.lineage.lineage_store import DOWNSTREAM, NEIGHBOURS, UPSTREAM, PipelineRun
from tfx_pipeline.lineage.store import LineageError
from tfx_pipeline.vertex.config import VertexConfig

METADATA_STORE = "default"  # the metadata store Vertex AI Pipelines records into
CALL_TIMEOUT_SECONDS = 60
_ARTIFACT, _EXECUTION = "artifact", "execution"
# Which events a walk follows from an artifact and from an execution, by direction.
_WALKS = {
    UPSTREAM: {_ARTIFACT: {"OUTPUT"}, _EXECUTION: {"INPUT"}},
    DOWNSTREAM: {_ARTIFACT: {"INPUT"}, _EXECUTION: {"OUTPUT"}},
    NEIGHBOURS: {_ARTIFACT: {"INPUT", "OUTPUT"}, _EXECUTION: {"INPUT", "OUTPUT"}},
}
_CONTEXT_TYPES = ("pipeline", "pipeline_run", "node")
_MLMD_EVENT = {
    "INPUT": metadata_store_pb2.Event.INPUT,
    "OUTPUT": metadata_store_pb2.Event.OUTPUT,
}
_Node = Tuple[str, int]


class VertexLineageStore:
    """A `LineageStore` answered by Vertex ML Metadata and the location's pipeline jobs."""

    def __init__(self, project: str, region: str, api_endpoint: str = ""):
        self._location = f"projects/{project}/locations/{region}"
        self._store = f"{self._location}/metadataStores/{METADATA_STORE}"
        self._where = api_endpoint or f"{region}-aiplatform.googleapis.com"
        options = client_options.ClientOptions(api_endpoint=self._where)
        credentials = _credentials(api_endpoint)
        self._metadata = self._call(
            "open Vertex ML Metadata",
            lambda: aiplatform_v1.MetadataServiceClient(
                credentials=credentials, transport="rest", client_options=options
            ),
        )
        self._pipelines = self._call(
            "open Vertex AI Pipelines",
            lambda: aiplatform_v1.PipelineServiceClient(
                credentials=credentials, transport="rest", client_options=options
            ),
        )
        self._index: Optional[vertex_runs.RunIndex] = None
        self._type_ids: Dict[Tuple[str, str], int] = {}
        self._context_ids: Dict[Tuple[str, str], int] = {}

    @classmethod
    def from_config(cls, vertex: VertexConfig) -> "VertexLineageStore":
        for field in ("project", "region"):
            if not getattr(vertex, field):
                raise LineageError(
                    f"--vertex needs vertex.{field} (where the pipelines ran): set it in the "
                    '"vertex" section of the --config file'
                )
        return cls(vertex.project, vertex.region, vertex.api_endpoint)

    def pipeline_runs(self) -> List[PipelineRun]:
        return list(self._runs().runs)

    def artifact(self, artifact_id: int) -> Optional[metadata_store_pb2.Artifact]:
        name = f"{self._store}/artifacts/{artifact_id}"
        try:
            found = self._call(
                f"read artifact {artifact_id}",
                lambda: self._metadata.get_artifact(name=name, timeout=CALL_TIMEOUT_SECONDS),
                missing_ok=True,
            )
        except api_exceptions.NotFound:
            return None
        return self._mlmd_artifact(_raw(found))

    def artifacts_by_uri(self, uri: str) -> List[metadata_store_pb2.Artifact]:
        return self._artifacts(f"uri = {_quoted(uri)}") or self._artifacts(
            f"uri = {_quoted(uri.rstrip('/'))}"
        )

    def artifacts_of_type(self, type_name: str) -> List[metadata_store_pb2.Artifact]:
        return self._artifacts(f"schema_title = {_quoted(vertex_values.schema_title(type_name))}")

    def artifact_type_names(self) -> List[str]:
        return sorted({vertex_values.type_name(title) for title in self._runs().schema_titles})

    def pushed_models(self) -> List[metadata_store_pb2.Artifact]:
        return self._artifacts("metadata.pushed.number_value = 1")

    def lineage_subgraph(
        self,
        artifact_ids: Sequence[int],
        execution_ids: Sequence[int],
        direction: str,
        hops: int,
    ) -> metadata_store_pb2.LineageGraph:
        """A walk in `direction`, one request per record it leaves from."""
        found: Dict[_Node, Any] = {}
        events: Dict[Tuple[int, int, str], Any] = {}
        frontier: List[_Node] = [(_ARTIFACT, i) for i in artifact_ids]
        frontier += [(_EXECUTION, i) for i in execution_ids]
        seen: Set[_Node] = set(frontier)
        for _ in range(hops):
            following: List[_Node] = []
            for node in frontier:
                for neighbour, event in self._walk_from(node, direction, found):
                    events[_event_key(event)] = event
                    if neighbour not in seen:
                        seen.add(neighbour)
                        following.append(neighbour)
            frontier = following
            if not frontier:
                break
        return self._mlmd_graph(
            [(n, found[n]) for n in sorted(seen) if n in found], events.values()
        )

    def table_writers(self, table: str, before_ms: int) -> List[metadata_store_pb2.Artifact]:
        return self._artifacts(
            f"metadata.table.string_value = {_quoted(table)} AND "
            f"create_time < {_quoted(_rfc3339(before_ms))} AND state = LIVE"
        )

    def table_readers(self, table: str, after_ms: int) -> List[metadata_store_pb2.Execution]:
        """Executions made later; Vertex filters cannot search inside a string, the caller can."""
        request = {
            "parent": self._store,
            "filter": f"create_time > {_quoted(_rfc3339(after_ms))}",
        }
        found = self._call(
            "list executions",
            lambda: list(
                self._metadata.list_executions(request=request, timeout=CALL_TIMEOUT_SECONDS)
            ),
        )
        return [self._mlmd_execution(_raw(e)) for e in found]

    def _runs(self) -> vertex_runs.RunIndex:
        """Every pipeline job of the location, read once: list answers carry job details."""
        if self._index is None:
            jobs = self._call(
                "list pipeline jobs",
                lambda: list(
                    self._pipelines.list_pipeline_jobs(
                        parent=self._location, timeout=CALL_TIMEOUT_SECONDS
                    )
                ),
            )
            self._index = vertex_runs.build_run_index(_raw(j) for j in jobs)
        return self._index

    def _artifacts(self, filter_text: str) -> List[metadata_store_pb2.Artifact]:
        request = {"parent": self._store, "filter": filter_text}
        found = self._call(
            f"list artifacts where {filter_text}",
            lambda: list(
                self._metadata.list_artifacts(request=request, timeout=CALL_TIMEOUT_SECONDS)
            ),
        )
        return [self._mlmd_artifact(_raw(a)) for a in found]

    def _walk_from(
        self, node: _Node, direction: str, found: Dict[_Node, Any]
    ) -> List[Tuple[_Node, Any]]:
        """The node's neighbours in `direction` with the events leading there; records go
        into `found`."""
        kind, node_id = node
        if kind == _ARTIFACT:
            name = f"{self._store}/artifacts/{node_id}"
            subgraph = self._call(
                f"query the lineage of artifact {node_id}",
                lambda: self._metadata.query_artifact_lineage_subgraph(
                    request={"artifact": name, "max_hops": 1}, timeout=CALL_TIMEOUT_SECONDS
                ),
            )
        else:
            name = f"{self._store}/executions/{node_id}"
            subgraph = self._call(
                f"query the inputs and outputs of execution {node_id}",
                lambda: self._metadata.query_execution_inputs_and_outputs(
                    execution=name, timeout=CALL_TIMEOUT_SECONDS
                ),
            )
        subgraph = _raw(subgraph)
        for artifact in subgraph.artifacts:
            found.setdefault((_ARTIFACT, vertex_runs.resource_id(artifact.name)), artifact)
        for execution in subgraph.executions:
            found.setdefault((_EXECUTION, vertex_runs.resource_id(execution.name)), execution)
        walked = []
        for event in subgraph.events:
            artifact_node = (_ARTIFACT, vertex_runs.resource_id(event.artifact))
            execution_node = (_EXECUTION, vertex_runs.resource_id(event.execution))
            if node not in (artifact_node, execution_node):
                continue
            if vertex_runs.enum_name(event, "type_") in _WALKS[direction][kind]:
                walked.append((execution_node if kind == _ARTIFACT else artifact_node, event))
        return walked

    def _mlmd_graph(
        self, records: List[Tuple[_Node, Any]], events: Any
    ) -> metadata_store_pb2.LineageGraph:
        """Records and events as MLMD's LineageGraph, with their pipeline, run and node
        contexts; an artifact belongs to the runs of every step that made or read it."""
        graph = metadata_store_pb2.LineageGraph()
        index = self._runs()
        for (kind, record_id), record in records:
            if kind == _ARTIFACT:
                graph.artifacts.append(self._mlmd_artifact(record))
                for step in index.steps_of_artifact.get(record_id, []):
                    for context_id in self._contexts(graph, step):
                        graph.attributions.add(context_id=context_id, artifact_id=record_id)
                continue
            graph.executions.append(self._mlmd_execution(record))
            step = index.step_of_execution.get(record_id)
            for context_id in self._contexts(graph, step) if step else []:
                graph.associations.add(context_id=context_id, execution_id=record_id)
        for event in events:
            graph.events.extend(self._mlmd_events(event))
        self._add_types(graph)
        return graph

    def _mlmd_artifact(self, artifact: Any) -> metadata_store_pb2.Artifact:
        artifact_id = vertex_runs.resource_id(artifact.name)
        result = metadata_store_pb2.Artifact(
            id=artifact_id,
            type_id=self._type_id("artifact", vertex_values.type_name(artifact.schema_title)),
            uri=artifact.uri,
            name=artifact.display_name,
            state=metadata_store_pb2.Artifact.State.Value(
                _artifact_state(vertex_runs.enum_name(artifact, "state"))
            ),
            create_time_since_epoch=vertex_runs.millis(artifact.create_time),
            last_update_time_since_epoch=vertex_runs.millis(artifact.update_time),
        )
        typed = self._runs().property_types.get(artifact_id, {})
        for key, value in json_format.MessageToDict(artifact.metadata).items():
            typed_value = metadata_store_pb2.Value()
            if key in typed and vertex_values.set_typed(typed_value, typed[key], value):
                result.properties[key].CopyFrom(typed_value)
                continue
            stripped = key[len(vertex_values.CUSTOM_PREFIX) :]
            name = (
                stripped
                if key.startswith(vertex_values.CUSTOM_PREFIX) and stripped in typed
                else key
            )
            vertex_values.set_untyped(result.custom_properties[name], value)
        return result

    def _mlmd_execution(self, execution: Any) -> metadata_store_pb2.Execution:
        execution_id = vertex_runs.resource_id(execution.name)
        step = self._runs().step_of_execution.get(execution_id)
        types = step.parameter_types if step else {}
        result = metadata_store_pb2.Execution(
            id=execution_id,
            type_id=self._type_id("execution", execution.schema_title),
            last_known_state=metadata_store_pb2.Execution.State.Value(
                vertex_runs.execution_state(vertex_runs.enum_name(execution, "state"))
            ),
            create_time_since_epoch=vertex_runs.millis(execution.create_time),
            last_update_time_since_epoch=vertex_runs.millis(execution.update_time),
        )
        for key, value in json_format.MessageToDict(execution.metadata).items():
            if not key.startswith(vertex_values.PARAMETER_PREFIX):
                continue  # outputs and Vertex's own bookkeeping
            name = key[len(vertex_values.PARAMETER_PREFIX) :]
            target = result.custom_properties[name]
            if not vertex_values.set_typed(target, types.get(name, ""), value):
                vertex_values.set_untyped(target, value)
        return result

    def _mlmd_events(self, event: Any) -> List[metadata_store_pb2.Event]:
        """One MLMD event per key the artifact was passed under (none known: no key)."""
        artifact_id = vertex_runs.resource_id(event.artifact)
        execution_id = vertex_runs.resource_id(event.execution)
        kind = vertex_runs.enum_name(event, "type_")
        keys = self._runs().keys.get((execution_id, artifact_id, kind)) or [("", -1)]
        events = []
        for key, position in keys:
            mlmd_event = metadata_store_pb2.Event(
                artifact_id=artifact_id,
                execution_id=execution_id,
                type=_MLMD_EVENT.get(kind, metadata_store_pb2.Event.UNKNOWN),
                milliseconds_since_epoch=vertex_runs.millis(event.event_time),
            )
            if key:
                mlmd_event.path.steps.add(key=key)
                mlmd_event.path.steps.add(index=position)
            events.append(mlmd_event)
        return events

    def _contexts(
        self, graph: metadata_store_pb2.LineageGraph, step: vertex_runs.Step
    ) -> List[int]:
        """The step's pipeline, run and node contexts, added to `graph` once each."""
        ids = []
        for kind, name in zip(
            _CONTEXT_TYPES,
            (step.pipeline, step.run_id, f"{step.pipeline}.{step.node}"),
            strict=True,
        ):
            context_id = self._context_ids.setdefault((kind, name), len(self._context_ids) + 1)
            if all(c.id != context_id for c in graph.contexts):
                graph.contexts.add(
                    id=context_id,
                    type_id=self._type_id("context", kind),
                    name=name,
                    create_time_since_epoch=step.order[0],
                )
            ids.append(context_id)
        return ids

    def _type_id(self, kind: str, name: str) -> int:
        return self._type_ids.setdefault((kind, name), len(self._type_ids) + 1)

    def _add_types(self, graph: metadata_store_pb2.LineageGraph) -> None:
        fields = {
            "artifact": graph.artifact_types,
            "execution": graph.execution_types,
            "context": graph.context_types,
        }
        for (kind, name), type_id in self._type_ids.items():
            fields[kind].add(id=type_id, name=name)

    def _call(self, what: str, request: Callable[[], Any], missing_ok: bool = False) -> Any:
        """One request; what can go wrong becomes a LineageError that says what to do."""
        try:
            return request()
        except api_exceptions.NotFound as e:
            if missing_ok:
                raise
            raise LineageError(f"Vertex AI cannot {what}: {e.message}") from e
        except api_exceptions.GoogleAPICallError as e:
            raise LineageError(
                f"Vertex AI refused to {what} in {self._location}: {e.message} (check "
                "vertex.project and vertex.region, and that you may read Vertex AI: "
                "roles/aiplatform.viewer)"
            ) from e
        except auth_exceptions.DefaultCredentialsError as e:
            raise LineageError(
                "no Google Cloud credentials for --vertex: run "
                "`gcloud auth application-default login`"
            ) from e
        except requests_exceptions.RequestException as e:
            raise LineageError(
                f"cannot reach Vertex AI at {self._where} to {what}: {e} "
                "(check vertex.api_endpoint and the network)"
            ) from e


def _credentials(api_endpoint: str) -> Optional[auth_credentials.Credentials]:
    """Application default credentials, except for a plaintext (local) stand-in.

    Google's endpoints are HTTPS only, so an http:// endpoint must not receive real tokens.
    """
    if api_endpoint.startswith("http://"):
        return auth_credentials.AnonymousCredentials()
    return None


def _raw(message: Any) -> Any:
    """The protobuf message under a proto-plus one (proto-plus may already have unwrapped it)."""
    return type(message).pb(message) if isinstance(message, proto.Message) else message


def _event_key(event: Any) -> Tuple[str, str, int]:
    return (event.artifact, event.execution, event.type_)


def _quoted(value: str) -> str:
    """A string literal of Vertex's filter syntax (AIP-160)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _rfc3339(ms_since_epoch: int) -> str:
    moment = datetime.datetime.fromtimestamp(ms_since_epoch / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _artifact_state(vertex_state: str) -> str:
    return vertex_state if vertex_state in ("PENDING", "LIVE") else "UNKNOWN"
