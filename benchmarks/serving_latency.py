"""Latency and throughput of the serving server, fast NumPy path vs the SavedModel path.

For each policy size (20 and 100 arms) and scorer (`numpy`, `savedmodel`) the
script starts `python -m serving` as a subprocess on 127.0.0.1, waits for
its health route, and drives it from a separate load-generator process:
`--client python` (default) is a bare asyncio HTTP/1.1 client, this same
file with `--loadgen`; `--client wrk` uses wrk (`apt-get install wrk`),
which costs the shared CPUs far less per request. Loads:

  * closed loop with 1 and with 32 connections: each connection sends its
    next request when the previous answer arrived (max throughput);
  * about 1,000 req/s (`--rate`) on 32 connections: the latency target's
    setting. The Python client schedules requests at exact times; wrk has no
    fixed-rate mode and pauses each connection randomly instead.

Every request is one instance with 20 floats. Logging is on: by default the
server runs the real PredictionLogger against a local BigQuery emulator and
the script checks afterwards that every answered prediction landed in
BigQuery; `--logging spool` logs to the local SQLite spool only. Client,
server (and emulator) share this machine's cores; each row also reports
the server's CPU time per request, which other load on the machine does not
inflate as much as latency.

    .venv/bin/python benchmarks/serving_latency.py [--client wrk] [--logging spool]
"""

import argparse
import asyncio
import contextlib
import dataclasses
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import numpy as np

REPO = Path(__file__).resolve().parent.parent
OBSERVATION_DIM = 20
P99_TARGET_MS = 5.0
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


@dataclasses.dataclass(frozen=True)
class Cell:
    """One measurement: a policy size, a scorer and a load shape."""

    arms: int
    scorer: str
    load: str  # "closed" or "rate"
    connections: int


# ----------------------------------------------------------------------------- load generator


class _Connection:
    """One keep-alive HTTP/1.1 connection; a bare client so the measurement is about the server.

    aiohttp's client costs a few hundred microseconds of CPU per request, which
    on a 2-core machine is taken from the server it measures.
    """

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, head: bytes
    ) -> None:
        self._reader, self._writer, self._head = reader, writer, head

    @classmethod
    async def open(cls, url: str) -> "_Connection":
        parsed = urllib.parse.urlsplit(url)
        reader, writer = await asyncio.open_connection(parsed.hostname, parsed.port)
        head = (
            f"POST {parsed.path} HTTP/1.1\r\nHost: {parsed.netloc}\r\n"
            f"Content-Type: application/json\r\nContent-Length: "
        ).encode()
        return cls(reader, writer, head)

    async def post(self, body: bytes) -> float:
        """Seconds from sending the request to the last byte of a 200 answer."""
        started = time.perf_counter()
        self._writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
        answer = await self._reader.readexactly(length)
        elapsed = time.perf_counter() - started
        if head[9:12] != b"200":
            raise RuntimeError(f"HTTP {head[9:12].decode()}: {answer[:200]!r}")
        return elapsed

    def close(self) -> None:
        self._writer.close()


async def _closed_loop(
    url: str, bodies: List[bytes], connections: int, warmup_s: float, duration_s: float
) -> dict:
    """Each connection sends its next request as soon as the previous answer arrived."""
    latencies: List[float] = []
    counts = {"answered": 0, "errors": 0}
    loop = asyncio.get_running_loop()
    measure_from = loop.time() + warmup_s
    end = measure_from + duration_s

    async def worker(offset: int) -> None:
        connection = await _Connection.open(url)
        i = offset
        while loop.time() < end:
            try:
                latency = await connection.post(bodies[i % len(bodies)])
            except Exception:
                counts["errors"] += 1
                connection.close()
                connection = await _Connection.open(url)
                continue
            counts["answered"] += 1
            if loop.time() >= measure_from:
                latencies.append(latency)
            i += connections
        connection.close()

    await asyncio.gather(*(worker(c) for c in range(connections)))
    return {"latencies": latencies, "seconds": duration_s, **counts}


