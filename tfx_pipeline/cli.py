"""`mlbandits`: run the pipelines and the local BigQuery emulator from the shell."""

import sys

from tfx_pipeline import console

console.silence_native_logs(sys.argv)  # before the imports below load TensorFlow

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import pathlib  # noqa: E402
import shlex  # noqa: E402
import subprocess  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
import urllib.parse  # noqa: E402
from typing import List, Optional  # noqa: E402

from bandit_core.agent_names import AGENTS, INTERACTION_LINUCB, LINUCB, PER_ARM_AGENTS  # noqa: E402
from bandit_core.policy_metadata import CLASSIC, PER_ARM  # noqa: E402
from simulation import movielens_data  # noqa: E402
from simulation.movielens_data import NUM_ITEMS  # noqa: E402
from tfx_pipeline import config as config_lib  # noqa: E402
from tfx_pipeline import failures, paths  # noqa: E402
from tfx_pipeline.lineage import cli as lineage_cli  # noqa: E402
from tfx_pipeline.local import ports  # noqa: E402
from tfx_pipeline.local.run_lock import check_store_writable, holding_run_root  # noqa: E402
from tfx_pipeline.vertex import cli as vertex_cli  # noqa: E402
from tfx_pipeline.vertex.config import VertexConfig  # noqa: E402

# The agent a problem gets when `--problem` switches to it: the best per-arm
# agent of the report, and the classic default.
DEFAULT_AGENTS = {CLASSIC: LINUCB, PER_ARM: INTERACTION_LINUCB}
# Commands that write a run root, one at a time per root.
RUN_COMMANDS = ("train", "retrain", "demo")
# Commands that never create a run root (they only read one, or use none).
READ_ONLY_COMMANDS = ("lineage", "tensorboard", "simulate")
TENSORBOARD_PORT = 6006
_LOG = logging.getLogger("mlbandits")


def _int_at_least(minimum: int, requirement: str):
    """An argparse type: a whole number >= `minimum`; `requirement` words the error."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"{text!r} must be {requirement}")
        return value

    return parse


_positive_int = _int_at_least(1, "at least 1")
_non_negative_int = _int_at_least(0, "0 or more")


def _port(text: str) -> int:
    """An argparse type: a TCP port a server can listen on."""
    port = _positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text!r} is not a port: ports go up to 65535")
    return port


def _candidate_count(text: str) -> int:
    """An argparse type: a candidate-set size that MovieLens 100K's catalogue can fill."""
    count = _positive_int(text)
    if count > NUM_ITEMS:
        raise argparse.ArgumentTypeError(
            f"{count} candidates is more than the {NUM_ITEMS} movies of MovieLens 100K"
        )
    return count


def _server_url(text: str) -> str:
    """An argparse type: the base URL of a prediction server."""
    parts = urllib.parse.urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/"):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a server URL: write http://HOST:PORT, e.g. http://127.0.0.1:8080 "
            "(the routes come from the config's serving section)"
        )
    return text.rstrip("/")


def _endpoint(text: str) -> str:
    """An argparse type: a Vertex endpoint resource name, or a bare id the config resolves."""
    from simulation.vertex_endpoint import endpoint_problem

    problem = endpoint_problem(text)
    if problem:
        raise argparse.ArgumentTypeError(problem)
    return text


