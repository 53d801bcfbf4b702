"""Soak and fuzz of the serving -> logging -> retraining loop (issue 14's targets), run by hand.

Soak (default): the real server (`python -m serving`) logs into a persistent BigQuery
emulator while simulated MovieLens users send `--rate` predictions per second for
`--minutes`, rewarding `--reward-share` of the answered ones. On a fixed timeline it
stops the emulator for `--outage-s` (at 1/4 of the run), SIGKILLs the server and starts
it again on the same port (at 1/2) and pushes a new policy version for a hot reload
(at 2/3); every `--retrain-every-min` it runs the retraining DAG in a child process
(its CPU is its own there), never across the outage, since a DAG reading a stopped
BigQuery fails by design. After the load it waits for the spool to drain and checks
BigQuery against what the server confirmed.

Fuzz (`--fuzz N`): N random malformed or out-of-contract requests (`soak_fuzz.py`) at a
running server; counts answers that are not 2xx/4xx (no answer at all counts too),
then runs the retraining DAG over what was logged and reports its anomalies.
Both modes first run the training DAG on `loop.initial_events` so a trained policy serves.
The bookkeeping and the results table are in `soak_results.py`.

Server, load generator, emulator and retrains share this machine's cores (2 on the
shared CI machine), so every figure is printed with the 1-minute load average.

    .venv/bin/python benchmarks/soak.py [--minutes 30] [--rate 300] [--outage-s 60]
    .venv/bin/python benchmarks/soak.py --fuzz 10000
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import dataclasses
import multiprocessing
import os
import resource
import shutil
import signal
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Callable, Counter, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import aiohttp
from absl import logging as absl_logging
import numpy as np
import psutil

from bandit_core.bigquery import clients
from bandit_core.bigquery.clients import BigQueryEndpoints
from custom_components.bigquery_ingester.queries import build_serving_logs_query
from custom_components.bigquery_ingester.table_reader import read_query_rows
from serving.__main__ import settings_from_env
from simulation.simulated_users import SimulatedUsers
from soak_fuzz import fuzz_figures, fuzz_plan, send_fuzz
from soak_results import (
    Figure,
    Landed,
    Ledger,
    RetrainOutcome,
    Sample,
    delivery_figures,
    format_table,
    load_figures,
    load_now,
    resource_figures,
    retrain_figures,
    write_samples,
)
from tfx_pipeline import pipeline
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop.feedback_loop import simulated_users_of
from tfx_pipeline.demo_loop.serving_process import ServingProcess, serving_environment
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.local.emulator import BigQueryEmulator
from tfx_pipeline.reports import run_summary

OUTAGE_AT, KILL_AT, RELOAD_AT = 1 / 4, 1 / 2, 2 / 3  # shares of the soak's duration
SAMPLE_EVERY_S = 5.0
REQUEST_TIMEOUT_S = 10.0
RELOAD_TIMEOUT_S = 120.0


@dataclasses.dataclass(frozen=True)
class SoakOptions:
    """The command line; defaults are issue 14's targets."""

    minutes: float = 30.0
    rate: float = 300.0
    reward_share: float = 0.5
    outage_s: float = 60.0
    retrain_every_min: float = 10.0
    max_in_flight: int = 64
    drain_timeout_s: float = 600.0
    retrain_timeout_min: float = 20.0
    fuzz: int = 0
    root: str = ""
    seed: int = 0

    @property
    def duration_s(self) -> float:
        return self.minutes * 60.0

    def validate(self) -> "SoakOptions":
        """Raises ValueError naming the flag and what it needs."""
        checks = [
            (self.minutes > 0, "--minutes must be > 0"),
            (self.rate > 0, "--rate must be > 0 requests per second"),
            (0 <= self.reward_share <= 1, "--reward-share must be in [0, 1]"),
            (self.outage_s >= 0, "--outage-s must be >= 0 (0 skips the outage)"),
            (self.retrain_every_min > 0, "--retrain-every-min must be > 0"),
            (self.max_in_flight >= 1, "--max-in-flight must be >= 1"),
            (self.drain_timeout_s > 0, "--drain-timeout-s must be > 0"),
            (self.retrain_timeout_min > 0, "--retrain-timeout-min must be > 0"),
            (self.fuzz >= 0, "--fuzz must be >= 0 requests (0: soak instead)"),
            (
                self.outage_s < self.duration_s * (KILL_AT - OUTAGE_AT),
                f"--outage-s {self.outage_s:g} must end before the server is killed at "
                f"{KILL_AT:.0%} of the run: lower it or raise --minutes",
            ),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)
        return self


