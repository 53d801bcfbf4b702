"""Lineage over the pipeline's ML Metadata store: from a served prediction back
to the data, query and code that produced its policy, and forward again.

Everything walks MLMD events (via `get_lineage_subgraph`), never component
names, so a component added between Trainer and Pusher shows up on its own.
One link is not an MLMD event: ExampleGen reads BigQuery tables named in its
query, and artifacts with a `table` property (the Generator's batches) wrote
them. The tracer adds that link as a `table` node, matching table ids exactly
and keeping only batches written before the read started.
"""

import dataclasses
import datetime
import json
import os
import pathlib
import re
import shutil
import sqlite3
import subprocess
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Set, Tuple

from google.protobuf import json_format, message, text_format
from ml_metadata import errors as mlmd_errors
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.proto import example_gen_pb2

MAX_HOPS = 100  # MLMD caps a traversal at 100 hops
MAX_START_NODES = 100  # and at 100 starting nodes per query
MLMD_TABLES = frozenset({"Artifact", "Execution", "Event", "Context", "MLMDEnv"})
SQLITE_HEADER = b"SQLite format 3\x00"
UPSTREAM, DOWNSTREAM, NEIGHBOURS = "upstream", "downstream", "neighbours"
_NOISE_PROPERTIES = frozenset({"tfx_version", "is_external"})
_TABLE_ID = re.compile(r"`([A-Za-z0-9_.:-]+)`")
_WINDOW_BOUND = re.compile(r"([\w.]+) (>=|<) TIMESTAMP\('([^']+)'\)")
_SQL_START = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
_Event = metadata_store_pb2.Event
_INPUT_EVENTS = {_Event.INPUT, _Event.DECLARED_INPUT, _Event.INTERNAL_INPUT}
_ZERO = metadata_store_pb2.Value(int_value=0)


class LineageError(RuntimeError):
    """A lineage question cannot be answered; the message says what to do."""


@dataclasses.dataclass
class LineageNode:
    """An artifact, an execution, a BigQuery table or a served prediction."""

    key: str
    kind: str
    type_name: str
    id: Optional[int] = None
    name: str = ""
    uri: str = ""
    state: str = ""
    pipeline: str = ""
    run_id: str = ""
    create_time: str = ""
    update_time: str = ""
    properties: Dict[str, Any] = dataclasses.field(default_factory=dict)
    custom_properties: Dict[str, Any] = dataclasses.field(default_factory=dict)
    facts: Dict[str, Any] = dataclasses.field(default_factory=dict)

    def property(self, name: str, default: Any = None) -> Any:
        """A property or custom property, whichever holds `name`."""
        return self.properties.get(name, self.custom_properties.get(name, default))


@dataclasses.dataclass(frozen=True, order=True)
class LineageEdge:
    """Data flows from `source` to `target`; `label` is the event's input/output key."""

    source: str
    target: str
    kind: str
    label: str = ""


@dataclasses.dataclass
class LineageGraph:
    """Nodes and edges reached from `root`, walked in `direction`."""

    root: str
    direction: str
    nodes: Dict[str, LineageNode]
    edges: List[LineageEdge]

    def predecessors(self, key: str) -> List[Tuple[LineageEdge, LineageNode]]:
        return _sorted_pairs((e, self.nodes[e.source]) for e in self.edges if e.target == key)

    def successors(self, key: str) -> List[Tuple[LineageEdge, LineageNode]]:
        return _sorted_pairs((e, self.nodes[e.target]) for e in self.edges if e.source == key)

    def of_type(self, type_name: str) -> List[LineageNode]:
        """Nodes whose type (artifact type or node id of an execution) is `type_name`."""
        return sorted(
            (n for n in self.nodes.values() if type_name in (n.type_name, n.name)),
            key=_node_order,
        )


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


# Opening a store ------------------------------------------------------------


def open_store(
    sqlite_path: Optional[os.PathLike] = None,
    connection_config: Optional[message.Message] = None,
) -> metadata_store.MetadataStore:
    """Opens an existing store read-only, or any MLMD connection (e.g. MySQL).

    A SQLite file is checked first because MLMD would silently create its
    tables in an empty or foreign database instead of reporting it.
    """
    if connection_config is not None:
        return _connect(connection_config, "the configured ML Metadata store")
    path = pathlib.Path(sqlite_path or "")
    _check_sqlite_store(path)
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = str(path)
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return _connect(config, str(path))