def _add_simulate_command(commands: argparse._SubParsersAction) -> None:
    help_text = (
        "Send simulated MovieLens users to a Vertex AI endpoint (or a local server), report "
        "each served user's reward back through it, and print the average reward and regret."
    )
    simulate = commands.add_parser("simulate", help=help_text, description=help_text)
    target = simulate.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "--endpoint",
        type=_endpoint,
        help="projects/P/locations/R/endpoints/E, or E alone with vertex.project and "
        "vertex.region from --config; vertex.api_endpoint overrides R-aiplatform.googleapis.com",
    )
    target.add_argument(
        "--url",
        type=_server_url,
        help="a local prediction server instead, e.g. http://127.0.0.1:8080",
    )
    simulate.add_argument(
        "--requests", type=_positive_int, help="users to serve (default: loop.requests_per_round)"
    )
    simulate.add_argument("--config", help="JSON file overriding the defaults (see README)")
    simulate.add_argument("--movielens-dir", help="directory holding MovieLens 100K's u.data")
    simulate.add_argument(
        "--problem",
        choices=(CLASSIC, PER_ARM),
        help="the served policy's problem (default: the config's movielens.problem)",
    )
    simulate.set_defaults(root=None)
    console.add_verbose_flag(simulate)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlbandits",
        description="TFX pipelines for a TF-Agents MovieLens contextual bandit.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def pipeline_command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text, description=help_text)
        sub.add_argument("--config", help="JSON file overriding the defaults (see README)")
        sub.add_argument("--root", help="directory for pipeline outputs, MLMD and pushed policies")
        sub.add_argument("--movielens-dir", help="directory holding MovieLens 100K's u.data")
        sub.add_argument(
            "--problem",
            choices=(CLASSIC, PER_ARM),
            help="classic: the same 20 movies for everyone; per_arm: candidate sets drawn from "
            "all 1,682 movies (default: the config's movielens.problem; the demo's is per_arm)",
        )
        console.add_verbose_flag(sub)
        return sub

    train = pipeline_command(
        "train", "Run the training DAG (Generator to Pusher) locally and print a summary."
    )
    train.add_argument("--num-events", type=_positive_int, help="logged events to simulate")
    train.add_argument("--seed", type=_non_negative_int, help="seed of the simulated batch")
    pipeline_command(
        "retrain", "Run the retraining DAG (no Generator) over the logged data locally."
    )
    demo = pipeline_command(
        "demo",
        "The whole loop locally: initial training DAG, prediction server, then rounds of "
        "simulate -> trigger -> retrain -> hot reload; prints a per-round table and writes a plot.",
    )
    demo.add_argument("--rounds", type=_positive_int, help="retraining rounds after round 0")
    demo.add_argument(
        "--requests-per-round", type=_positive_int, help="simulated requests in each round"
    )

    report = commands.add_parser(
        "report",
        help="Train every agent on simulated logs and write a Markdown table and PNG plots.",
        description="Train every agent on simulated logs and write a Markdown table and PNG plots.",
    )
    report.add_argument("--out", default="runs/report", help="directory for the report files")
    report.add_argument("--movielens-dir", help="directory holding MovieLens 100K's u.data")
    report.add_argument(
        "--num-events", type=_positive_int, default=100_000, help="logged events per setting"
    )
    report.add_argument(
        "--problem",
        choices=("classic", "per_arm"),
        default="classic",
        help="classic: the same 20 or 100 movies for everyone; per_arm: candidate sets drawn "
        "from all 1,682 movies",
    )
    report.add_argument(
        "--num-candidates",
        type=_candidate_count,
        default=50,
        help="per_arm only: candidates per round, up to 1682",
    )
    console.add_verbose_flag(report)
    vertex_cli.add_vertex_commands(commands)
    lineage_cli.add_lineage_commands(commands)
    _add_simulate_command(commands)

    emulator = commands.add_parser(
        "emulator",
        help="Run the local BigQuery emulator in the foreground until Ctrl-C.",
        description="Run the local BigQuery emulator in the foreground until Ctrl-C.",
    )
    emulator.add_argument("--data-dir", help="persist tables in this directory")
    emulator.add_argument("--project", default="local-proj", help="BigQuery project id")
    emulator.add_argument("--rest-port", type=_port, help="REST port (default: a free one)")
    emulator.add_argument("--grpc-port", type=_port, help="gRPC port (default: a free one)")
    console.add_verbose_flag(emulator)

    tensorboard = commands.add_parser(
        "tensorboard",
        help="Open TensorBoard on the run root's training, evaluation and feedback-loop logs.",
        description="Open TensorBoard on the run root's training, evaluation and feedback-loop "
        "logs, found through its ML Metadata store; runs until Ctrl-C.",
    )
    tensorboard.add_argument("--root", help="the run root (default: runs/ in the repository)")
    tensorboard.add_argument(
        "--port", type=_port, default=TENSORBOARD_PORT, help="TensorBoard's port"
    )
    tensorboard.add_argument(
        "--print-only",
        action="store_true",
        help="print the TensorBoard command (and its --logdir_spec) instead of running it",
    )
    console.add_verbose_flag(tensorboard)
    return parser


