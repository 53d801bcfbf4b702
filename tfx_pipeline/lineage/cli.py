"""`mlbandits lineage ...`: where a served policy came from, read from ML Metadata:
a local store, or with `--vertex` Vertex ML Metadata and Vertex AI Pipelines."""

import argparse
import pathlib
import sys
from typing import Callable, Dict

from bandit_core.bigquery import clients
from bandit_core.whole_numbers import is_whole_number
from tfx_pipeline import config as config_lib
from tfx_pipeline import console
from tfx_pipeline.lineage.graph import LineageGraph
from tfx_pipeline.lineage.lineage_store import LineageStore
from tfx_pipeline.lineage.mlmd_store import MlmdLineageStore
from tfx_pipeline.lineage.queries import (
    find_pushed_model,
    list_runs,
    show_artifact,
    trace_downstream,
    trace_event,
    trace_upstream,
)
from tfx_pipeline.lineage.rendering import (
    render_graphviz,
    runs_to_json,
    runs_to_text,
    to_dot,
    to_json,
    to_tree_text,
)
from tfx_pipeline.lineage.store import LineageError, load_connection_config, open_store

_Store = LineageStore
_Config = config_lib.PipelineConfig


def add_lineage_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `lineage runs|show|trace-model|trace-event|downstream` to a CLI."""
    parser = subparsers.add_parser(
        "lineage",
        help="Trace models, data and runs through ML Metadata (local or Vertex).",
        description="Trace models, data and runs through the local ML Metadata store, or "
        "with --vertex through Vertex ML Metadata and Vertex AI Pipelines.",
    )
    parser.set_defaults(movielens_dir=None)
    commands = parser.add_subparsers(
        dest="lineage_command", required=True, metavar="LINEAGE_COMMAND"
    )
    store, graph = _store_options(), _graph_options()

    _command(
        commands, "runs", "List pipeline runs: status, start/end and component executions.", [store]
    )

    show = _command(
        commands,
        "show",
        "Show one artifact with its properties, producer and consumers.",
        [store, graph],
    )
    show.add_argument("artifact_id", nargs="?", type=_artifact_id, help="MLMD artifact id")
    show.add_argument("--uri", help="the artifact's URI instead of its id")
    show.add_argument(
        "--type", dest="type_name", help="the latest artifact of this type, e.g. Model"
    )

    model = _command(
        commands,
        "trace-model",
        "Trace a pushed model upstream to its data and code.",
        [store, graph],
    )
    which = model.add_mutually_exclusive_group(required=True)
    which.add_argument("--model-version", help="the model_version the prediction server returns")
    which.add_argument("--push-dir", help="the directory the Pusher wrote the model to")

    event = _command(
        commands,
        "trace-event",
        "Trace a logged prediction to the model that served it and upstream.",
        [store, graph],
    )
    event.add_argument("event_id", help="event_id from the predictions table")
    event.add_argument(
        "--bigquery-endpoint",
        help="REST endpoint of a running BigQuery emulator (default: start one on the run's data, "
        "or real BigQuery when bigquery.use_emulator is false; with --vertex real BigQuery in "
        "vertex.bigquery_project)",
    )

    downstream = _command(
        commands,
        "downstream",
        "Trace an artifact downstream, e.g. the models trained from an Examples.",
        [store, graph],
    )
    downstream.add_argument("artifact_id", type=_artifact_id, help="MLMD artifact id")
    return parser


def run_lineage_command(args: argparse.Namespace, config: config_lib.PipelineConfig) -> int:
    """Answers one lineage question on stdout; 1 with a message on stderr when it cannot."""
    try:
        store = _open_store(args, config)
        if args.lineage_command == "runs":
            runs = list_runs(store)
            print(runs_to_json(runs) if args.json else runs_to_text(runs))
            return 0
        graph = _GRAPH_COMMANDS[args.lineage_command](args, config, store)
        print(to_json(graph) if args.json else to_tree_text(graph))
        if args.dot:
            _write_dot(graph, pathlib.Path(args.dot), args.render)
        return 0
    except LineageError as e:
        print(f"mlbandits lineage: {e}", file=sys.stderr)
        return 1


def _store_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--config", help="JSON file overriding the defaults (see README)")
    options.add_argument("--root", help="run directory whose metadata.sqlite to read")
    where = options.add_mutually_exclusive_group()
    where.add_argument("--metadata", help="SQLite MLMD store (default: <root>/metadata.sqlite)")
    where.add_argument(
        "--metadata-config",
        help="MLMD ConnectionConfig (e.g. MySQL) or MetadataStoreClientConfig, text proto or .json",
    )
    where.add_argument(
        "--vertex",
        action="store_true",
        help="ask Vertex ML Metadata and Vertex AI Pipelines in vertex.project and "
        'vertex.region (the --config file\'s "vertex" section) instead of a local store',
    )
    options.add_argument("--json", action="store_true", help="print JSON instead of a tree")
    console.add_verbose_flag(options)
    return options


def _graph_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument("--dot", help="also write the graph as Graphviz DOT to this file")
    options.add_argument(
        "--render",
        choices=("svg", "png", "pdf"),
        default="svg",
        help="format rendered next to --dot (default svg)",
    )
    return options


def _command(
    commands: argparse._SubParsersAction, name: str, help_text: str, parents: list
) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=help_text, description=help_text, parents=parents)


def _artifact_id(text: str) -> int:
    if not is_whole_number(text):
        raise argparse.ArgumentTypeError(f"{text!r} is not an artifact id (a whole number)")
    return int(text)


def _open_store(args: argparse.Namespace, config: _Config) -> _Store:
    """Vertex's clients are imported only when asked for: local questions need none."""
    if args.vertex:
        from tfx_pipeline.lineage.vertex_store import VertexLineageStore

        return VertexLineageStore.from_config(config.vertex)
    if args.metadata_config:
        return MlmdLineageStore(
            open_store(connection_config=load_connection_config(args.metadata_config))
        )
    return MlmdLineageStore(open_store(args.metadata or config.local.metadata_path))