def load_connection_config(path: os.PathLike) -> message.Message:
    """Reads a ConnectionConfig (MySQL, SQLite) or MetadataStoreClientConfig (gRPC server).

    The file is text proto, or JSON when it ends in .json.
    """
    path = pathlib.Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise LineageError(f"cannot read the metadata connection config {path}: {e}") from e
    parse = json_format.Parse if path.suffix == ".json" else text_format.Parse
    for kind in (metadata_store_pb2.ConnectionConfig, metadata_store_pb2.MetadataStoreClientConfig):
        try:
            return parse(text, kind())
        except (json_format.ParseError, text_format.ParseError):
            continue
    raise LineageError(
        f"{path} is neither an MLMD ConnectionConfig nor a MetadataStoreClientConfig, "
        'e.g. mysql { host: "db" port: 3306 database: "mlmd" user: "u" password: "p" }'
    )


def _check_sqlite_store(path: pathlib.Path) -> None:
    hint = "point --metadata at a pipeline's metadata.sqlite (run `mlbandits train` to make one)"
    if not path.is_file():
        raise LineageError(f"no ML Metadata store at {path}; {hint}")
    if path.stat().st_size == 0:
        raise LineageError(f"{path} is an empty file, not an ML Metadata store; {hint}")
    with path.open("rb") as f:
        if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER:
            raise LineageError(f"{path} is not a SQLite database (corrupt or another file); {hint}")
    missing = MLMD_TABLES - _sqlite_tables(path, hint)
    if missing:
        raise LineageError(
            f"{path} is a SQLite database without ML Metadata tables "
            f"(missing {', '.join(sorted(missing))}); {hint}"
        )


