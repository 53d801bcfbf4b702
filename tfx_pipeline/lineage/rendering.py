"""Lineage graphs and pipeline runs as output: a text tree, JSON, Graphviz DOT and images."""

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
from typing import Any, Callable, Dict, List, Optional, Set, Tuple

from tfx_pipeline.lineage.graph import LineageEdge, LineageGraph, LineageNode
from tfx_pipeline.lineage.lineage_store import NEIGHBOURS, UPSTREAM, PipelineRun
from tfx_pipeline.lineage.store import LineageError

_NOISE_PROPERTIES = frozenset({"tfx_version", "is_external"})


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