def parse_options(argv: Optional[Sequence[str]] = None) -> SoakOptions:
    defaults = SoakOptions()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for field in dataclasses.fields(SoakOptions):
        flag = "--" + field.name.replace("_", "-")
        parser.add_argument(flag, type=type(getattr(defaults, field.name)), default=None)
    args = vars(parser.parse_args(argv))
    chosen = {name: value for name, value in args.items() if value is not None}
    if "fuzz" in chosen and chosen["fuzz"] == 0:
        raise SystemExit("--fuzz needs a number of requests >= 1, e.g. --fuzz 10000")
    try:
        return dataclasses.replace(defaults, **chosen).validate()
    except ValueError as error:
        raise SystemExit(f"soak.py: {error}") from None


# ----------------------------------------------------------------------------- the stack


@dataclasses.dataclass
class Stack:
    """The emulator, the current server process and the config they were started with."""

    config: PipelineConfig
    emulator: BigQueryEmulator
    servers: contextlib.ExitStack
    server: ServingProcess

    @property
    def endpoints(self) -> BigQueryEndpoints:
        return self.emulator.endpoints

    def table_id(self, table: str) -> str:
        return f"{self.emulator.project}.{self.config.bigquery.dataset}.{table}"


@contextlib.contextmanager
def running_stack(options: SoakOptions) -> Iterator[Stack]:
    """Emulator, the initial training DAG (so a trained policy serves), then the server."""
    root = Path(options.root or tempfile.mkdtemp(prefix="mlbandits-soak-"))
    config = PipelineConfig().replace(local={"root": str(root)}).validate()
    print(f"work dir {root}; {os.cpu_count()} CPUs; load average {load_now()}", flush=True)
    with BigQueryEmulator(project=config.bigquery.project, data_dir=root / "bigquery") as emulator:
        initial = config.replace(generator={"num_events": config.loop.initial_events})
        _timed(f"initial training DAG ({config.loop.initial_events:,} events)",
               lambda: local_runner.run_pipeline(initial, emulator.endpoints))
        with contextlib.ExitStack() as servers:
            server = servers.enter_context(ServingProcess(config, emulator.endpoints))
            port = int(server.url.rsplit(":", 1)[1])
            config = config.replace(serving={"port": port})  # a restarted server keeps the URL
            yield Stack(config, emulator, servers, server)


def restart_server(stack: Stack) -> float:
    """SIGKILL the server as a crash would, start a new one; seconds until it answers."""
    stack.server.kill()
    started = time.monotonic()
    stack.server = stack.servers.enter_context(ServingProcess(stack.config, stack.endpoints))
    return time.monotonic() - started


def push_copy_of_current_version(stack: Stack) -> str:
    """A hot reload: the newest version copied to the next number, renamed in at once."""
    base = stack.config.local.serving_model_dir
    newest = max((p for p in base.iterdir() if p.name.isdigit()), key=lambda p: int(p.name))
    version = str(int(newest.name) + 1)
    staging = stack.config.local.root_dir / f"staging-{version}"  # outside: not a version yet
    shutil.copytree(newest, staging)
    staging.rename(base / version)
    return version


def server_pid() -> Optional[int]:
    """The `python -m serving` child of this process, if one runs."""
    for child in psutil.Process().children():
        with contextlib.suppress(psutil.Error):
            if child.cmdline()[-2:] == ["-m", "serving"] and child.is_running():
                return child.pid
    return None