async def _fixed_rate(
    url: str,
    bodies: List[bytes],
    rate: float,
    max_in_flight: int,
    warmup_s: float,
    duration_s: float,
) -> dict:
    """Open loop: request i is due at start + i / rate, on one of `max_in_flight` connections."""
    latencies: List[float] = []
    counts = {"answered": 0, "errors": 0, "late_sends": 0}
    idle: asyncio.Queue = asyncio.Queue()
    for _ in range(max_in_flight):
        idle.put_nowait(await _Connection.open(url))
    loop = asyncio.get_running_loop()
    total = int((warmup_s + duration_s) * rate)
    warmup_requests = int(warmup_s * rate)

    async def one(i: int, connection: _Connection) -> None:
        try:
            latency = await connection.post(bodies[i % len(bodies)])
        except Exception:
            counts["errors"] += 1
            connection.close()
            connection = await _Connection.open(url)
        else:
            counts["answered"] += 1
            if i >= warmup_requests:
                latencies.append(latency)
        idle.put_nowait(connection)

    start = loop.time()
    tasks = []
    for i in range(total):
        due = start + i / rate
        delay = due - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        connection = await idle.get()
        if loop.time() - due > 0.001 and i >= warmup_requests:
            counts["late_sends"] += 1
        tasks.append(asyncio.create_task(one(i, connection)))
    await asyncio.gather(*tasks)
    elapsed = loop.time() - start - warmup_s
    while not idle.empty():
        idle.get_nowait().close()
    return {"latencies": latencies, "seconds": elapsed, **counts}


def request_bodies(count: int = 1000) -> List[bytes]:
    """Single-instance predict requests with random contexts and user ids."""
    rng = np.random.default_rng(0)
    return [
        json.dumps(
            {
                "instances": [
                    {
                        "observation": rng.normal(size=OBSERVATION_DIM).round(6).tolist(),
                        "user_id": int(user_id),
                    }
                ]
            }
        ).encode()
        for user_id in rng.integers(1, 944, size=count)
    ]


def loadgen_main(args: argparse.Namespace) -> None:
    """Runs in its own process; prints one JSON summary line."""
    bodies = request_bodies()
    if args.rate:
        result = asyncio.run(
            _fixed_rate(args.url, bodies, args.rate, args.connections, args.warmup, args.duration)
        )
    else:
        result = asyncio.run(
            _closed_loop(args.url, bodies, args.connections, args.warmup, args.duration)
        )
    latencies = np.array(result.pop("latencies")) * 1000.0
    result.update(
        requests=int(latencies.size),
        throughput=latencies.size / result["seconds"],
        p50_ms=float(np.percentile(latencies, 50)) if latencies.size else float("nan"),
        p99_ms=float(np.percentile(latencies, 99)) if latencies.size else float("nan"),
        max_ms=float(latencies.max()) if latencies.size else float("nan"),
    )
    print(json.dumps(result))


_WRK_SCRIPT = """
local bodies = {%(bodies)s}
local i = 0
request = function()
  i = i + 1
  return wrk.format("POST", nil, {["Content-Type"] = "application/json"}, bodies[i %% #bodies + 1])
end
%(delay)s
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    '{"completed": %%d, "seconds": %%f, "errors": %%d, ' ..
    '"p50_ms": %%f, "p99_ms": %%f, "max_ms": %%f}\\n',
    summary.requests, summary.duration / 1e6,
    e.connect + e.read + e.write + e.status + e.timeout,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000, latency.max / 1000))
end
"""


def refuse_missing_wrk(parser: argparse.ArgumentParser, client: str) -> None:
    """Stops with a usage error that says how to get wrk when it is asked for but absent."""
    if client == "wrk" and shutil.which("wrk") is None:
        parser.error("--client wrk: wrk is not installed; `apt-get install wrk` or --client python")


