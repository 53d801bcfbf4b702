"""`mlbandits vertex compile|submit|schedule|rollback`: run the DAGs on Vertex AI, roll back.

Every command checks the whole configuration before it compiles or sends
anything, and `--dry-run` prints what would be written or sent instead.
"""

import argparse
import dataclasses
import json
import pathlib
import sys
import tempfile
from typing import Any, Optional, Tuple

from tfx_pipeline import config as config_lib
from tfx_pipeline import console
from tfx_pipeline.vertex.config import VertexConfig


def add_vertex_commands(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """Adds `vertex` with its compile, submit and schedule subcommands."""
    vertex = subparsers.add_parser(
        "vertex",
        help="Compile, submit or schedule the DAGs on Vertex AI Pipelines.",
        description="Compile, submit or schedule the DAGs on Vertex AI Pipelines. "
        'Settings come from the config file\'s "vertex" section (README, "Run on Google Cloud").',
    )
    commands = vertex.add_subparsers(dest="vertex_command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, dag_choice: bool) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help='JSON file with the settings, "vertex" section included')
        sub.add_argument(
            "--output-dir", help="where compiled pipeline JSON goes (default build/vertex)"
        )
        sub.add_argument(
            "--dry-run",
            action="store_true",
            help="print what would be written or sent, send nothing",
        )
        if dag_choice:
            sub.add_argument(
                "--retraining", action="store_true", help="the retraining DAG (no Generator)"
            )
        if name != "compile":
            sub.add_argument(
                "--pipeline-json", help="an already compiled pipeline JSON instead of compiling"
            )
        console.add_verbose_flag(sub)
        return sub

    command("compile", "Compile a DAG to Vertex pipeline job JSON.", dag_choice=True)
    command("submit", "Start one run of a DAG on Vertex AI Pipelines.", dag_choice=True)
    schedule = command(
        "schedule", "Run the retraining DAG on a cron (a Vertex Pipelines schedule).", False
    )
    schedule.add_argument("--cron", help="overrides vertex.retrain_cron, e.g. '0 */6 * * *'")
    rollback_help = "Return the endpoint's traffic to the previous model; undeploy the current one."
    rollback = commands.add_parser("rollback", help=rollback_help, description=rollback_help)
    rollback.add_argument("--config", help='JSON file with the settings, "vertex" section included')
    rollback.add_argument(
        "--dry-run", action="store_true", help="read the endpoint, print the plan, change nothing"
    )
    console.add_verbose_flag(rollback)
    return vertex


def load_configs(path: Optional[str]) -> Tuple[config_lib.PipelineConfig, VertexConfig]:
    """The pipeline settings and their `vertex` section, from one JSON file."""
    config = config_lib.load_config(path)
    return config, config.vertex


def run_vertex_command(args: argparse.Namespace) -> int:
    """Runs one `vertex` subcommand; prints JSON, returns the exit status."""
    from google.api_core import exceptions as api_exceptions
    from google.auth import exceptions as auth_exceptions

    from custom_components.vertex_pusher.endpoint_rollout import RolloutError
    from tfx_pipeline import deploy
    from tfx_pipeline.vertex import jobs as vertex_jobs

    try:
        config, vertex = load_configs(args.config)
        if getattr(args, "cron", None) is not None:
            vertex = dataclasses.replace(vertex, retrain_cron=args.cron)
        vertex.require_ready()
        if args.vertex_command == "rollback":
            _print(deploy.rollback(vertex, dry_run=args.dry_run))
            return 0
        retraining = args.vertex_command == "schedule" or args.retraining
        if args.vertex_command == "compile":
            _print(_compile(config, vertex, retraining, args))
            return 0
        path = _compiled(config, vertex, retraining, args)
        action = vertex_jobs.submit if args.vertex_command == "submit" else vertex_jobs.schedule
        _print(action(path, vertex, dry_run=args.dry_run))
        return 0
    except config_lib.ConfigError as e:
        print(f"mlbandits: {e}", file=sys.stderr)
        return 2
    except (
        vertex_jobs.VertexJobError,
        RolloutError,
        api_exceptions.GoogleAPIError,
        auth_exceptions.GoogleAuthError,
    ) as e:
        print(f"mlbandits: Vertex AI: {e}", file=sys.stderr)
        return 1


def _compile(
    config: config_lib.PipelineConfig, vertex: VertexConfig, retraining: bool, args: Any
) -> Any:
    """The compiled JSON itself on a dry run, else where it was written."""
    from tfx_pipeline.vertex import runner as vertex_runner

    if not args.dry_run:
        path = vertex_runner.compile_pipeline(config, vertex, retraining, _output_dir(args))
        return {"pipeline_json": str(path)}
    with tempfile.TemporaryDirectory() as scratch:
        path = vertex_runner.compile_pipeline(config, vertex, retraining, pathlib.Path(scratch))
        return json.loads(path.read_text())


def _compiled(
    config: config_lib.PipelineConfig, vertex: VertexConfig, retraining: bool, args: Any
) -> pathlib.Path:
    """The pipeline JSON to send: the one given, checked, or a fresh compile."""
    from tfx_pipeline import pipeline
    from tfx_pipeline.vertex import jobs as vertex_jobs
    from tfx_pipeline.vertex import runner as vertex_runner

    if not args.pipeline_json:
        return vertex_runner.compile_pipeline(config, vertex, retraining, _output_dir(args))
    path = pathlib.Path(args.pipeline_json)
    vertex_jobs.check_compiled_job(path, vertex, pipeline.pipeline_name(config, retraining))
    return path


def _output_dir(args: Any) -> Optional[pathlib.Path]:
    return pathlib.Path(args.output_dir) if args.output_dir else None


def _print(payload: Any) -> None:
    print(json.dumps(payload, indent=2, sort_keys=True))