def load_cli_config(args: argparse.Namespace) -> config_lib.PipelineConfig:
    """The config file (or defaults) with the command-line overrides applied.

    The demo runs the per-arm problem unless a config file or `--problem`
    says otherwise. Choosing a problem whose agents do not include the
    configured one also chooses that problem's default agent.
    """
    config = config_lib.load_config(args.config)
    overrides: dict = {}
    if args.root:
        overrides["local"] = {"root": args.root}
    movielens: dict = {}
    if args.movielens_dir:
        movielens["data_dir"] = args.movielens_dir
    problem = getattr(args, "problem", None)
    if problem is None and args.command == "demo" and not args.config:
        problem = PER_ARM
    if problem is not None:
        movielens["problem"] = problem
        agents = PER_ARM_AGENTS if problem == PER_ARM else AGENTS
        if config.trainer.agent not in agents:
            overrides["trainer"] = {"agent": DEFAULT_AGENTS[problem]}
    if movielens:
        overrides["movielens"] = movielens
    generator = {
        key: value
        for key, value in (
            ("num_events", getattr(args, "num_events", None)),
            ("seed", getattr(args, "seed", None)),
        )
        if value is not None
    }
    if generator:
        overrides["generator"] = generator
    loop = {
        key: value
        for key, value in (
            ("rounds", getattr(args, "rounds", None)),
            ("requests_per_round", getattr(args, "requests_per_round", None)),
        )
        if value is not None
    }
    if loop:
        overrides["loop"] = loop
    config = config.replace(**overrides).validate() if overrides else config
    return paths.absolute_config_paths(config)