def run_wrk(
    url: str,
    bodies: List[bytes],
    connections: int,
    rate: float,
    warmup_s: float,
    duration_s: float,
    work: Path,
) -> dict:
    """wrk (C, ~30 us of CPU per request) as the load generator; warm-up is a separate run.

    wrk has no fixed-rate mode, so a `rate` (0: closed loop) gives each
    connection a uniformly random pause with mean connections / rate between
    requests: Poisson-like arrivals at slightly under the target rate.
    """
    delay = ""
    if rate:
        mean_ms = max(1, round(connections * 1000 / rate) - 1)
        delay = f"delay = function() return math.random(0, {2 * mean_ms}) end"
    lua_bodies = ", ".join(f"[=[{body.decode()}]=]" for body in bodies)
    script = work / f"wrk-{connections}-{rate:.0f}.lua"
    script.write_text(_WRK_SCRIPT % {"bodies": lua_bodies, "delay": delay})
    results = []
    for seconds in (warmup_s, duration_s):
        duration = f"-d{max(1, round(seconds))}s"  # wrk takes whole seconds
        command = ["wrk", "-t1", f"-c{connections}", duration, "--timeout", "60s"]
        command += ["-s", str(script), url]
        output = subprocess.run(command, check=True, capture_output=True, text=True)
        results.append(json.loads(output.stdout.strip().splitlines()[-1]))
    warmup, measured = results
    # wrk stops with requests in flight: served and logged, but not counted.
    measured["uncounted_at_most"] = 2 * connections
    measured.update(
        answered=warmup["completed"]
        + measured["completed"]
        - warmup["errors"]
        - measured["errors"],
        requests=measured["completed"],
        throughput=measured["completed"] / measured["seconds"],
    )
    return measured


# ----------------------------------------------------------------------------- orchestration