def _show(args: argparse.Namespace, config: _Config, store: _Store) -> LineageGraph:
    return show_artifact(store, args.artifact_id, args.uri, args.type_name)


def _trace_model(args: argparse.Namespace, config: _Config, store: _Store) -> LineageGraph:
    pushed = find_pushed_model(store, args.model_version, args.push_dir)
    return trace_upstream(store, pushed.id)


def _downstream(args: argparse.Namespace, config: _Config, store: _Store) -> LineageGraph:
    return trace_downstream(store, args.artifact_id)


def _trace_event(args: argparse.Namespace, config: _Config, store: _Store) -> LineageGraph:
    """Asks the emulator given, or one started on the run's tables, or real BigQuery;
    a run on Vertex logged to real BigQuery in `vertex.bigquery_project`.

    local_runner (and with it TFX) is imported only when an emulator has to start.
    """
    project = config.vertex.bigquery_project_id if args.vertex else config.bigquery.project
    if args.bigquery_endpoint or args.vertex:
        endpoints = clients.BigQueryEndpoints(project, rest_endpoint=args.bigquery_endpoint)
        return _trace_event_at(args, config, store, endpoints)
    from tfx_pipeline.local import runner as local_runner

    with local_runner.bigquery_endpoints(config) as endpoints:
        return _trace_event_at(args, config, store, endpoints)


def _trace_event_at(
    args: argparse.Namespace, config: _Config, store: _Store, endpoints: clients.BigQueryEndpoints
) -> LineageGraph:
    table_id = f"{endpoints.project}.{config.bigquery.dataset}.{config.bigquery.predictions_table}"
    return trace_event(store, clients.make_bigquery_client(endpoints), table_id, args.event_id)


def _write_dot(graph: LineageGraph, dot_path: pathlib.Path, render: str) -> None:
    """Notes go to stderr so that --json output stays parseable."""
    image = dot_path.with_suffix(f".{render}")
    if image == dot_path:
        raise LineageError(
            f"--dot {dot_path}: name the DOT file *.dot; the {render} goes next to it"
        )
    dot_text = to_dot(graph)
    dot_path.write_text(dot_text)
    if render_graphviz(dot_text, image) is None:
        print(
            f"wrote {dot_path}; Graphviz's `dot` is not installed, so nothing was rendered "
            f"(install graphviz, then: dot -T{render} {dot_path} -o {image})",
            file=sys.stderr,
        )
    else:
        print(f"wrote {dot_path} and {image}", file=sys.stderr)


_GRAPH_COMMANDS: Dict[str, Callable[..., LineageGraph]] = {
    "show": _show,
    "trace-model": _trace_model,
    "trace-event": _trace_event,
    "downstream": _downstream,
}
