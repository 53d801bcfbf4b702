"""The lineage graph (nodes and edges) and building it from MLMD subgraphs.

One link is not an MLMD event: ExampleGen reads BigQuery tables named in its
query, and artifacts with a `table` property (the Generator's batches) wrote
them. The builder adds that link as a `table` node, matching table ids exactly
and keeping only batches written before the read started.
"""

import dataclasses
import re
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

from google.protobuf import json_format
from ml_metadata.proto import metadata_store_pb2
from tfx.proto import example_gen_pb2

from tfx_pipeline.lineage.lineage_store import LineageStore
from tfx_pipeline.lineage.store import context_order, iso_time, string_property

_TABLE_ID = re.compile(r"`([A-Za-z0-9_.:-]+)`")
_WINDOW_BOUND = re.compile(r"([\w.]+) (>=|<) TIMESTAMP\('([^']+)'\)")
_SQL_START = re.compile(r"\s*(SELECT|WITH)\b", re.IGNORECASE)
_Event = metadata_store_pb2.Event
_INPUT_EVENTS = {_Event.INPUT, _Event.DECLARED_INPUT, _Event.INTERNAL_INPUT}


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


class GraphBuilder:
    """Accumulates MLMD subgraphs and the table links between them."""

    def __init__(self, store: LineageStore):
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
                        LineageEdge(artifact_key(writer.id), _table_key(table), "wrote")
                    )
                    if writer.id not in self._artifacts:
                        new_writers.append(writer.id)
        return new_writers

    def link_written_tables(self) -> List[int]:
        """Adds tables written by artifacts in the graph and the later executions that read them."""
        new_readers = []
        for artifact in list(self._artifacts.values()):
            table = string_property(artifact, "table")
            if not table:
                continue
            self._edges.add(LineageEdge(artifact_key(artifact.id), _table_key(table), "wrote"))
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
        candidates = self._store.table_writers(table, before_ms)
        return [a for a in candidates if string_property(a, "table") == table]

    def _readers_after(self, table: str, after_ms: int) -> List[metadata_store_pb2.Execution]:
        candidates = self._store.table_readers(table, after_ms)
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
            node = self._nodes[artifact_key(artifact.id)]
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
        pipeline = min(by_type.get("pipeline", []), key=context_order, default=None)
        run = min(by_type.get("pipeline_run", []), key=context_order, default=None)
        node = min(by_type.get("node", []), key=context_order, default=None)
        pipeline_name = pipeline.name if pipeline else ""
        node_name = node.name.removeprefix(f"{pipeline_name}.") if node else ""
        return pipeline_name, run.name if run else "", node_name


def _artifact_node(artifact: metadata_store_pb2.Artifact, type_name: str) -> LineageNode:
    return LineageNode(
        key=artifact_key(artifact.id),
        kind="artifact",
        type_name=type_name,
        id=artifact.id,
        name=artifact.name,
        uri=artifact.uri,
        state=metadata_store_pb2.Artifact.State.Name(artifact.state),
        create_time=iso_time(artifact.create_time_since_epoch),
        update_time=iso_time(artifact.last_update_time_since_epoch),
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
        create_time=iso_time(execution.create_time_since_epoch),
        update_time=iso_time(execution.last_update_time_since_epoch),
        properties=_values(execution.properties),
        custom_properties=_values(execution.custom_properties),
    )


def _event_edge(event: metadata_store_pb2.Event) -> LineageEdge:
    label = next((s.key for s in event.path.steps if s.HasField("key")), "")
    artifact, execution = artifact_key(event.artifact_id), _execution_key(event.execution_id)
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
    import tensorflow as tf
    from google.protobuf.message import DecodeError

    from tfx_pipeline.reports import run_summary

    try:
        rows = run_summary.rows_per_split(statistics)
    except (OSError, DecodeError, tf.errors.OpError) as e:
        return {"rows_note": f"statistics at {statistics.uri} are unreadable: {e}"}
    return {"rows_per_split": rows, "rows_total": sum(rows.values())}


def _seconds(execution: metadata_store_pb2.Execution) -> float:
    return round(
        (execution.last_update_time_since_epoch - execution.create_time_since_epoch) / 1000, 3
    )


def artifact_key(artifact_id: int) -> str:
    """An artifact's node key; queries name a graph's root with it."""
    return f"artifact:{artifact_id}"


def _execution_key(execution_id: int) -> str:
    return f"execution:{execution_id}"


def _table_key(table: str) -> str:
    return f"table:{table}"


def _node_order(node: LineageNode) -> Tuple[str, int, str]:
    return (node.kind, node.id if node.id is not None else -1, node.name)


def _sorted_pairs(
    pairs: Iterable[Tuple[LineageEdge, LineageNode]],
) -> List[Tuple[LineageEdge, LineageNode]]:
    return sorted(pairs, key=lambda pair: _node_order(pair[1]))
