"""What a request waits for in the spool while the served registry is pruned.

Issue 14 asks that pruning run "in small chunks off the request path (show p99
unchanged while it runs)". A request's time in the spool is one
`append_predictions` commit (the server answers after it). This script
measures that commit's latency at a steady request rate in three phases on
the same spool, holding `--old-rows` served events past the reward window:

  * idle: no prune runs (the baseline of the ratios);
  * chunked: `prune_served` as the maintenance thread runs it, in
    transactions of `PRUNE_CHUNK_ROWS` rows;
  * one transaction: the whole prune in one DELETE (how pruning ran before),
    to show what the chunks avoid.

Everything runs in this process on this machine's cores, so each row is
printed with the 1-minute load average at its end.

    .venv/bin/python benchmarks/prune_latency.py [--old-rows 300000] [--rate 500]
"""

from __future__ import annotations

import argparse
import os
import sqlite3
import tempfile
import threading
import time
from pathlib import Path
from typing import List, Optional

import numpy as np

from serving.event_spool import PRUNE_CHUNK_ROWS, EventSpool

OBSERVATION_SIZE = 20


def seed_old_events(spool: EventSpool, count: int) -> None:
    """`count` served events from the epoch: all past any reward window."""
    connection = sqlite3.connect(spool.path)
    with connection:
        connection.executemany(
            "INSERT INTO served (event_id, served_at) VALUES (?, 0)",
            ((f"old-{i}",) for i in range(count)),
        )
    connection.close()


def request_latencies(
    spool: EventSpool, rate: float, prefix: str, while_alive: Optional[threading.Thread],
    count: int,
) -> List[float]:
    """Seconds per one-row commit, one every 1/rate s: while `while_alive` runs, else `count`."""
    row = {"event_time": "2024-05-01T12:00:00Z", "observation": [0.5] * OBSERVATION_SIZE}
    latencies = []
    started = time.perf_counter()
    i = 0
    while (while_alive.is_alive() if while_alive is not None else i < count):
        delay = started + i / rate - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        before = time.perf_counter()
        spool.append_predictions([{**row, "event_id": f"{prefix}-{i}"}])
        latencies.append(time.perf_counter() - before)
        i += 1
    return latencies


def during_prune(spool: EventSpool, rate: float, prefix: str, chunk_rows: int) -> tuple:
    """(latencies, rows pruned, prune seconds) of requests sent while one prune runs."""
    pruned: List[int] = []
    cutoff = time.time() - 3600
    prune = threading.Thread(
        target=lambda: pruned.append(spool.prune_served(cutoff, chunk_rows=chunk_rows))
    )
    started = time.perf_counter()
    prune.start()
    latencies = request_latencies(spool, rate, prefix, prune, 0)
    prune.join()
    return latencies, pruned[0], time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--old-rows", type=int, default=300_000)
    parser.add_argument("--rate", type=float, default=500.0, help="requests per second")
    parser.add_argument("--idle-requests", type=int, default=3000)
    args = parser.parse_args()
    if args.old_rows < 1 or args.rate <= 0 or args.idle_requests < 100:
        parser.error("--old-rows must be >= 1, --rate > 0 and --idle-requests >= 100")

    with tempfile.TemporaryDirectory() as tmp:
        spool = EventSpool(Path(tmp) / "spool.sqlite")
        seed_old_events(spool, args.old_rows)
        rows = [("idle", request_latencies(spool, args.rate, "idle", None, args.idle_requests),
                 0, 0.0, os.getloadavg()[0])]
        chunked, n_chunked, s_chunked = during_prune(spool, args.rate, "chunked", PRUNE_CHUNK_ROWS)
        rows.append((f"chunked prune ({PRUNE_CHUNK_ROWS} rows)", chunked, n_chunked, s_chunked,
                     os.getloadavg()[0]))
        seed_old_events(spool, args.old_rows)
        whole, n_whole, s_whole = during_prune(spool, args.rate, "whole", args.old_rows)
        rows.append(("one-transaction prune", whole, n_whole, s_whole, os.getloadavg()[0]))
        spool.close()

    idle_p99 = float(np.percentile(rows[0][1], 99))
    print(f"spool commit latency at {args.rate:g} req/s with {args.old_rows:,} old served events "
          f"({os.cpu_count()} CPUs)")
    print(f"{'phase':34} {'requests':>8} {'pruned':>8} {'prune s':>8} {'p50 ms':>7} "
          f"{'p99 ms':>7} {'max ms':>7} {'p99 / idle':>10} {'load':>5}")
    for name, latencies, pruned, seconds, load in rows:
        ms = np.array(latencies) * 1000
        p99 = float(np.percentile(ms, 99))
        print(f"{name:34} {len(ms):>8,} {pruned:>8,} {seconds:>8.2f} {np.percentile(ms, 50):>7.2f} "
              f"{p99:>7.2f} {ms.max():>7.1f} {p99 / (idle_p99 * 1000):>10.2f} {load:>5.2f}")


if __name__ == "__main__":
    main()