def sample(stack: Stack, started: float) -> Sample:
    pid = server_pid()
    rss = None
    if pid is not None:
        with contextlib.suppress(psutil.Error):
            rss = psutil.Process(pid).memory_info().rss / 2**20
    spool = stack.config.local.spool_path
    return Sample(
        emulator_rss_mb=_tree_rss_mb(stack.emulator.pid),
        at_s=time.monotonic() - started,
        load_avg=os.getloadavg()[0],
        server_pid=pid,
        server_rss_mb=rss,
        spool_mb=_size_mb(spool),
        wal_mb=_size_mb(spool.with_name(spool.name + "-wal")),
    )


def _tree_rss_mb(pid: Optional[int]) -> Optional[float]:
    """A process and its children (the emulator runs under a launcher)."""
    if pid is None:
        return None
    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.Error:
        return None


def _size_mb(path: Path) -> float:
    try:
        return path.stat().st_size / 2**20
    except FileNotFoundError:
        return 0.0


def spool_max_mb(stack: Stack) -> float:
    """The spool cap the server was started with (its own default unless the env sets one)."""
    port = stack.config.serving.port
    env = {**os.environ, **serving_environment(stack.config, stack.endpoints, port)}
    return settings_from_env(env).spool_max_mb


def _timed(what: str, action: Callable[[], Any]) -> Any:
    started = time.monotonic()
    result = action()
    print(f"  {what}: {time.monotonic() - started:.1f} s", flush=True)
    return result


# ----------------------------------------------------------------------------- retraining


def retrain_in_child(config: PipelineConfig, endpoints: BigQueryEndpoints) -> Dict[str, Any]:
    """Runs in a spawned process: the retraining DAG, then what ML Metadata says of it.

    Returns plain values (the parent cannot unpickle classes of a spawned `__main__`).
    """
    absl_logging.set_verbosity(absl_logging.WARNING)  # the soak's own lines stay readable
    name = pipeline.pipeline_name(config, retraining=True)
    previous = _latest_run_id(config, name)
    error = ""
    try:
        local_runner.run_pipeline(config, endpoints, retraining=True)
    except Exception as e:  # reported as the retrain's failure, with what MLMD recorded
        error = f"{type(e).__name__}: {e}"
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result = {"error": error, "cpu_s": usage.ru_utime + usage.ru_stime, "anomalies": [],
              "pushed": False}
    if _latest_run_id(config, name) in (None, previous):
        result["error"] = error or "the run left no record in ML Metadata"
        return result
    summary = run_summary.summarize_latest_run(
        run_summary.open_store(str(config.local.metadata_path)), name
    )
    result.update(anomalies=list(summary.anomalies), pushed=bool(summary.pushed_destination))
    return result


def _latest_run_id(config: PipelineConfig, name: str) -> Optional[str]:
    if not config.local.metadata_path.exists():
        return None
    try:
        store = run_summary.open_store(str(config.local.metadata_path))
        return run_summary.summarize_latest_run(store, name).run_id
    except run_summary.MetadataNotFoundError:
        return None


def _retrain_child(
    config: PipelineConfig, endpoints: BigQueryEndpoints, results: Connection
) -> None:
    results.send(retrain_in_child(config, endpoints))


async def retrain(stack: Stack, started: float, timeout_s: float) -> RetrainOutcome:
    """One retraining DAG in a fresh spawned process, awaited without blocking the load;
    killed after `timeout_s` (a hung BigQuery would otherwise stop the soak for good)."""
    begun = time.monotonic()
    context = multiprocessing.get_context("spawn")
    receiving, sending = context.Pipe(duplex=False)
    child = context.Process(
        target=_retrain_child, args=(stack.config, stack.endpoints, sending), name="retrain"
    )
    child.start()
    sending.close()  # the child holds the only sending end: its death ends the wait
    result = {"error": "", "cpu_s": float("nan"), "anomalies": [], "pushed": False}
    if not await asyncio.to_thread(receiving.poll, timeout_s):
        result["cpu_s"] = _cpu_seconds(child.pid)
        child.kill()
        result["error"] = f"no result after {timeout_s:.0f} s (--retrain-timeout-min); killed"
    else:
        try:
            result = receiving.recv()
        except EOFError:
            result["error"] = "the retrain process died before it reported"
    await asyncio.to_thread(child.join)
    outcome = RetrainOutcome(
        started_at_s=begun - started,
        seconds=time.monotonic() - begun,
        cpu_s=result["cpu_s"],
        ok=not result["error"],
        error=result["error"],
        anomalies=tuple(result["anomalies"]),
        pushed=result["pushed"],
        load_avg=os.getloadavg()[0],
    )
    print(f"  [{_clock(started)}] retrain: {'ok' if outcome.ok else outcome.error}, "
          f"{outcome.seconds:.0f} s, {len(outcome.anomalies)} anomalies", flush=True)
    return outcome