def run_pipeline_command(config: config_lib.PipelineConfig, retraining: bool) -> int:
    """Runs one DAG and prints what it produced."""
    from simulation import movielens_per_arm
    from simulation.bandit_loader import load_movielens_bandit
    from tfx_pipeline import pipeline
    from tfx_pipeline.local import runner as local_runner
    from tfx_pipeline.local.component_progress import ComponentProgress
    from tfx_pipeline.reports import policy_report, run_summary

    name = pipeline.pipeline_name(config, retraining)
    previous_run = _latest_run_id(config, name)
    started = time.perf_counter()
    failure: Optional[BaseException] = None
    print(f"{name}: running the DAG in {config.local.root_dir}", flush=True)
    with console.StatusLine() as status:
        _find_movielens(config.movielens.data_dir, status)
    try:
        with console.StatusLine() as status:
            status.show("starting the BigQuery emulator")
            with local_runner.bigquery_endpoints(config) as endpoints, ComponentProgress(
                status, config.local.metadata_path
            ):
                local_runner.run_pipeline(config, endpoints, retraining=retraining)
    except Exception as e:  # the summary below still reports how far it got
        failure = e
    elapsed = time.perf_counter() - started
    if failure is not None and not _recorded_a_new_run(config, name, previous_run):
        print(
            f"\nThe run stopped before ML Metadata recorded it ({elapsed:.1f} s).",
            file=sys.stderr,
        )
        raise failure
    summary = run_summary.summarize_latest_run(
        run_summary.open_store(str(config.local.metadata_path)), name
    )
    print(f"\nRun {summary.run_id} ({elapsed:.1f} s)")
    if summary.rows_generated is not None:
        print(f"  rows generated      : {summary.rows_generated}")
    if summary.quarantine is not None:
        print(f"  rows quarantined    : {summary.quarantine.describe()}")
    for split, rows in summary.rows_per_split.items():
        print(f"  rows ingested {split:<6}: {rows}")
    print(f"  anomalies           : {summary.anomalies_status}")
    for line in summary.anomalies:
        print(f"    {line}")
    if summary.training_seconds is not None:
        print(f"  training time       : {summary.training_seconds:.2f} s")
    if failure is not None:
        stopped = ", ".join(summary.failed_components) or "a step ML Metadata did not record"
        print(f"\nThe run stopped in {stopped}.", file=sys.stderr)
        raise failure
    if summary.pushed_destination:
        movielens = config.movielens
        if movielens.per_arm:
            values = policy_report.evaluate_saved_per_arm_policy(
                movielens_per_arm.load_per_arm_bandit(movielens.data_dir, movielens.rank_k),
                summary.pushed_destination,
                movielens.num_candidates,
            )
            over = f"{movielens.num_candidates} candidates from 1,682, 20,000 fresh rounds"
        else:
            bandit = load_movielens_bandit(
                movielens.data_dir, movielens.rank_k, movielens.num_actions
            )
            values = policy_report.evaluate_saved_policy(bandit, summary.pushed_destination)
            over = "exact, all users"
        print(f"  pushed policy       : {summary.pushed_destination}")
        print(f"  average reward on the simulator ({over}):")
        print(f"    trained policy    : {values.policy:.4f} ({values.fraction_of_oracle:.1%} of oracle)")
        print(f"    uniform random    : {values.uniform_random:.4f}")
        print(f"    oracle            : {values.oracle:.4f}")
    return 0


def run_demo_command(config: config_lib.PipelineConfig) -> int:
    """Runs the feedback loop, printing each round as it finishes."""
    from tfx_pipeline.demo_loop import feedback_loop
    from tfx_pipeline.local.component_progress import ComponentProgress
    from tfx_pipeline.reports import loop_report

    print(f"demo: the feedback loop in {config.local.root_dir}", flush=True)
    first: list = []
    with console.StatusLine() as status, ComponentProgress(
        status, config.local.metadata_path
    ) as components:
        _find_movielens(config.movielens.data_dir, status)

        def show(result: "feedback_loop.RoundResult") -> None:
            if not first:
                status.print(loop_report.format_round_header())
                components.permanent = False
            first.append(result)
            status.clear()
            status.print(loop_report.format_round(result, first[0]))
            components.label = f"round {result.round + 1}, retraining: "

        result = feedback_loop.run_demo(config, show, on_progress=status.show)
    plot = loop_report.plot_regret(result, config.local.root_dir / "regret_per_round.png")
    loop_report.write_loop_result(result, config.local.root_dir / loop_report.LOOP_RESULT_FILE)
    final = result.rounds[-1].average_regret
    print(f"\nuniform-random regret {result.uniform_random_regret:.4f}; final round {final:.4f} "
          f"({final / result.uniform_random_regret:.1%} of it); oracle reward {result.oracle_reward:.4f}")
    print(f"regret plot: {plot}")
    return 0


def run_report_command(args: argparse.Namespace) -> int:
    with console.StatusLine() as status:
        _find_movielens(args.movielens_dir or "", status)
    if args.problem == "per_arm":
        from tfx_pipeline.reports.per_arm_report import write_per_arm_report

        path = write_per_arm_report(
            args.out,
            args.movielens_dir or "",
            num_candidates=args.num_candidates,
            num_events=args.num_events,
            on_result=lambda r: print(
                f"{r.agent:<40} {r.fraction_of_oracle:7.1%} of oracle, "
                f"DR {r.estimates['dr'].value:.3f} vs true {r.true_value:.3f}",
                flush=True,
            ),
        )
        print(f"{'table':<12}: {path}")
        return 0
    from tfx_pipeline.reports.agent_report import write_agent_report

    files = write_agent_report(args.out, args.movielens_dir or "", num_events=args.num_events)
    for kind, path in files.items():
        print(f"{kind:<12}: {path}")
    return 0