def make_policy(policy_dir: Path, num_actions: int, seed: int = 0) -> None:
    """A LinUCB policy exported as BanditTrainer exports one, fitted to synthetic logs."""
    from tf_agents.policies import policy_saver

    from bandit_core.linear_statistics import arm_statistics
    from bandit_core.policy_metadata import (
        PolicyMetadata,
        write_policy_metadata,
    )
    from custom_components.bandit_trainer.agents import linucb_agent_from_statistics

    rng = np.random.default_rng(seed)
    rows = 200 * num_actions
    observations = rng.normal(size=(rows, OBSERVATION_DIM))
    actions = rng.integers(0, num_actions, size=rows)
    rewards = np.einsum(
        "nd,nd->n", observations, rng.normal(size=(num_actions, OBSERVATION_DIM))[actions]
    )
    agent = linucb_agent_from_statistics(
        arm_statistics(observations, actions, rewards, num_actions), alpha=1.0, tikhonov_weight=1.0
    )
    policy_saver.PolicySaver(agent.policy, batch_size=None).save(str(policy_dir))
    write_policy_metadata(
        str(policy_dir), PolicyMetadata("LinUCB", OBSERVATION_DIM, num_actions, 1.0, 1.0)
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_server(
    policy_dir: Path,
    scorer: str,
    work: Path,
    logging_env: Dict[str, str],
    tag: str,
    cpus: Optional[Set[int]] = None,
) -> Iterator[Tuple[str, int]]:
    """`python -m serving` in a subprocess; yields (predict URL, pid) once health says 200.

    With `cpus`, the server (and every thread it starts) runs on those CPUs only.
    """
    port = free_port()
    env = {
        **os.environ,
        "AIP_STORAGE_URI": str(policy_dir),
        "AIP_HTTP_PORT": str(port),
        "MLBANDITS_SPOOL_PATH": str(work / f"spool-{tag}.sqlite"),
        "MLBANDITS_SEED": "0",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        **logging_env,
    }
    log = open(work / f"server-{tag}.log", "wb")
    pinned = ["taskset", "-c", ",".join(map(str, sorted(cpus)))] if cpus else []
    process = subprocess.Popen(
        pinned + [sys.executable, "-m", "serving", f"--scorer={scorer}"],
        cwd=REPO,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group, so its CPU time can be read
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"server exited with {process.returncode}; see {log.name}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"server not healthy after 180 s; see {log.name}")
            with contextlib.suppress(OSError):
                with _NO_PROXY.open(f"http://127.0.0.1:{port}/health", timeout=1) as response:
                    if response.status == 200:
                        break
            time.sleep(0.2)
        yield f"http://127.0.0.1:{port}/predict", process.pid
    finally:
        process.send_signal(signal.SIGTERM)  # graceful: the logger flushes to BigQuery first
        try:
            process.wait(timeout=120)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def group_cpu_seconds(pgid: int) -> float:
    """User + system CPU seconds of every live process in a process group."""
    total = 0
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) == pgid:
                total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def run_loadgen(url: str, cell: Cell, args: argparse.Namespace, work: Path) -> dict:
    if args.client == "wrk":
        rate = args.rate if cell.load == "rate" else 0.0
        return run_wrk(
            url, request_bodies(200), cell.connections, rate, args.warmup, args.duration, work
        )
    command = [
        sys.executable,
        __file__,
        "--loadgen",
        "--url",
        url,
        "--connections",
        str(cell.connections),
        "--duration",
        str(args.duration),
        "--warmup",
        str(args.warmup),
    ]
    command += ["--rate", str(args.rate if cell.load == "rate" else 0)]
    output = subprocess.run(command, check=True, capture_output=True, text=True, cwd=REPO)
    return json.loads(output.stdout.strip().splitlines()[-1])


def count_rows(client, table_id: str) -> int:
    return next(iter(client.query(f"SELECT COUNT(*) AS n FROM `{table_id}`").result()))["n"]


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--loadgen", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--connections", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured seconds before each cell"
    )
    parser.add_argument("--rate", type=float, default=1000.0, help="open-loop request rate (req/s)")
    parser.add_argument("--arms", type=int, nargs="+", default=[20, 100])
    parser.add_argument(
        "--client",
        choices=["python", "wrk"],
        default="python",
        help="load generator: this file's asyncio client, or wrk (apt-get install wrk)",
    )
    parser.add_argument("--scorers", nargs="+", default=["numpy", "savedmodel"])
    parser.add_argument(
        "--logging", choices=["bigquery-emulator", "spool"], default="bigquery-emulator"
    )
    args = parser.parse_args()
    if args.loadgen:
        loadgen_main(args)
        return
    refuse_missing_wrk(parser, args.client)

    sys.path.insert(0, str(REPO))
    work = Path(tempfile.mkdtemp(prefix="serving-bench-"))
    print(
        f"work dir {work}; {os.cpu_count()} CPUs shared by client ({args.client}) and server",
        flush=True,
    )
    emulator = client = None
    if args.logging == "bigquery-emulator":
        from bandit_core.bigquery.clients import make_bigquery_client
        from tfx_pipeline.local.emulator import BigQueryEmulator

        emulator = BigQueryEmulator().start()
        client = make_bigquery_client(emulator.endpoints)
        print(
            f"logging: real PredictionLogger -> BigQuery emulator at {emulator.rest_endpoint}",
            flush=True,
        )
    else:
        print("logging: SQLite spool only (MLBANDITS_SHIP_LOGS=false), nothing shipped", flush=True)

    results: Dict[Cell, dict] = {}
    try:
        for arms in args.arms:
            policy_dir = work / f"policy-{arms}" / "1700000000"
            make_policy(policy_dir, arms)
            for scorer in args.scorers:
                tag = f"{arms}arms_{scorer}"
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
                answered = uncounted = 0
                with running_server(policy_dir.parent, scorer, work, logging_env, tag) as (
                    url,
                    pid,
                ):
                    for load, connections in (("closed", 1), ("closed", 32), ("rate", 32)):
                        cell = Cell(arms, scorer, load, connections)
                        server_cpu = group_cpu_seconds(pid)
                        emulator_cpu = group_cpu_seconds(emulator.pid) if emulator else 0.0
                        results[cell] = run_loadgen(url, cell, args, work)
                        answered += results[cell]["answered"]
                        uncounted += results[cell].get("uncounted_at_most", 0)
                        per_request = 1e6 / max(1, results[cell]["answered"])
                        results[cell]["server_cpu_us"] = (
                            group_cpu_seconds(pid) - server_cpu
                        ) * per_request
                        if emulator is not None:
                            results[cell]["emulator_cpu_us"] = (
                                group_cpu_seconds(emulator.pid) - emulator_cpu
                            ) * per_request
                        print(_row(cell, results[cell], args.rate), flush=True)
                if client is not None:
                    landed = count_rows(client, f"{emulator.project}.bench.predictions_{tag}")
                    verdict = (
                        "every answer landed"
                        if answered <= landed <= answered + uncounted
                        else "MISMATCH"
                    )
                    print(
                        f"  BigQuery emulator holds {landed} prediction rows for {answered} "
                        f"answered requests (+ <= {uncounted} in flight at wrk's cut-off): "
                        f"{verdict}",
                        flush=True,
                    )
    finally:
        if emulator is not None:
            emulator.stop()
    _print_summary(results, args)