def _sqlite_tables(path: pathlib.Path, hint: str) -> Set[str]:
    """Table names only: the catalogue tells a foreign database from an MLMD store."""
    try:
        with sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True) as db:
            return {
                row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
    except sqlite3.DatabaseError as e:
        raise LineageError(f"{path} is a corrupt SQLite database ({e}); {hint}") from e


def _connect(config: message.Message, where: str) -> metadata_store.MetadataStore:
    try:
        return metadata_store.MetadataStore(config)
    except (mlmd_errors.StatusError, RuntimeError) as e:  # a failed MySQL connect is a RuntimeError
        raise LineageError(
            f"cannot open {where} (is its server reachable, the schema current?): {e}"
        ) from e


# Queries ---------------------------------------------------------------------


def list_runs(store: metadata_store.MetadataStore) -> List[PipelineRun]:
    """Every pipeline run, oldest first, with the executions of its components."""
    runs = store.get_contexts_by_type("pipeline_run")
    if not runs:
        raise LineageError("the store holds no pipeline runs yet; run `mlbandits train` first")
    node_names = _execution_node_names(store)
    return [_pipeline_run(store, run, node_names) for run in sorted(runs, key=_context_order)]


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
    builder = _GraphBuilder(store)
    builder.add_subgraph(_lineage_subgraph(store, [artifact.id], [], NEIGHBOURS, hops=1))
    return builder.build(_artifact_key(artifact.id), NEIGHBOURS)


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
        found = [a for a in pushed if _custom_string(a, "pushed_version") == model_version]
        wanted = f"model_version {model_version!r}"
    else:
        target = _normal_path(push_dir)
        found = [a for a in pushed if target in _push_paths(a)]
        wanted = f"push directory {push_dir!r}"
    if not found:
        raise LineageError(f"no pushed model has {wanted}; {_known_versions(pushed)}")
    if len(found) > 1:
        where = ", ".join(_custom_string(a, "pushed_destination") for a in found)
        raise LineageError(
            f"{len(found)} pushed models have {wanted} ({where}); name one with --push-dir"
        )
    return found[0]


def trace_upstream(store: metadata_store.MetadataStore, artifact_id: int) -> LineageGraph:
    """Everything the artifact was derived from, down to the BigQuery tables read."""
    _artifact_by_id(store, artifact_id)
    builder = _GraphBuilder(store)
    builder.add_subgraph(_lineage_subgraph(store, [artifact_id], [], UPSTREAM))
    while True:
        writers = builder.link_read_tables()
        if not writers:
            break
        builder.add_subgraph(_lineage_subgraph(store, writers, [], UPSTREAM))
    return builder.build(_artifact_key(artifact_id), UPSTREAM)


def trace_downstream(store: metadata_store.MetadataStore, artifact_id: int) -> LineageGraph:
    """Everything derived from the artifact, e.g. the models trained from an Examples."""
    _artifact_by_id(store, artifact_id)
    builder = _GraphBuilder(store)
    builder.add_subgraph(_lineage_subgraph(store, [artifact_id], [], DOWNSTREAM))
    while True:
        readers = builder.link_written_tables()
        if not readers:
            break
        builder.add_subgraph(_lineage_subgraph(store, [], readers, DOWNSTREAM))
    return builder.build(_artifact_key(artifact_id), DOWNSTREAM)


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
    graph.edges.append(LineageEdge(_artifact_key(pushed.id), key, "served"))
    graph.root = key
    return graph


# Graph assembly --------------------------------------------------------------


class _GraphBuilder:
    """Accumulates MLMD subgraphs and the table links between them."""

    def __init__(self, store: metadata_store.MetadataStore):
        self._store = store
        self._artifacts: Dict[int, metadata_store_pb2.Artifact] = {}
        self._executions: Dict[int, metadata_store_pb2.Execution] = {}
        self._nodes: Dict[str, LineageNode] = {}
        self._edges: Set[LineageEdge] = set()

    def add_subgraph(self, graph: metadata_store_pb2.LineageGraph) -> None:
        contexts = _ContextIndex(graph)
        artifact_types = {t.id: t.name for t in graph.artifact_types}
        execution_types = {t.id: t.name for t in graph.execution_types}
        for artifact in graph.artifacts:
            self._artifacts[artifact.id] = artifact
            node = _artifact_node(artifact, artifact_types[artifact.type_id])
            node.pipeline, node.run_id, _ = contexts.of_artifact(artifact.id)
            self._nodes.setdefault(node.key, node)
        for execution in graph.executions:
            self._executions[execution.id] = execution
            node = _execution_node(execution, execution_types[execution.type_id])
            node.pipeline, node.run_id, node.name = contexts.of_execution(execution.id)
            node.name = node.name or node.type_name.rsplit(".", 1)[-1]
            self._nodes.setdefault(node.key, node)
        for event in graph.events:
            self._edges.add(_event_edge(event))

    def link_read_tables(self) -> List[int]:
        """Adds tables read by queries in the graph and the artifacts that wrote them first."""
        new_writers = []
        for execution in list(self._executions.values()):
            for table in _query_tables(_execution_query(execution)):
                self._add_table_read(table, execution.id)
                for writer in self._writers_before(table, execution.create_time_since_epoch):
                    self._edges.add(
                        LineageEdge(_artifact_key(writer.id), _table_key(table), "wrote")
                    )
                    if writer.id not in self._artifacts:
                        new_writers.append(writer.id)
        return new_writers

    def link_written_tables(self) -> List[int]:
        """Adds tables written by artifacts in the graph and the later executions that read them."""
        new_readers = []
        for artifact in list(self._artifacts.values()):
            table = _string_property(artifact, "table")
            if not table:
                continue
            self._edges.add(LineageEdge(_artifact_key(artifact.id), _table_key(table), "wrote"))
            for reader in self._readers_after(table, artifact.create_time_since_epoch):
                self._add_table_read(table, reader.id)
                if reader.id not in self._executions:
                    new_readers.append(reader.id)
        return new_readers

    def build(self, root: str, direction: str) -> LineageGraph:
        self._annotate_executions()
        self._annotate_row_counts()
        self._adopt_producer_runs()
        edges = sorted(
            e for e in self._edges if e.source in self._nodes and e.target in self._nodes
        )
        return LineageGraph(root, direction, dict(sorted(self._nodes.items())), edges)

    def _add_table_read(self, table: str, execution_id: int) -> None:
        key = _table_key(table)
        self._nodes.setdefault(
            key,
            LineageNode(
                key=key, kind="table", type_name="BigQueryTable", name=table, uri=f"bq://{table}"
            ),
        )
        self._edges.add(LineageEdge(key, _execution_key(execution_id), "reads"))

    def _writers_before(self, table: str, before_ms: int) -> List[metadata_store_pb2.Artifact]:
        return _by_property(
            self._store.get_artifacts,
            f"table.string_value = '{table}'",
            f"create_time_since_epoch < {before_ms} AND state = LIVE",
        )

    def _readers_after(self, table: str, after_ms: int) -> List[metadata_store_pb2.Execution]:
        candidates = _by_property(
            self._store.get_executions,
            f"input_config.string_value LIKE '%`{table}`%'",
            f"create_time_since_epoch > {after_ms}",
        )
        return [e for e in candidates if table in _query_tables(_execution_query(e))]

    def _annotate_executions(self) -> None:
        for execution in self._executions.values():
            facts = self._nodes[_execution_key(execution.id)].facts
            facts["seconds"] = _seconds(execution)
            queries = _execution_queries(execution)
            if not queries:
                continue
            if len(queries) == 1:
                facts["query"] = next(iter(queries.values()))
            else:
                facts["queries"] = queries
            facts["window"] = _query_window(" ".join(queries.values()))

    def _annotate_row_counts(self) -> None:
        """Rows per split from each statistics artifact, also put on the Examples it describes."""
        for artifact in self._artifacts.values():
            node = self._nodes[_artifact_key(artifact.id)]
            if node.type_name != "ExampleStatistics":
                continue
            rows = _rows_per_split(artifact)
            node.facts.update(rows)
            for examples in self._described_examples(node.key):
                examples.facts.update(rows)
                for producer in self._producers(examples.key):
                    producer.facts.update(rows)

    def _described_examples(self, statistics_key: str) -> List[LineageNode]:
        return [
            self._nodes[edge.source]
            for producer in self._producers(statistics_key)
            for edge in self._edges
            if edge.target == producer.key
            and edge.source in self._nodes
            and self._nodes[edge.source].type_name == "Examples"
        ]

    def _producers(self, key: str) -> List[LineageNode]:
        return [
            self._nodes[e.source]
            for e in self._edges
            if e.target == key and e.kind == "output" and e.source in self._nodes
        ]

    def _adopt_producer_runs(self) -> None:
        """An artifact belongs to the run that produced it, not to runs that later read it."""
        for node in self._nodes.values():
            producers = self._producers(node.key)
            if node.kind == "artifact" and producers:
                node.pipeline, node.run_id = producers[0].pipeline, producers[0].run_id


class _ContextIndex:
    """Which pipeline, run and node each artifact and execution belongs to."""

    def __init__(self, graph: metadata_store_pb2.LineageGraph):
        type_names = {t.id: t.name for t in graph.context_types}
        self._contexts = {c.id: (type_names.get(c.type_id, ""), c) for c in graph.contexts}
        self._of_artifact: Dict[int, List[int]] = {}
        self._of_execution: Dict[int, List[int]] = {}
        for a in graph.attributions:
            self._of_artifact.setdefault(a.artifact_id, []).append(a.context_id)
        for a in graph.associations:
            self._of_execution.setdefault(a.execution_id, []).append(a.context_id)

    def of_artifact(self, artifact_id: int) -> Tuple[str, str, str]:
        return self._describe(self._of_artifact.get(artifact_id, []))

    def of_execution(self, execution_id: int) -> Tuple[str, str, str]:
        return self._describe(self._of_execution.get(execution_id, []))

    def _describe(self, context_ids: Iterable[int]) -> Tuple[str, str, str]:
        """(pipeline, earliest run id, node id without the pipeline prefix)."""
        by_type: Dict[str, List[metadata_store_pb2.Context]] = {}
        for context_id in context_ids:
            if context_id in self._contexts:
                kind, context = self._contexts[context_id]
                by_type.setdefault(kind, []).append(context)
        pipeline = min(by_type.get("pipeline", []), key=_context_order, default=None)
        run = min(by_type.get("pipeline_run", []), key=_context_order, default=None)
        node = min(by_type.get("node", []), key=_context_order, default=None)
        pipeline_name = pipeline.name if pipeline else ""
        node_name = node.name.removeprefix(f"{pipeline_name}.") if node else ""
        return pipeline_name, run.name if run else "", node_name


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


def _by_property(fetch: Callable[..., list], condition: str, rest: str) -> list:
    """Artifacts or executions whose typed or custom property meets `condition`.

    One query per kind of property: MLMD joins property tables so that an OR
    across both kinds matches nothing.
    """
    found = {}
    for field in ("properties", "custom_properties"):
        options = metadata_store.ListOptions(filter_query=f"{field}.{condition} AND {rest}")
        for item in fetch(list_options=options):
            found[item.id] = item
    return sorted(found.values(), key=lambda item: item.id)


def _artifact_node(artifact: metadata_store_pb2.Artifact, type_name: str) -> LineageNode:
    return LineageNode(
        key=_artifact_key(artifact.id),
        kind="artifact",
        type_name=type_name,
        id=artifact.id,
        name=artifact.name,
        uri=artifact.uri,
        state=metadata_store_pb2.Artifact.State.Name(artifact.state),
        create_time=_iso(artifact.create_time_since_epoch),
        update_time=_iso(artifact.last_update_time_since_epoch),
        properties=_values(artifact.properties),
        custom_properties=_values(artifact.custom_properties),
    )


def _execution_node(execution: metadata_store_pb2.Execution, type_name: str) -> LineageNode:
    return LineageNode(
        key=_execution_key(execution.id),
        kind="execution",
        type_name=type_name,
        id=execution.id,
        state=metadata_store_pb2.Execution.State.Name(execution.last_known_state),
        create_time=_iso(execution.create_time_since_epoch),
        update_time=_iso(execution.last_update_time_since_epoch),
        properties=_values(execution.properties),
        custom_properties=_values(execution.custom_properties),
    )


def _event_edge(event: metadata_store_pb2.Event) -> LineageEdge:
    label = next((s.key for s in event.path.steps if s.HasField("key")), "")
    artifact, execution = _artifact_key(event.artifact_id), _execution_key(event.execution_id)
    if event.type in _INPUT_EVENTS:
        return LineageEdge(artifact, execution, "input", label)
    return LineageEdge(execution, artifact, "output", label)


def _values(values: Any) -> Dict[str, Any]:
    return {name: _value(value) for name, value in sorted(values.items())}


def _value(value: metadata_store_pb2.Value) -> Any:
    which = value.WhichOneof("value")
    if which == "struct_value":
        return json_format.MessageToDict(value.struct_value)
    if which == "proto_value":
        return json_format.MessageToDict(value.proto_value)
    return getattr(value, which) if which else None


def _execution_queries(execution: metadata_store_pb2.Execution) -> Dict[str, str]:
    """SQL per split from an ExampleGen-style `input_config`, nothing for other executions."""
    raw = execution.custom_properties.get("input_config") or execution.properties.get(
        "input_config"
    )
    if raw is None or not raw.string_value:
        return {}
    try:
        config = json_format.Parse(raw.string_value, example_gen_pb2.Input())
    except json_format.ParseError:
        return {}
    return {s.name: s.pattern for s in config.splits if _SQL_START.match(s.pattern)}


def _execution_query(execution: metadata_store_pb2.Execution) -> str:
    return " ".join(_execution_queries(execution).values())


def _query_tables(query: str) -> List[str]:
    return sorted(set(_TABLE_ID.findall(query)))


def _query_window(query: str) -> Dict[str, str]:
    """The time bounds a query applies; an empty bound means open."""
    window = {"column": "", "start": "", "end": ""}
    for column, op, value in _WINDOW_BOUND.findall(query):
        window["column"] = column
        window["start" if op == ">=" else "end"] = value
    return window


def _rows_per_split(statistics: metadata_store_pb2.Artifact) -> Dict[str, Any]:
    """Row counts from the statistics files; imported lazily as TFDV takes seconds to load."""
    from google.protobuf.message import DecodeError
    import tensorflow as tf

    from tfx_pipeline.reports import run_summary

    try:
        rows = run_summary.rows_per_split(statistics)
    except (OSError, DecodeError, tf.errors.OpError) as e:
        return {"rows_note": f"statistics at {statistics.uri} are unreadable: {e}"}
    return {"rows_per_split": rows, "rows_total": sum(rows.values())}


def _string_property(artifact: metadata_store_pb2.Artifact, name: str) -> str:
    value = artifact.properties.get(name) or artifact.custom_properties.get(name)
    return value.string_value if value is not None else ""


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
    return max(found, key=_artifact_order)


def _latest_of_type(
    store: metadata_store.MetadataStore, type_name: str
) -> metadata_store_pb2.Artifact:
    found = store.get_artifacts_by_type(type_name)
    if not found:
        known = sorted(t.name for t in store.get_artifact_types())
        raise LineageError(
            f"no artifact of type {type_name!r}; types in this store: {', '.join(known) or 'none'}"
        )
    return max(found, key=_artifact_order)


def _pushed_models(store: metadata_store.MetadataStore) -> List[metadata_store_pb2.Artifact]:
    """Artifacts a Pusher really pushed: it records pushed=0 when it declines to."""
    versioned = store.get_artifacts(
        list_options=metadata_store.ListOptions(
            filter_query="custom_properties.pushed_version.string_value != ''"
        )
    )
    return [a for a in versioned if a.custom_properties.get("pushed", _ZERO).int_value == 1]


def _custom_string(artifact: metadata_store_pb2.Artifact, name: str) -> str:
    value = artifact.custom_properties.get(name)
    return value.string_value if value is not None else ""


def _push_paths(artifact: metadata_store_pb2.Artifact) -> Tuple[str, str]:
    return (
        _normal_path(_custom_string(artifact, "pushed_destination")),
        _normal_path(artifact.uri),
    )


def _known_versions(pushed: List[metadata_store_pb2.Artifact]) -> str:
    if not pushed:
        return "the store holds no pushed models (has a pipeline pushed yet?)"
    latest = sorted(pushed, key=_artifact_order)[-10:]
    versions = ", ".join(_custom_string(a, "pushed_version") for a in latest)
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
        start=_iso(min((e.create_time_since_epoch for e in executions), default=0)),
        end=_iso(max((e.last_update_time_since_epoch for e in executions), default=0)),
        executions=[
            RunExecution(
                node=node_names.get(e.id, ""),
                execution_id=e.id,
                state=metadata_store_pb2.Execution.State.Name(e.last_known_state),
                start=_iso(e.create_time_since_epoch),
                end=_iso(e.last_update_time_since_epoch),
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


def _seconds(execution: metadata_store_pb2.Execution) -> float:
    return round(
        (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000, 3
    )


def _iso(ms_since_epoch: int) -> str:
    if not ms_since_epoch:
        return ""
    moment = datetime.datetime.fromtimestamp(ms_since_epoch / 1000, tz=datetime.timezone.utc)
    return moment.isoformat(timespec="milliseconds")


def _artifact_key(artifact_id: int) -> str:
    return f"artifact:{artifact_id}"


def _execution_key(execution_id: int) -> str:
    return f"execution:{execution_id}"


def _table_key(table: str) -> str:
    return f"table:{table}"


def _context_order(context: metadata_store_pb2.Context) -> Tuple[int, int]:
    return (context.create_time_since_epoch, context.id)


def _artifact_order(artifact: metadata_store_pb2.Artifact) -> Tuple[int, int]:
    return (artifact.create_time_since_epoch, artifact.id)


def _node_order(node: LineageNode) -> Tuple[str, int, str]:
    return (node.kind, node.id if node.id is not None else -1, node.name)


def _sorted_pairs(
    pairs: Iterable[Tuple[LineageEdge, LineageNode]]
) -> List[Tuple[LineageEdge, LineageNode]]:
    return sorted(pairs, key=lambda pair: _node_order(pair[1]))


# Rendering -------------------------------------------------------------------


def to_json(graph: LineageGraph) -> str:
    """The whole graph, every property included, for scripts."""
    return json.dumps(
        {
            "root": graph.root,
            "direction": graph.direction,
            "nodes": [dataclasses.asdict(n) for n in graph.nodes.values()],
            "edges": [dataclasses.asdict(e) for e in graph.edges],
        },
        indent=2,
        default=str,
    )


def runs_to_json(runs: List[PipelineRun]) -> str:
    return json.dumps([dataclasses.asdict(r) for r in runs], indent=2)


def runs_to_text(runs: List[PipelineRun]) -> str:
    """One block per run: status and span, then each component execution."""
    lines = []
    for run in runs:
        lines.append(f"{run.pipeline}  run {run.run_id}  {run.status}  {run.start} → {run.end}")
        for e in run.executions:
            lines.append(f"  #{e.execution_id:<4} {e.node:<20} {e.state:<9} {e.start} → {e.end}")
    return "\n".join(lines)


def to_tree_text(graph: LineageGraph) -> str:
    """The graph as an indented tree from the root; shared nodes print once."""
    root = graph.nodes[graph.root]
    run = f"  run {root.pipeline} {root.run_id}" if root.kind == "artifact" and root.run_id else ""
    lines = [_headline(root) + run] + [f"  {line}" for line in _detail_lines(root)]
    seen = {root.key}
    if graph.direction == NEIGHBOURS:
        lines += _neighbour_lines("produced by", graph.predecessors(root.key))
        lines += _neighbour_lines("used by", graph.successors(root.key))
        return "\n".join(lines)
    upstream = graph.direction == UPSTREAM
    neighbours = graph.predecessors if upstream else graph.successors
    _walk(graph.root, "", neighbours, upstream, seen, lines)
    return "\n".join(lines)


def _neighbour_lines(title: str, pairs: List[Tuple[LineageEdge, LineageNode]]) -> List[str]:
    rows = [f"  {_headline(node)}  (as {edge.label})" for edge, node in pairs]
    return [f"{title}:"] + (rows or ["  (none)"])


def _walk(
    key: str,
    prefix: str,
    neighbours: Callable[[str], List[Tuple[LineageEdge, LineageNode]]],
    upstream: bool,
    seen: Set[str],
    lines: List[str],
) -> None:
    children = neighbours(key)
    for index, (edge, node) in enumerate(children):
        last = index == len(children) - 1
        branch, indent = ("└── ", "    ") if last else ("├── ", "│   ")
        heading = f"{prefix}{branch}{_edge_phrase(edge, upstream)}{_headline(node)}"
        if node.key in seen:
            lines.append(f"{heading}  (shown above)")
            continue
        seen.add(node.key)
        lines.append(heading)
        bar = "│ " if neighbours(node.key) else "  "
        lines += [f"{prefix}{indent}{bar}{line}" for line in _detail_lines(node)]
        _walk(node.key, prefix + indent, neighbours, upstream, seen, lines)


def _edge_phrase(edge: LineageEdge, upstream: bool) -> str:
    phrases = {
        ("input", True): f"{edge.label}: ",
        ("output", True): "made by ",
        ("reads", True): "reads ",
        ("wrote", True): "written by ",
        ("served", True): "served by ",
        ("input", False): f"used as {edge.label} by ",
        ("output", False): f"{edge.label}: ",
        ("reads", False): "read by ",
        ("wrote", False): "wrote ",
        ("served", False): "served ",
    }
    return phrases[(edge.kind, upstream)]


def _headline(node: LineageNode) -> str:
    """One line per node; an artifact's run is its producer's, printed beside it."""
    if node.kind == "execution":
        status = f"execution #{node.id}, {node.state}, {node.facts.get('seconds', 0)} s"
        return f"{node.name} ({status})  run {node.pipeline} {node.run_id}"
    if node.kind == "artifact":
        return f"{node.type_name} #{node.id}  {node.uri}"
    if node.kind == "table":
        return f"BigQuery table {node.name}"
    return f"prediction {node.name}  at {node.create_time}  from {node.uri}"


def _detail_lines(node: LineageNode) -> List[str]:
    """Properties (bookkeeping and values repeated in facts left out), then derived facts."""
    lines = []
    hidden = _NOISE_PROPERTIES | (
        {"input_config"} if node.facts.get("query") or node.facts.get("queries") else set()
    )
    for name, value in {**node.properties, **node.custom_properties}.items():
        if name not in hidden:
            lines.append(f"{name} = {_short(value)}")
    for name, value in node.facts.items():
        if name == "rows_per_split":
            splits = ", ".join(f"{split}={rows}" for split, rows in value.items())
            lines.append(f"rows = {splits} (total {node.facts['rows_total']}, from StatisticsGen)")
        elif name == "window":
            lines.append(f"window = {_window_text(value)}")
        elif name not in ("rows_total", "seconds"):
            lines.append(f"{name} = {value if isinstance(value, str) else json.dumps(value)}")
    return lines


def _window_text(window: Dict[str, str]) -> str:
    if not (window["start"] or window["end"]):
        return "open (every row of the tables)"
    return f"{window['column']} in [{window['start'] or '-∞'}, {window['end'] or '+∞'})"


def _short(value: Any, limit: int = 120) -> str:
    if isinstance(value, str):
        try:
            value = json.loads(value) if value[:1] in "{[" else value
        except ValueError:
            pass
    text = (
        value
        if isinstance(value, str)
        else json.dumps(value, separators=(",", ":"), sort_keys=True)
    )
    return text if len(text) <= limit else text[: limit - 1] + "…"


def to_dot(graph: LineageGraph) -> str:
    """Graphviz DOT: artifacts as notes, executions as boxes, tables as cylinders."""
    shapes = {
        "artifact": 'shape=note, style=filled, fillcolor="#e3f2fd"',
        "execution": 'shape=box, style="rounded,filled", fillcolor="#fff3e0"',
        "table": 'shape=cylinder, style=filled, fillcolor="#e8f5e9"',
        "prediction": 'shape=diamond, style=filled, fillcolor="#fce4ec"',
    }
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];']
    for node in graph.nodes.values():
        style = shapes[node.kind] + (", penwidth=2.5" if node.key == graph.root else "")
        lines.append(f"  {_dot_id(node.key)} [label={_dot_id(_dot_label(node))}, {style}];")
    for edge in graph.edges:
        label = _dot_id(edge.label or edge.kind)
        lines.append(f"  {_dot_id(edge.source)} -> {_dot_id(edge.target)} [label={label}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def _dot_label(node: LineageNode) -> str:
    if node.kind == "execution":
        parts = [f"{node.name} #{node.id}", node.state, f"run {node.run_id}"]
        if node.facts.get("query"):
            parts.append(_short(node.facts["query"], 60))
    elif node.kind == "artifact":
        parts = [f"{node.type_name} #{node.id}", f"run {node.run_id}"]
        for name in ("pushed_version", "rows_written", "table"):
            if node.property(name) is not None:
                parts.append(f"{name}: {node.property(name)}")
        if "rows_total" in node.facts:
            parts.append(f"rows: {node.facts['rows_total']}")
    elif node.kind == "table":
        parts = ["BigQuery table", node.name]
    else:
        parts = [f"prediction {node.name}", f"model_version {node.property('model_version')}"]
    return "\n".join(parts)


def _dot_id(text: str) -> str:
    """A quoted DOT string; newlines become DOT's centred line breaks."""
    escaped = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{escaped}"'


def render_graphviz(dot_text: str, out_path: os.PathLike) -> Optional[pathlib.Path]:
    """Renders with Graphviz's `dot` (format from the suffix); None when it is not installed."""
    dot = shutil.which("dot")
    if dot is None:
        return None
    out = pathlib.Path(out_path)
    fmt = out.suffix.lstrip(".").lower()
    if fmt not in ("svg", "png", "pdf"):
        raise LineageError(f"cannot render {out}: use a .svg, .png or .pdf file name")
    result = subprocess.run(
        [dot, f"-T{fmt}", "-o", str(out)],
        input=dot_text,
        text=True,
        capture_output=True,
        timeout=120,
    )
    if result.returncode != 0:
        raise LineageError(f"Graphviz failed to render {out}: {result.stderr.strip()}")
    return out