def run_simulate_command(args: argparse.Namespace, config: config_lib.PipelineConfig) -> int:
    """One round of simulated traffic; exits 1 if any request failed."""
    from simulation.simulator import LocalServer, ServiceError, simulate
    from simulation.vertex_endpoint import VertexEndpoint, region_of
    from tfx_pipeline.demo_loop.feedback_loop import simulated_users_of

    if args.url:
        service = LocalServer(args.url, config.serving.predict_route, config.serving.reward_route)
        where = args.url
    else:
        endpoint = _endpoint_name(args.endpoint, config.vertex)
        service = VertexEndpoint(
            endpoint,
            config.vertex.api_endpoint or f"{region_of(endpoint)}-aiplatform.googleapis.com",
        )
        where = f"{endpoint} at {service.api_endpoint}"
    with console.StatusLine() as status:
        _find_movielens(config.movielens.data_dir, status)
        status.show("loading the simulated users")
        users = simulated_users_of(config)
    traffic = config.loop
    if args.requests:
        traffic = dataclasses.replace(traffic, requests_per_round=args.requests)
    print(f"simulate: {traffic.requests_per_round} users to {where}", flush=True)
    try:
        report = simulate(service, users, traffic)
    except ServiceError as error:
        print(f"mlbandits: {error}", file=sys.stderr)
        return 1
    versions = ", ".join(f"{v} ({n})" for v, n in report.model_versions.most_common())
    print(f"  requests            : {traffic.requests_per_round}")
    print(f"  rewarded            : {report.events}")
    print(f"  average reward      : {report.average_reward:.4f}")
    print(f"  average regret      : {report.average_regret:.4f}")
    print(f"  model versions      : {versions or 'none'}")
    print(f"  errors              : {len(report.errors)}")
    for error in sorted(set(report.errors))[:3]:
        print(f"    {error}")
    print(f"  time                : {report.seconds:.1f} s")
    return 1 if report.errors else 0


def _endpoint_name(endpoint: str, vertex: VertexConfig) -> str:
    """The full resource name of `--endpoint`, a bare id resolved in vertex.project/region."""
    if "/" in endpoint:
        return endpoint
    for field in ("project", "region"):
        if not getattr(vertex, field):
            raise config_lib.ConfigError(
                f"--endpoint {endpoint} is a bare endpoint id, which needs vertex.{field} in the "
                "--config file; set it, or pass the full name "
                f"projects/PROJECT/locations/REGION/endpoints/{endpoint}"
            )
    return f"projects/{vertex.project}/locations/{vertex.region}/endpoints/{endpoint}"


def run_tensorboard_command(args: argparse.Namespace) -> int:
    """TensorBoard on every summary directory ML Metadata knows, plus the loop's."""
    from tfx_pipeline.demo_loop.loop_summaries import loop_logs_dir
    from tfx_pipeline.lineage.store import LineageError
    from tfx_pipeline.reports import tensorboard_logs

    local = config_lib.LocalRunConfig(root=args.root or "")
    if not local.metadata_path.is_file():
        raise LineageError(
            f"no run at {local.root_dir} (no {local.metadata_path.name}): run `mlbandits train "
            f"--root {local.root_dir}` or `bash scripts/demo.sh` first, or pass the --root of "
            "an existing run"
        )
    spec = tensorboard_logs.tensorboard_logdir_spec(local.metadata_path)
    loop = loop_logs_dir(local.root_dir)
    if loop.is_dir():
        spec += "," + tensorboard_logs.logdir_spec(
            [tensorboard_logs.SummaryDirectory("loop", str(loop))]
        )
    host = "127.0.0.1"
    command = [
        str(pathlib.Path(sys.executable).with_name("tensorboard")),
        "--logdir_spec", spec,
        "--host", host,
        "--port", str(args.port),
    ]
    if args.print_only:
        print(shlex.join(command))
        return 0
    if ports.port_in_use(host, args.port):
        raise ports.PortInUse(
            ports.port_in_use_message(host, args.port, "TensorBoard", "pass another --port")
        )
    print(f"TensorBoard: http://{host}:{args.port} (Ctrl-C to stop)", flush=True)
    with subprocess.Popen(command, stdin=subprocess.DEVNULL) as tensorboard:
        try:
            return tensorboard.wait()
        except KeyboardInterrupt:
            tensorboard.terminate()
            tensorboard.wait()
            return 0