def _cpu_seconds(pid: int) -> float:
    with contextlib.suppress(psutil.Error):
        times = psutil.Process(pid).cpu_times()
        return times.user + times.system
    return float("nan")


# ----------------------------------------------------------------------------- soak load


async def send_load(
    url: str, users: SimulatedUsers, options: SoakOptions, ledger: Ledger, stop_at: float
) -> None:
    """Open loop: prediction i is due at start + i / rate; a share of answers is rewarded."""
    rng = np.random.default_rng(options.seed)
    loop = asyncio.get_running_loop()
    in_flight: Set[asyncio.Task] = set()
    timeout = aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_S)
    connector = aiohttp.TCPConnector(limit=options.max_in_flight)
    async with aiohttp.ClientSession(base_url=url, timeout=timeout, connector=connector) as http:
        start = loop.time()
        i = 0
        while loop.time() < stop_at:
            due = start + i / options.rate
            i += 1
            await asyncio.sleep(max(0.0, due - loop.time()))
            if len(in_flight) >= options.max_in_flight:
                ledger.shed += 1
                continue
            user = int(rng.integers(users.num_users))
            rewarded = bool(rng.random() < options.reward_share)
            task = asyncio.create_task(_one_event(http, users, user, rewarded, rng, ledger))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            ledger.sent += 1
        await asyncio.gather(*in_flight)
    print(f"  load done: {ledger.sent:,} sent, {ledger.shed:,} shed", flush=True)


async def _one_event(
    http: aiohttp.ClientSession,
    users: SimulatedUsers,
    user: int,
    rewarded: bool,
    rng: np.random.Generator,
    ledger: Ledger,
) -> None:
    started = time.perf_counter()
    status, body = await _post(http, "/predict", {"instances": [users.instance(user)]})
    ledger.outcomes[f"predict {status}"] += 1
    if status != "200":
        return
    ledger.latencies_s.append(time.perf_counter() - started)
    prediction = body["predictions"][0]
    ledger.answered.add(prediction["event_id"])
    if not rewarded:
        return
    reward, _ = users.outcome(user, prediction, rng)
    status, _ = await _post(http, "/reward", {"event_id": prediction["event_id"], "reward": reward})
    ledger.outcomes[f"reward {status}"] += 1
    if status == "200":
        ledger.rewarded.add(prediction["event_id"])


async def _post(http: aiohttp.ClientSession, route: str, payload: dict) -> Tuple[str, Any]:
    """(HTTP status or the client error's name, JSON body or None)."""
    try:
        async with http.post(route, json=payload) as response:
            return str(response.status), await response.json(content_type=None)
    except (aiohttp.ClientError, asyncio.TimeoutError, ValueError) as error:
        return type(error).__name__, None


async def sample_until(stack: Stack, started: float, samples: List[Sample], stop: asyncio.Event):
    while not stop.is_set():
        samples.append(await asyncio.to_thread(sample, stack, started))
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_EVERY_S)


def _clock(started: float) -> str:
    seconds = int(time.monotonic() - started)
    return f"{seconds // 60:02d}:{seconds % 60:02d}"


# ----------------------------------------------------------------------------- soak timeline