def _row(cell: Cell, result: dict, rate: float) -> str:
    load = (
        f"~{rate:.0f} req/s, 32 conn" if cell.load == "rate" else f"closed, {cell.connections} conn"
    )
    late = f" late_sends={result['late_sends']}" if "late_sends" in result else ""
    return (
        f"{cell.arms:>4} arms {cell.scorer:>10} {load:>22}: {result['throughput']:8.0f} req/s "
        f"p50 {result['p50_ms']:7.2f} ms  p99 {result['p99_ms']:7.2f} ms  "
        f"max {result['max_ms']:7.1f} ms "
        f"errors={result['errors']}{late} server_cpu={result['server_cpu_us']:.0f}us/req"
        + (
            f" emulator_cpu={result['emulator_cpu_us']:.0f}us/req"
            if "emulator_cpu_us" in result
            else ""
        )
        + f" load_avg={os.getloadavg()[0]:.1f}"
    )


def _print_summary(results: Dict[Cell, dict], args: argparse.Namespace) -> None:
    print("\nnumpy vs savedmodel, same run: throughput ratio, p50 and p99 (savedmodel / numpy)")
    for cell, fast in results.items():
        if cell.scorer != "numpy":
            continue
        reference = results.get(dataclasses.replace(cell, scorer="savedmodel"))
        if reference is None:
            continue
        throughput = fast["throughput"] / reference["throughput"]
        p50 = reference["p50_ms"] / fast["p50_ms"]
        p99 = reference["p99_ms"] / fast["p99_ms"]
        print(
            f"{cell.arms:>4} arms {cell.load:>6} {cell.connections:>2} conn: "
            f"throughput x{throughput:.1f}, p50 x{p50:.1f} lower, p99 x{p99:.1f} lower"
        )
    target = results.get(Cell(20, "numpy", "rate", 32))
    if target is not None:
        verdict = (
            "PASS"
            if target["p99_ms"] <= P99_TARGET_MS and target["throughput"] >= 0.97 * args.rate
            else "FAIL"
        )
        print(
            f"\ntarget (20 arms, {args.rate:.0f} req/s, logging on): p99 {target['p99_ms']:.2f} ms "
            f"at {target['throughput']:.0f} req/s, target p99 <= {P99_TARGET_MS} ms: {verdict}"
        )


if __name__ == "__main__":
    main()