def _find_movielens(data_dir: str, status: console.StatusLine) -> None:
    """Fails in a second, before the emulator starts, when the data is missing.

    Otherwise the Generator would find out minutes later, inside the DAG.
    """
    status.show("looking for MovieLens 100K (downloaded on first use)")
    movielens_data.find_movielens(data_dir)
    status.clear()


def _recorded_a_new_run(
    config: config_lib.PipelineConfig, pipeline_name: str, previous_run: Optional[str]
) -> bool:
    """Whether ML Metadata holds a run newer than `previous_run`; False if it cannot be read."""
    try:
        return _latest_run_id(config, pipeline_name) not in (None, previous_run)
    except Exception:  # noqa: BLE001 - e.g. a full disk; the run's own failure says more
        _LOG.warning("cannot read %s", config.local.metadata_path, exc_info=True)
        return False


def _latest_run_id(config: config_lib.PipelineConfig, pipeline_name: str) -> Optional[str]:
    """The id of the pipeline's latest run in the local store, None before its first."""
    from tfx_pipeline.reports import run_summary

    try:
        store = run_summary.open_store(str(config.local.metadata_path))
        return run_summary.latest_run_artifacts(store, pipeline_name)[0]
    except run_summary.MetadataNotFoundError:
        return None


def run_emulator_command(args: argparse.Namespace) -> int:
    from pathlib import Path

    from tfx_pipeline.local.emulator import BigQueryEmulator

    emulator = BigQueryEmulator(
        project=args.project,
        data_dir=Path(args.data_dir) if args.data_dir else None,
        rest_port=args.rest_port,
        grpc_port=args.grpc_port,
    )
    with emulator:
        print(f"BigQuery emulator: REST {emulator.rest_endpoint}, gRPC {emulator.grpc_endpoint}")
        print("Press Ctrl-C to stop.")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            pass
    return 0


def _run_root(
    args: argparse.Namespace, config: Optional[config_lib.PipelineConfig]
) -> Optional[pathlib.Path]:
    """The run root the command works on; None for commands without one."""
    if config is not None:
        return config.local.root_dir
    if args.command == "tensorboard":
        return config_lib.LocalRunConfig(root=args.root or "").root_dir
    return None


def _log_path(args: argparse.Namespace, root: Optional[pathlib.Path]) -> Optional[pathlib.Path]:
    """Where the command's library output goes: its run root, report or data directory.

    None for a question about a root that does not exist: a read-only command
    creates nothing, and its only output is the error saying so.
    """
    if args.command == "report":
        return pathlib.Path(args.out) / console.LOG_FILE_NAME
    if args.command == "emulator" and args.data_dir:
        return pathlib.Path(args.data_dir) / console.LOG_FILE_NAME
    root = root or config_lib.LocalRunConfig().root_dir
    if args.command in READ_ONLY_COMMANDS and not root.is_dir():
        return None
    return root / console.LOG_FILE_NAME


