"""Rows per second the serving logger sustains into the emulator, against one insert per row.

The logger figure is end to end: from the first log call until BigQuery has
confirmed the last row and the spool is empty; one figure per shipping method
(write_api: Storage Write API appends, insert_all: insertAll), each into a
dataset of its own. The emulator runs on the same cores as the logger, so each
figure is printed with the 1-minute load average at its end.

    .venv/bin/python benchmarks/logger_throughput.py [--rows 50000] [--rows-per-call 1]
        [--ship-method write_api --ship-method insert_all]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Optional

from bandit_core.bigquery.clients import BigQueryEndpoints, make_bigquery_client
from bandit_core.bigquery.tables import PREDICTIONS_SCHEMA, ensure_table
from serving.event_spool import EventSpool
from serving.prediction_logger import SHIP_METHODS, PredictionLogger
from tfx_pipeline.local.emulator import BigQueryEmulator

DATASET = "bench"
OBSERVATION_SIZE = 20


def _rows(prefix: str, count: int) -> list[dict]:
    return [
        {
            "event_id": f"{prefix}-{i}",
            "event_time": "2024-05-01T12:00:00Z",
            "user_id": i,
            "observation": [((i + k) % 97) / 97 for k in range(OBSERVATION_SIZE)],
            "action": i % 10,
            "propensity": 0.1,
            "model_version": "bench",
        }
        for i in range(count)
    ]


def _row_count(endpoints: BigQueryEndpoints, dataset: str, table: str) -> int:
    client = make_bigquery_client(endpoints)
    return next(iter(client.query(f"SELECT COUNT(*) FROM `{dataset}.{table}`").result()))[0]


def measure_logger(
    endpoints: BigQueryEndpoints,
    spool_path: Path,
    rows: int,
    rows_per_call: int,
    batch_size: int,
    ship_method: str,
) -> tuple[float, float]:
    """End-to-end rows/s and request-side rows/s (time spent in log calls only)."""
    data = _rows("logger", rows)
    dataset = f"{DATASET}_{ship_method}"
    with EventSpool(spool_path) as spool:
        logger = PredictionLogger(
            spool,
            endpoints,
            dataset,
            "predictions",
            "rewards",
            batch_size=batch_size,
            ship_method=ship_method,
        )
        logger.start()
        started = time.perf_counter()
        for start in range(0, rows, rows_per_call):
            logger.log_predictions(data[start:start + rows_per_call])
        logged = time.perf_counter()
        if not logger.close(flush_timeout_s=600):
            raise RuntimeError(f"logger did not drain: {logger.stats()}")
        finished = time.perf_counter()
    landed = _row_count(endpoints, dataset, "predictions")
    if landed != rows:
        raise RuntimeError(f"{landed} rows landed, expected {rows}")
    return rows / (finished - started), rows / (logged - started)


def measure_naive(endpoints: BigQueryEndpoints, rows: int) -> float:
    """One insert_rows_json per row, as a request handler writing straight to BigQuery would."""
    client = make_bigquery_client(endpoints)
    table_id = ensure_table(client, DATASET, "naive", PREDICTIONS_SCHEMA)
    data = _rows("naive", rows)
    started = time.perf_counter()
    for row in data:
        errors = client.insert_rows_json(table_id, [row], row_ids=[row["event_id"]])
        if errors:
            raise RuntimeError(f"insert refused: {errors}")
    return rows / (time.perf_counter() - started)


def main(argv: Optional[list[str]] = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=50_000, help="rows through the logger")
    parser.add_argument(
        "--rows-per-call", type=int, default=1, help="rows per log_predictions call"
    )
    parser.add_argument("--batch-size", type=int, default=1000, help="rows per insert or append")
    parser.add_argument("--baseline-rows", type=int, default=500, help="rows inserted one per call")
    parser.add_argument(
        "--ship-method",
        action="append",
        choices=SHIP_METHODS,
        help="repeat for several; default: all of them",
    )
    args = parser.parse_args(argv)

    results = []
    with BigQueryEmulator() as emulator, tempfile.TemporaryDirectory() as tmp:
        for method in args.ship_method or SHIP_METHODS:
            rates = measure_logger(
                emulator.endpoints,
                Path(tmp) / f"{method}.db",
                args.rows,
                args.rows_per_call,
                args.batch_size,
                method,
            )
            results.append((method, *rates, os.getloadavg()[0]))
        naive_rate = measure_naive(emulator.endpoints, args.baseline_rows)
        naive_load = os.getloadavg()[0]

    print(
        f"{args.rows} rows, {args.rows_per_call}/call, batches of {args.batch_size}; load: the "
        "1-minute load average at the end of each run (the emulator shares these cores)"
    )
    for method, logger_rate, request_rate, load in results:
        print(
            f"logger {method:10} end to end: {logger_rate:8.0f} rows/s  "
            f"({logger_rate / naive_rate:5.1f}x naive; load {load:4.2f}); "
            f"log calls alone: {request_rate:8.0f} rows/s"
        )
    print(
        f"naive, 1 row/insert           : {naive_rate:8.0f} rows/s  "
        f"({args.baseline_rows} rows; load {naive_load:4.2f})"
    )


if __name__ == "__main__":
    main()
