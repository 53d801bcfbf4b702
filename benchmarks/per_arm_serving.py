"""Per-arm serving: the NumPy fast path vs the SavedModel path, logging on (issue 10).

The policy is InteractionLinUCB (the best per-arm agent), trained with the
trainer's own code (`train_per_arm_policy`) on uniformly logged rounds of the
per-arm MovieLens simulator and exported with `save_per_arm_policy` and a
catalogue of all 1,682 movies, once with 100 candidates per round and once
with the whole catalogue. The SavedModel fixes the candidate count, so each
count is its own export; the 1,682 export traces a ~20 MB graph for minutes,
so exports are cached in `--policy-cache` and reused by later runs.

As `serving_latency.py` (whose server, load-generator and CPU helpers this
reuses), every cell starts `python -m serving` on 127.0.0.1 (`--scorer numpy`
is the fast path, `--scorer savedmodel` calls the SavedModel's `action` once
per request) and drives it from a separate load-generator process. Requests
are single-instance: `{"global_features": <the user's 20 SVD features>,
"candidates": [distinct movie ids], "user_id": u}`. Cells:

  * 100 candidates, numpy: closed loop on 1 and on 32 connections, then
    `--rate` (500) req/s on 32 connections: the p99 target's setting,
    measured again on `--target-runs` - 1 fresh servers, because one run's
    p99 varies by 2x from run to run on a shared machine;
  * 100 candidates, savedmodel: closed loop on 1 connection, the baseline;
  * 1,682 candidates (the whole catalogue), numpy, `--catalogue-rate` (100)
    req/s on 32 connections: once sending all 1,682 ids, once omitting
    `candidates` so the server draws them (all 1,682, shuffled).

Throughput counts answers over the loader's wall time after warm-up, so a
slow request finishing after the window still costs its time. Logging is on:
by default into a local BigQuery emulator (checked afterwards: every answer
landed), or `--logging spool`. Server, load generator, emulator and anything
else running share this machine's cores; the 1-minute load average is
printed beside every figure.

With `--pin-server CPU` the server runs on that CPU alone and the load
generator and emulator on the others, so the server's latency is not its
neighbours' CPU time; `--client wrk` costs the client's CPU far less than the
Python client (wrk has no fixed-rate mode: see `serving_latency.run_wrk`).

    .venv/bin/python benchmarks/per_arm_serving.py [--logging spool] [--duration 10]
        [--client wrk] [--pin-server 0] [--target-runs 5]
"""

import argparse
import asyncio
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np
import serving_latency
from serving_latency import REPO, count_rows, group_cpu_seconds, running_server

AGENT = "InteractionLinUCB"
CANDIDATES = 100
RANK_K = 20
P99_TARGET_MS = 5.0
CATALOGUE_P99_TARGET_MS = 20.0
THROUGHPUT_RATIO_TARGET = 30.0
DEFAULT_POLICY_CACHE = Path(tempfile.gettempdir()) / "mlbandits-per-arm-serving-policies"


@dataclasses.dataclass(frozen=True)
class Cell:
    """One measurement: candidates per request, scorer, load shape and request form."""

    candidates: int
    scorer: str
    load: str  # "closed" or "rate"
    connections: int
    rate: float = 0.0
    send_ids: bool = True  # False: the request omits candidates and the server draws them

    def label(self) -> str:
        load = f"~{self.rate:.0f} req/s" if self.load == "rate" else "closed loop"
        sent = "" if self.send_ids else ", server draws ids"
        return (
            f"{self.candidates:>5} cand {self.scorer:>10} {load:>12}, "
            f"{self.connections:>2} conn{sent}"
        )


# ----------------------------------------------------------------------------- load generator