def main(argv: Optional[List[str]] = None) -> int:
    """Runs one command; returns 0, 1 (it failed), 2 (bad settings) or 130 (interrupted).

    A failure prints what happened and what to do; its traceback goes to the
    log file, or with --verbose to the terminal.
    """
    argv = sys.argv[1:] if argv is None else argv
    args = paths.absolute_path_options(build_parser().parse_args(argv))
    command_line = shlex.join(["mlbandits", *argv])
    try:
        config = (
            None
            if args.command in ("emulator", "vertex", "report", "tensorboard")
            else load_cli_config(args)
        )
    except config_lib.ConfigError as e:
        print(f"mlbandits: {e}", file=sys.stderr)
        return 2
    root = _run_root(args, config)
    log_path = _log_path(args, root)
    try:
        with console.library_output_to(log_path, args.verbose):
            return _run_reporting_failures(args, config, root, log_path, command_line)
    except KeyboardInterrupt:
        print(f"\nmlbandits: {_interrupted_message(args.command, root, command_line)}",
              file=sys.stderr)
        return failures.INTERRUPTED_EXIT_CODE


def _run_reporting_failures(
    args: argparse.Namespace,
    config: Optional[config_lib.PipelineConfig],
    root: Optional[pathlib.Path],
    log_path: Optional[pathlib.Path],
    command_line: str,
) -> int:
    """Runs the command; a failure becomes its explanation on the terminal and exit code 1."""
    try:
        lock = (
            holding_run_root(root, command_line)
            if args.command in RUN_COMMANDS and root is not None
            else contextlib.nullcontext()
        )
        with lock:
            if args.command in RUN_COMMANDS:
                check_store_writable(config.local.metadata_path, command_line)
            return _run_command(args, config)
    except config_lib.ConfigError as e:
        print(f"mlbandits: {e}", file=sys.stderr)
        return 2
    except Exception as error:  # noqa: BLE001 - every failure is reported, none is lost
        if failures.interrupted(error):
            raise KeyboardInterrupt from error
        if args.verbose:
            traceback.print_exc()
        elif log_path is not None:
            _LOG.error("`%s` failed", command_line, exc_info=True)
        explanation = failures.explain(error, root, command_line)
        print(f"mlbandits: {explanation or failures.unexpected(error, log_path)}", file=sys.stderr)
        return 1


def _interrupted_message(command: str, root: Optional[pathlib.Path], command_line: str) -> str:
    """One line: what Ctrl-C stopped, what the run root keeps, how to go on or start clean."""
    if command == "demo":
        stopped = "the prediction server and the BigQuery emulator are stopped"
        kept = "finished DAG runs, BigQuery tables and serving logs not yet shipped"
    elif command in ("train", "retrain"):
        stopped = "the BigQuery emulator is stopped"
        kept = "finished DAG runs and BigQuery tables"
    else:
        return "interrupted; nothing is left running."
    return (
        f"interrupted; {stopped}. {root} keeps the {kept}: rerun `{command_line}` to go on, "
        f"or `rm -rf {root}` first to start clean."
    )


def _run_command(
    args: argparse.Namespace, config: Optional[config_lib.PipelineConfig]
) -> int:
    if args.command == "emulator":
        return run_emulator_command(args)
    if args.command == "vertex":
        return vertex_cli.run_vertex_command(args)
    if args.command == "report":
        return run_report_command(args)
    if args.command == "lineage":
        return lineage_cli.run_lineage_command(args, config)
    if args.command == "tensorboard":
        return run_tensorboard_command(args)
    if args.command == "simulate":
        return run_simulate_command(args, config)
    if args.command == "demo":
        return run_demo_command(config)
    return run_pipeline_command(config, retraining=args.command == "retrain")


def console_main() -> None:
    """The `mlbandits` script: `main`, and after Ctrl-C an exit that waits for no thread.

    By the time `main` returns the interrupted code, the server and the emulator
    are stopped and the message is printed. A library thread the interrupt
    caught mid-call (e.g. a BigQuery request to the emulator just stopped,
    retrying until its deadline) would still hold the interpreter's exit,
    which joins every non-daemon thread, so the process leaves at once.
    """
    code = main()
    if code == failures.INTERRUPTED_EXIT_CODE:
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()