@dataclasses.dataclass
class Timeline:
    """The faults and retrains of one soak, in order, and what each one took."""

    stack: Stack
    options: SoakOptions
    started: float
    retrains: List[RetrainOutcome] = dataclasses.field(default_factory=list)
    events: List[Figure] = dataclasses.field(default_factory=list)
    _running: Optional[asyncio.Task] = None

    async def run(self) -> None:
        duration = self.options.duration_s
        faults = [(OUTAGE_AT, self._outage), (KILL_AT, self._kill), (RELOAD_AT, self._reload)]
        every = self.options.retrain_every_min * 60.0
        retrains = [(k * every / duration, None) for k in range(1, int(duration // every) + 1)]
        for share, fault in sorted(faults + retrains, key=lambda item: item[0]):
            if share * duration >= duration:
                continue
            await self._until(share * duration)
            if fault is None:
                await self._start_retrain()
            else:
                await fault()
        await self._finish_retrain()

    async def _until(self, at_s: float) -> None:
        await asyncio.sleep(max(0.0, self.started + at_s - time.monotonic()))

    async def _start_retrain(self) -> None:
        await self._finish_retrain()  # one at a time, like the trigger
        if time.monotonic() - self.started >= self.options.duration_s:
            print(f"  [{_clock(self.started)}] a retrain due in the window was skipped: the "
                  "previous one ran past the end of the load", flush=True)
            return
        print(f"  [{_clock(self.started)}] retrain started", flush=True)
        self._running = asyncio.create_task(
            retrain(self.stack, self.started, self.options.retrain_timeout_min * 60.0)
        )

    async def _finish_retrain(self) -> None:
        if self._running is not None:
            self.retrains.append(await self._running)
            self._running = None

    async def _outage(self) -> None:
        if not self.options.outage_s:
            return
        await self._finish_retrain()  # the retrain reads BigQuery; it must not straddle the outage
        print(f"  [{_clock(self.started)}] emulator stopped for {self.options.outage_s:g} s",
              flush=True)
        await asyncio.to_thread(self.stack.emulator.stop)
        await asyncio.sleep(self.options.outage_s)
        begun = time.monotonic()
        await asyncio.to_thread(self.stack.emulator.start)
        self._note(f"emulator outage of {self.options.outage_s:g} s",
                   f"restarted in {time.monotonic() - begun:.1f} s")

    async def _kill(self) -> None:
        print(f"  [{_clock(self.started)}] server SIGKILLed", flush=True)
        seconds = await asyncio.to_thread(restart_server, self.stack)
        self._note("server SIGKILL -> healthy again", f"{seconds:.1f} s")

    async def _reload(self) -> None:
        before = await asyncio.to_thread(self.stack.server.model_version)
        version = await asyncio.to_thread(push_copy_of_current_version, self.stack)
        begun = time.monotonic()
        now = await asyncio.to_thread(
            self.stack.server.wait_for_version_change, before, RELOAD_TIMEOUT_S
        )
        self._note(f"hot reload {before} -> {version}",
                   f"serving {now} after {time.monotonic() - begun:.1f} s")

    def _note(self, what: str, value: str) -> None:
        print(f"  [{_clock(self.started)}] {what}: {value}", flush=True)
        self.events.append(Figure(f"{what} at {_clock(self.started)}", value, "", None,
                                  load_now()))


async def soak(stack: Stack, options: SoakOptions) -> Tuple[Ledger, List[Sample], Timeline]:
    users = simulated_users_of(stack.config)
    ledger, samples = Ledger(), []
    started = time.monotonic()
    stop_sampling = asyncio.Event()
    sampler = asyncio.create_task(sample_until(stack, started, samples, stop_sampling))
    timeline = Timeline(stack, options, started)
    stop_at = asyncio.get_running_loop().time() + options.duration_s
    await asyncio.gather(send_load(stack.server.url, users, options, ledger, stop_at),
                         timeline.run())
    await asyncio.to_thread(wait_for_drain, stack, ledger, options.drain_timeout_s)
    print(f"  [{_clock(started)}] spool drained into BigQuery", flush=True)
    stop_sampling.set()
    await sampler
    return ledger, samples, timeline


# ----------------------------------------------------------------------------- BigQuery checks


def landed_counts(stack: Stack, table: str) -> Counter:
    """Rows per event_id in a serving table, read through the Storage Read API."""
    rows = read_query_rows(
        stack.endpoints,
        f"SELECT event_id FROM `{stack.table_id(table)}`",
        stack.config.bigquery.scratch_dataset,
    )[1]
    return collections.Counter(row["event_id"] for row in rows)


def wait_for_drain(stack: Stack, ledger: Ledger, timeout_s: float) -> None:
    """Polls BigQuery until every confirmed prediction and reward is there, or the deadline."""
    bq = stack.config.bigquery
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(Exception):  # a table may not exist yet
            if ledger.answered <= landed_counts(stack, bq.predictions_table).keys() and (
                ledger.rewarded <= landed_counts(stack, bq.rewards_table).keys()
            ):
                return
        time.sleep(SAMPLE_EVERY_S)
    print(f"  not everything confirmed reached BigQuery within {timeout_s:.0f} s "
          "(--drain-timeout-s); counting what did", flush=True)


def read_landed(stack: Stack) -> Landed:
    bq = stack.config.bigquery
    predictions, rewards = stack.table_id(bq.predictions_table), stack.table_id(bq.rewards_table)
    client = clients.make_bigquery_client(stack.endpoints)
    serving_logs = build_serving_logs_query(predictions, rewards)
    joined = (f"SELECT COUNT(DISTINCT p.event_id) AS n FROM `{predictions}` AS p "
              f"JOIN `{rewards}` AS r ON p.event_id = r.event_id")
    return Landed(
        predictions=landed_counts(stack, bq.predictions_table),
        rewards=landed_counts(stack, bq.rewards_table),
        deduplicated_rows=_scalar(client, f"SELECT COUNT(*) AS n FROM ({serving_logs})"),
        joined_events=_scalar(client, joined),
    )


def _scalar(client: Any, query: str) -> int:
    return int(next(iter(client.query(query).result()))["n"])


# ----------------------------------------------------------------------------- main


def run_soak(options: SoakOptions) -> List[Figure]:
    with running_stack(options) as stack:
        print(f"soak: {options.minutes:g} min at {options.rate:g} req/s, "
              f"{options.reward_share:.0%} rewarded, outage {options.outage_s:g} s", flush=True)
        ledger, samples, timeline = asyncio.run(soak(stack, options))
        landed = read_landed(stack)
        cap_mb = spool_max_mb(stack)
        samples_csv = stack.config.local.root_dir / "soak_samples.csv"
        write_samples(samples, samples_csv)
        print(f"  samples every {SAMPLE_EVERY_S:g} s: {samples_csv}", flush=True)
    return (
        load_figures(ledger, samples)
        + delivery_figures(ledger, landed, load_now())
        + resource_figures(samples, cap_mb)
        + timeline.events
        + retrain_figures(timeline.retrains)
    )


def run_fuzz(options: SoakOptions) -> List[Figure]:
    with running_stack(options) as stack:
        print(f"fuzz: {options.fuzz:,} requests", flush=True)
        config = stack.config
        plan = fuzz_plan(np.random.default_rng(options.seed), options.fuzz,
                         config.movielens.rank_k, config.serving.max_body_bytes)
        tally, ledger = asyncio.run(send_fuzz(stack.server.url, plan))
        wait_for_drain(stack, ledger, options.drain_timeout_s)
        timeout_s = options.retrain_timeout_min * 60.0
        outcome = asyncio.run(retrain(stack, time.monotonic(), timeout_s))
    return fuzz_figures(tally, outcome)


def main(argv: Optional[Sequence[str]] = None) -> int:
    options = parse_options(argv)
    figures = run_fuzz(options) if options.fuzz else run_soak(options)
    print("\nResults (the emulator, retrains and the load generator share the cores with the "
          "server; load average = 1-minute load when measured, or its range over the run)")
    print(format_table(figures))
    return 0 if all(f.ok is not False for f in figures) else 1


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # Ctrl-C and kill both clean up
    raise SystemExit(main())