def loadgen_main(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON summary line."""
    bodies = [line.encode() for line in Path(args.bodies).read_text().splitlines()]
    started = time.perf_counter()
    if args.rate:
        result = asyncio.run(
            serving_latency._fixed_rate(
                args.url, bodies, args.rate, args.connections, args.warmup, args.duration
            )
        )
    else:
        result = asyncio.run(
            serving_latency._closed_loop(
                args.url, bodies, args.connections, args.warmup, args.duration
            )
        )
    # The closed loop's last answers may arrive after its window: count their time too.
    result["seconds"] = max(result["seconds"], time.perf_counter() - started - args.warmup)
    latencies = np.array(result.pop("latencies")) * 1000.0
    result.update(
        requests=int(latencies.size),
        throughput=latencies.size / result["seconds"],
        p50_ms=float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        max_ms=float(latencies.max()) if latencies.size else float("nan"),
    )
    print(json.dumps(result))


def run_loadgen(
    url: str, bodies: Path, cell: Cell, warmup: float, duration: float, client: str, work: Path
) -> dict:
    if client == "wrk":
        lines = [line.encode() for line in bodies.read_text().splitlines()[:200]]
        rate = cell.rate if cell.load == "rate" else 0.0
        return serving_latency.run_wrk(
            url, lines, cell.connections, rate, warmup, duration, work
        )
    command = [sys.executable, __file__, "--loadgen", "--url", url, "--bodies", str(bodies)]
    command += ["--connections", str(cell.connections), "--rate", str(cell.rate)]
    command += ["--warmup", str(warmup), "--duration", str(duration)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(output.stdout.strip().splitlines()[-1])


# ----------------------------------------------------------------------------- policies, bodies


def export_policies(cache: Path, events: int, seed: int) -> Dict[int, Path]:
    """candidates -> push directory of an InteractionLinUCB version for that many candidates.

    Trained once on `events` uniformly logged rounds (100 candidates each);
    the 1,682-candidate version has the same statistics and catalogue.
    """
    from bandit_core.item_catalogue import ItemCatalogue
    from custom_components.bandit_trainer.per_arm_export import save_per_arm_policy
    from custom_components.bandit_trainer.per_arm_training import train_per_arm_policy
    from custom_components.bandit_trainer.settings import TrainerSettings
    from custom_components.movielens_generator.per_arm_logged_data import (
        simulate_uniform_per_arm_logging,
    )
    from simulation import movielens_per_arm

    bandit = movielens_per_arm.load_per_arm_bandit("", RANK_K)
    pushes = {
        count: cache / f"{AGENT}-k{RANK_K}-n{events}-s{seed}-c{count}"
        for count in (CANDIDATES, bandit.num_movies)
    }
    missing = [count for count, push in pushes.items() if not (push / "1").is_dir()]
    if not missing:
        print(f"policies: reusing {', '.join(str(p) for p in pushes.values())}", flush=True)
        return pushes
    logged = simulate_uniform_per_arm_logging(bandit, events, CANDIDATES, 1.0, seed)
    movie_ids = np.arange(1, bandit.num_movies + 1)
    catalogue = ItemCatalogue(
        movie_ids, movielens_per_arm.arm_features(bandit, movie_ids), f"movielens-svd-k{RANK_K}"
    )
    for count in missing:
        started = time.perf_counter()
        trained = train_per_arm_policy(
            TrainerSettings(agent=AGENT, seed=seed),
            logged.global_features.astype(np.float32),
            movielens_per_arm.arm_features(bandit, logged.movie_ids).astype(np.float32),
            logged.rewards.astype(np.float32),
            count,
        )
        staging = pushes[count].with_name(pushes[count].name + ".partial")
        save_per_arm_policy(trained, catalogue, str(staging / "1"))
        staging.rename(pushes[count])
        print(
            f"policies: trained and exported {AGENT} for {count} candidates on {events} "
            f"logged rounds in {time.perf_counter() - started:.0f} s -> {pushes[count]}",
            flush=True,
        )
    return pushes


def write_bodies(path: Path, candidates: Optional[int], count: int, seed: int = 0) -> Path:
    """`count` single-instance request bodies, one per line; no ids if `candidates` is None."""
    from simulation import movielens_per_arm

    bandit = movielens_per_arm.load_per_arm_bandit("", RANK_K)
    rng = np.random.default_rng(seed)
    user_ids = rng.integers(1, bandit.num_users + 1, size=count)
    features = movielens_per_arm.global_features(bandit, user_ids).round(6)
    lines = []
    for user_id, user in zip(user_ids, features):
        instance = {"global_features": user.tolist(), "user_id": int(user_id)}
        if candidates is not None:
            ids = rng.choice(bandit.num_movies, size=candidates, replace=False) + 1
            instance["candidates"] = ids.tolist()
        lines.append(json.dumps({"instances": [instance]}))
    path.write_text("\n".join(lines) + "\n")
    return path


# ----------------------------------------------------------------------------- orchestration


def measure(
    policy_push: Path,
    scorer: str,
    cells: List[Cell],
    bodies: Dict[Cell, Path],
    args: argparse.Namespace,
    work: Path,
    emulator,
    bigquery,
    tag: str,
    results: Dict[Cell, dict],
) -> None:
    """Runs `cells` against one server; checks afterwards that BigQuery holds every answer."""
    if emulator is not None:
        logging_env = {
            "MLBANDITS_BQ_PROJECT": emulator.project,
            "MLBANDITS_BQ_REST_ENDPOINT": emulator.rest_endpoint,
            "MLBANDITS_BQ_GRPC_ENDPOINT": emulator.grpc_endpoint,
            "MLBANDITS_BQ_DATASET": "bench",
            "MLBANDITS_BQ_PREDICTIONS_TABLE": f"predictions_{tag}",
            "MLBANDITS_BQ_REWARDS_TABLE": f"rewards_{tag}",
        }
    else:
        logging_env = {"MLBANDITS_SHIP_LOGS": "false"}
    answered = 0
    server_cpus = {args.pin_server} if args.pin_server is not None else None
    with running_server(policy_push, scorer, work, logging_env, tag, server_cpus) as (url, pid):
        for cell in cells:
            duration = args.savedmodel_duration if cell.scorer == "savedmodel" else args.duration
            server_cpu = group_cpu_seconds(pid)
            emulator_cpu = group_cpu_seconds(emulator.pid) if emulator else 0.0
            result = run_loadgen(
                url, bodies[cell], cell, args.warmup, duration, args.client, work
            )
            per_request = 1e6 / max(1, result["answered"])
            result["server_cpu_us"] = (group_cpu_seconds(pid) - server_cpu) * per_request
            if emulator is not None:
                result["emulator_cpu_us"] = (
                    group_cpu_seconds(emulator.pid) - emulator_cpu
                ) * per_request
            result["load_avg"] = os.getloadavg()[0]
            results[cell] = result
            answered += result["answered"]
            print(_row(cell, result), flush=True)
    if bigquery is not None:
        uncounted = sum(results[cell].get("uncounted_at_most", 0) for cell in cells)
        landed = count_rows(bigquery, f"{emulator.project}.bench.predictions_{tag}")
        verdict = (
            "every answer landed" if answered <= landed <= answered + uncounted else "MISMATCH"
        )
        print(
            f"  BigQuery emulator holds {landed} prediction rows for {answered} answered "
            f"requests (+ <= {uncounted} in flight at wrk's cut-off): {verdict}",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=10.0, help="measured seconds per cell")
    parser.add_argument(
        "--savedmodel-duration",
        type=float,
        default=40.0,
        help="measured seconds of the SavedModel cell (it takes seconds per request)",
    )
    parser.add_argument("--warmup", type=float, default=2.0, help="unmeasured seconds first")
    parser.add_argument(
        "--rate", type=float, default=500.0, help="req/s of the 100-candidate target"
    )
    parser.add_argument(
        "--catalogue-rate", type=float, default=100.0, help="req/s of the whole-catalogue cells"
    )
    parser.add_argument("--events", type=int, default=20_000, help="logged rounds to train on")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--policy-cache", type=Path, default=DEFAULT_POLICY_CACHE)
    parser.add_argument(
        "--logging", choices=["bigquery-emulator", "spool"], default="bigquery-emulator"
    )
    parser.add_argument(
        "--client",
        choices=["python", "wrk"],
        default="python",
        help="load generator: this file's asyncio client, or wrk (apt-get install wrk)",
    )
    parser.add_argument(
        "--pin-server",
        type=int,
        metavar="CPU",
        help="run the server on this CPU alone, and the load generator and emulator on the others",
    )
    parser.add_argument(
        "--target-runs",
        type=int,
        default=1,
        help="measure the p99 target's cell this many times; the verdict is on the median p99",
    )
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main(args)
        return
    serving_latency.refuse_missing_wrk(parser, args.client)
    if args.target_runs < 1:
        parser.error(f"--target-runs {args.target_runs}: measure the target at least once (1)")
    if args.pin_server is not None:
        others = os.sched_getaffinity(0) - {args.pin_server}
        if args.pin_server not in os.sched_getaffinity(0) or not others:
            parser.error(
                f"--pin-server {args.pin_server}: needs one of this machine's CPUs "
                f"{sorted(os.sched_getaffinity(0))} and at least one other left for the rest"
            )
        os.sched_setaffinity(0, others)  # the emulator and load generator inherit this

    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="per-arm-serving-bench-"))
    print(f"work dir {work}; {os.cpu_count()} CPUs; load average {_load()}", flush=True)
    if args.pin_server is not None:
        print(
            f"server pinned to CPU {args.pin_server}; load generator ({args.client}) and "
            f"emulator on CPUs {sorted(os.sched_getaffinity(0))}",
            flush=True,
        )
    pushes = export_policies(args.policy_cache, args.events, args.seed)
    catalogue_size = max(pushes)
    fast = [
        Cell(CANDIDATES, "numpy", "closed", 1),
        Cell(CANDIDATES, "numpy", "closed", 32),
        Cell(CANDIDATES, "numpy", "rate", 32, args.rate),
    ]
    baseline = Cell(CANDIDATES, "savedmodel", "closed", 1)
    whole = [
        Cell(catalogue_size, "numpy", "rate", 32, args.catalogue_rate),
        Cell(catalogue_size, "numpy", "rate", 32, args.catalogue_rate, send_ids=False),
    ]
    bodies_100 = write_bodies(work / "bodies-100.jsonl", CANDIDATES, 1000)
    bodies = {cell: bodies_100 for cell in fast + [baseline]}
    bodies[whole[0]] = write_bodies(work / "bodies-all.jsonl", catalogue_size, 200)
    bodies[whole[1]] = write_bodies(work / "bodies-none.jsonl", None, 1000)

    emulator = bigquery = None
    if args.logging == "bigquery-emulator":
        from bandit_core.bigquery.clients import make_bigquery_client
        from tfx_pipeline.local.emulator import BigQueryEmulator

        emulator = BigQueryEmulator().start()
        bigquery = make_bigquery_client(emulator.endpoints)
        print(
            f"logging: real PredictionLogger -> BigQuery emulator at {emulator.rest_endpoint} "
            "(the emulator runs on this machine and shares its cores)",
            flush=True,
        )
    else:
        print("logging: SQLite spool only (MLBANDITS_SHIP_LOGS=false), nothing shipped", flush=True)

    results: Dict[Cell, dict] = {}
    try:
        for push, scorer, cells, tag in (
            (pushes[CANDIDATES], "numpy", fast, "c100_numpy"),
            (pushes[CANDIDATES], "savedmodel", [baseline], "c100_savedmodel"),
            (pushes[catalogue_size], "numpy", whole, "all_numpy"),
        ):
            measure(push, scorer, cells, bodies, args, work, emulator, bigquery, tag, results)
        target_runs = [results[fast[-1]]]
        for run in range(2, args.target_runs + 1):
            again: Dict[Cell, dict] = {}
            measure(
                pushes[CANDIDATES],
                "numpy",
                fast[-1:],
                bodies,
                args,
                work,
                emulator,
                bigquery,
                f"c100_target{run}",
                again,
            )
            target_runs.append(again[fast[-1]])
    finally:
        if emulator is not None:
            emulator.stop()
    _print_summary(results, baseline, fast, whole, target_runs, args)


def _load() -> str:
    return "/".join(f"{value:.2f}" for value in os.getloadavg())


def _row(cell: Cell, result: dict) -> str:
    late = f" late_sends={result['late_sends']}" if "late_sends" in result else ""
    emulator = ""
    if "emulator_cpu_us" in result:
        emulator = f" emulator_cpu={result['emulator_cpu_us']:.0f}us/req"
    return (
        f"{cell.label()}: {result['throughput']:8.1f} req/s ({result['requests']} measured) "
        f"p50 {result['p50_ms']:8.2f} ms  p99 {result['p99_ms']:8.2f} ms  "
        f"max {result['max_ms']:8.1f} ms errors={result['errors']}{late} "
        f"server_cpu={result['server_cpu_us']:.0f}us/req{emulator} "
        f"load_avg={result['load_avg']:.2f}"
    )


def _print_summary(
    results: Dict[Cell, dict],
    baseline: Cell,
    fast: List[Cell],
    whole: List[Cell],
    target_runs: List[dict],
    args,
) -> None:
    reference = results[baseline]
    print(
        f"\nagainst the SavedModel path of this run ({baseline.label()}: "
        f"{reference['throughput']:.2f} req/s, p50 {reference['p50_ms']:.0f} ms, "
        f"load_avg {reference['load_avg']:.2f}):"
    )
    print("| cell | req/s | throughput / SavedModel's | p50 ms | p99 ms | load avg (1 min) |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for cell in [baseline] + fast + whole:
        result = results[cell]
        print(
            f"| {cell.label().strip()} | {result['throughput']:.1f} "
            f"| {result['throughput'] / reference['throughput']:.0f}x "
            f"| {result['p50_ms']:.2f} | {result['p99_ms']:.2f} | {result['load_avg']:.2f} |"
        )
    best = max(results[cell]["throughput"] for cell in fast if cell.load == "closed")
    ratio = best / reference["throughput"]
    print(
        f"\ntarget 1, throughput >= {THROUGHPUT_RATIO_TARGET:.0f}x the SavedModel path: "
        f"{ratio:.0f}x (best closed loop): {_verdict(ratio >= THROUGHPUT_RATIO_TARGET)}"
    )
    p99s = [run["p99_ms"] for run in target_runs]
    median = float(np.median(p99s))
    on_rate = all(run["throughput"] >= 0.97 * args.rate for run in target_runs)
    runs = ""
    if len(target_runs) > 1:
        runs = (
            f" (median of {len(p99s)} runs: the first on the closed loops' server, then "
            f"fresh servers: {', '.join(f'{p99:.2f}' for p99 in p99s)} ms)"
        )
    print(
        f"target 2, {CANDIDATES} candidates at {args.rate:.0f} req/s, p99 <= {P99_TARGET_MS} ms: "
        f"p99 {median:.2f} ms{runs} at "
        f"{min(run['throughput'] for run in target_runs):.0f}+ req/s: "
        f"{_verdict(on_rate and median <= P99_TARGET_MS)}"
    )
    for cell in whole:
        result = results[cell]
        on_rate = result["throughput"] >= 0.97 * cell.rate
        print(
            f"target 3, whole catalogue ({cell.candidates} candidates"
            f"{'' if cell.send_ids else ', server draws them'}) at {cell.rate:.0f} req/s, p99 <= "
            f"{CATALOGUE_P99_TARGET_MS} ms: p99 {result['p99_ms']:.2f} ms at "
            f"{result['throughput']:.0f} req/s: "
            f"{_verdict(on_rate and result['p99_ms'] <= CATALOGUE_P99_TARGET_MS)}"
        )


def _verdict(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


if __name__ == "__main__":
    main()
