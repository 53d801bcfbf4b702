"""Ships served predictions and rewards to BigQuery without making a request wait for it.

Requests only write the durable `EventSpool`; one background thread reads it a
batch at a time, sends the batch to BigQuery and deletes it from the spool
once BigQuery confirmed it. Failures are retried with capped, jittered
exponential back-off for as long as it takes, so an outage costs disk, not
memory, and never loses a row: every spooled row lands at least once,
whatever fails. How often a row can land is the shipping method's business
(`ship_method`; the container's MLBANDITS_SHIP_METHOD); real BigQuery serves
both, the emulator too.

"write_api" (default): exactly once in the table, through BigQuery's Storage
Write API. Per destination table one COMMITTED write stream, its name and next
offset kept in the spool. Before a batch is sent, the transaction that marks
its rows attempted also gives them the stream's next offsets (synced to disk);
the batch is appended at that offset. Whatever fails after that (a reset
connection, a timeout, this process killed), the same rows are sent again at
the same offset on the same stream, by this process or the next one on the
spool: the stream accepts them if they are not there and answers
ALREADY_EXISTS if an earlier append landed them, however late it committed;
then they leave the spool unsent. Only when the stream itself is lost (not
found, finalized, expired, or behind the spool's offsets: OUT_OF_RANGE) is a
batch's fate unknown; it then takes the insert_all way below (a read-back of
its event ids after the settle delay), and the next batch opens a new stream.
So a row lands twice only if its stream is lost while an append of it is still
committing later than `settle_s` after its call failed, or if the spool loses
its file.

"insert_all": at least once in the table, through the legacy streaming API
(tabledata.insertAll). A row marked attempted and still spooled may have
landed (a reset connection, a timeout, a crash between the insert and the spool
delete), so before it is sent again the table is asked which of those event ids
it holds, and those are not resent. The question is asked no earlier than
`settle_s` after the last insert that could have carried them (after a restart:
`settle_s` after start), so an insert still committing when its connection broke
is seen if it commits within `settle_s`. Only an insert that commits later than
that is sent again and lands twice; insertId (the event id) lets real BigQuery
drop such a resend within its best-effort window of about a minute; the emulator
keeps both. Duplicates carry the same event id and values; readers
de-duplicate by event id (the retraining queries keep one row per event id).
"""

from __future__ import annotations

import dataclasses
import datetime
import fcntl
import logging
import math
import random
import threading
import time
from typing import IO, Any, Optional, Sequence

from google.cloud import bigquery

from bandit_core.bigquery.clients import BigQueryEndpoints, make_bigquery_client
from bandit_core.bigquery.tables import PREDICTIONS_SCHEMA, REWARDS_SCHEMA, ensure_table
from serving.committed_stream import AppendOutcome, CommittedStreamWriter
from serving.event_spool import PREDICTIONS, REWARDS, EventSpool, OutboxRecord, RewardStatus
from serving.write_stream_rows import RowMessages

WRITE_API = "write_api"
INSERT_ALL = "insert_all"
SHIP_METHODS = (WRITE_API, INSERT_ALL)

_LOG = logging.getLogger(__name__)
_SCHEMAS = {PREDICTIONS: PREDICTIONS_SCHEMA, REWARDS: REWARDS_SCHEMA}
_ROW_MESSAGES = {
    PREDICTIONS: RowMessages(PREDICTIONS_SCHEMA, "Prediction"),
    REWARDS: RowMessages(REWARDS_SCHEMA, "Reward"),
}
# BigQuery takes at most 10 MB per AppendRows request; the rest is the request's envelope.
_MAX_APPEND_BYTES = 9 * 1024 * 1024
_PYTHON_TYPES: dict[str, frozenset[type]] = {
    "STRING": frozenset({str}),
    "INT64": frozenset({int}),
    "INTEGER": frozenset({int}),
    "FLOAT64": frozenset({int, float}),
    "FLOAT": frozenset({int, float}),
    "BOOL": frozenset({bool}),
    "BOOLEAN": frozenset({bool}),
}
_FLOAT = {float}
# Network calls one shipping round can still be in when close()'s deadline passes.
_CALLS_PER_ROUND = 3
_MAX_BACKOFF_EXPONENT = 32
_MAX_ERROR_CHARS = 500


class ShipperAlreadyRunning(RuntimeError):
    """Another logger ships this spool; two shippers would send every row twice."""


class InsertRefused(RuntimeError):
    """BigQuery answered the insert with per-row errors."""


@dataclasses.dataclass(frozen=True)
class LoggerStats:
    """A snapshot for health checks and tests."""

    pending: int
    shipped: int
    # Inserts or appends BigQuery confirmed: `shipped / batches` rows per call.
    batches: int
    already_landed: int
    failed_attempts: int
    last_error: Optional[str]


class PredictionLogger:
    """Background shipper from an `EventSpool` to the predictions and rewards tables."""

    def __init__(
        self,
        spool: EventSpool,
        endpoints: BigQueryEndpoints,
        dataset: str,
        predictions_table: str,
        rewards_table: str,
        batch_size: int = 1000,
        poll_interval_s: float = 0.05,
        initial_backoff_s: float = 0.2,
        max_backoff_s: float = 10.0,
        request_timeout_s: float = 5.0,
        settle_s: float = 5.0,
        ship_method: str = WRITE_API,
    ) -> None:
        """`settle_s`: how long after a send that may have landed the table is asked which
        of its rows it holds; `ship_method`: one of SHIP_METHODS (see the module docstring).
        The spool's size is kept bounded by `serving.spool_maintenance`, not here."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        if settle_s < 0:
            raise ValueError(f"settle_s must be >= 0, got {settle_s}")
        if ship_method not in SHIP_METHODS:
            raise ValueError(
                f"ship_method {ship_method!r} is not one of {', '.join(SHIP_METHODS)}"
            )
        self._spool = spool
        self._endpoints = endpoints
        self._dataset = dataset
        self._table_names = {PREDICTIONS: predictions_table, REWARDS: rewards_table}
        self._batch_size = batch_size
        self._poll_interval_s = poll_interval_s
        self._initial_backoff_s = initial_backoff_s
        self._max_backoff_s = max_backoff_s
        self._request_timeout_s = request_timeout_s
        self._settle_s = settle_s
        self._ship_method = ship_method
        # Until then a read-back could miss rows of an insert that is still committing.
        self._settled_at = math.inf
        self._client: Optional[bigquery.Client] = None
        self._writer: Optional[CommittedStreamWriter] = None
        self._table_ids: dict[str, str] = {}
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._deadline = math.inf
        self._thread: Optional[threading.Thread] = None
        self._lock_file: Optional[IO[str]] = None
        self._shipped = 0
        self._batches = 0
        self._already_landed = 0
        self._failed_attempts = 0
        self._last_error: Optional[str] = None

    def start(self) -> PredictionLogger:
        """Starts the shipper thread; raises ShipperAlreadyRunning if another holds the spool."""
        if self._thread is not None:
            raise RuntimeError("PredictionLogger.start() called twice")
        endpoints = self._endpoints
        if self._ship_method == WRITE_API and endpoints.is_emulator and not endpoints.grpc_endpoint:
            raise ValueError(
                "the Storage Write API (ship_method write_api) speaks gRPC, but the emulator's "
                "gRPC endpoint is not set: set it (MLBANDITS_BQ_GRPC_ENDPOINT) or ship with "
                "insert_all (MLBANDITS_SHIP_METHOD=insert_all)"
            )
        self._lock_file = _lock_spool(self._spool)
        # A previous process may have sent the attempted rows just before it died.
        self._settled_at = time.monotonic() + self._settle_s
        self._thread = threading.Thread(target=self._run, name="prediction-logger", daemon=True)
        self._thread.start()
        return self

    def log_predictions(self, rows: Sequence[dict[str, Any]]) -> None:
        """Durably spools served predictions; raises ValueError for rows BigQuery would refuse."""
        self._spool.append_predictions([_prepare_row(row, _COLUMNS[PREDICTIONS]) for row in rows])
        self._wake.set()

    def log_reward(self, event_id: str, row: dict[str, Any]) -> RewardStatus:
        """Durably spools a reward unless its event is unknown or already rewarded."""
        prepared = _prepare_row({**row, "event_id": event_id}, _COLUMNS[REWARDS])
        status = self._spool.record_reward(event_id, prepared)
        if status is RewardStatus.ACCEPTED:
            self._wake.set()
        return status

    def close(self, flush_timeout_s: float = 30.0) -> bool:
        """Ships what it can within `flush_timeout_s`, stops the thread; True if nothing is left.

        What is left stays in the spool for the next logger on the same path.
        """
        if self._thread is not None:
            self._deadline = time.monotonic() + flush_timeout_s
            self._closing.set()
            self._wake.set()
            self._thread.join(flush_timeout_s + _CALLS_PER_ROUND * self._request_timeout_s)
            if self._thread.is_alive():
                _LOG.warning("prediction logger thread still in a BigQuery call after close()")
            elif self._lock_file is not None:
                self._lock_file.close()
                self._lock_file = None
        return self._spool.pending_count() == 0

    def stats(self) -> LoggerStats:
        return LoggerStats(
            pending=self._spool.pending_count(),
            shipped=self._shipped,
            batches=self._batches,
            already_landed=self._already_landed,
            failed_attempts=self._failed_attempts,
            last_error=self._last_error,
        )

    def _run(self) -> None:
        failures = 0
        while not self._finished():
            self._wake.clear()
            try:
                largest_batch = self._ship_round()
            except Exception as exc:  # whatever failed, the rows are safe in the spool
                failures += 1
                self._record_failure(exc, failures)
                self._pause(self._backoff_s(failures))
                continue
            if failures:
                _LOG.info("shipping to BigQuery works again after %d failed attempts", failures)
                failures = 0
            if not largest_batch:
                self._wake.wait(self._poll_interval_s)
            elif largest_batch < self._batch_size:
                # The rows that arrive meanwhile share the next insert: at a steady
                # request rate one insert per poll interval, not one per request,
                # each costing this process's and BigQuery's CPU.
                self._closing.wait(self._poll_interval_s)

    def _finished(self) -> bool:
        """After close(): once the spool is empty or the flush deadline has passed."""
        return self._closing.is_set() and (
            self._past_deadline() or self._spool.pending_count() == 0
        )

    def _past_deadline(self) -> bool:
        return self._closing.is_set() and time.monotonic() >= self._deadline

    def _ship_round(self) -> int:
        """Ships at most one batch per destination; returns the largest batch's size, 0 if none."""
        self._connect()
        ship = self._append_batch if self._ship_method == WRITE_API else self._insert_batch
        largest_batch = 0
        for destination, table_id in self._table_ids.items():
            if self._past_deadline():
                break
            largest_batch = max(largest_batch, ship(destination, table_id))
        return largest_batch

    def _connect(self) -> None:
        """Creates the client and the tables on first use: an outage at start-up is retried too."""
        if self._client is None:
            self._client = make_bigquery_client(self._endpoints)
        if self._writer is None and self._ship_method == WRITE_API:
            self._writer = CommittedStreamWriter(self._endpoints, self._request_timeout_s)
        if not self._table_ids:
            self._table_ids = {
                destination: ensure_table(
                    self._client,
                    self._dataset,
                    name,
                    _SCHEMAS[destination],
                    retry=None,
                    timeout=self._request_timeout_s,
                )
                for destination, name in self._table_names.items()
            }

    def _insert_batch(self, destination: str, table_id: str) -> int:
        """insert_all: one insertAll of the oldest rows; returns how many rows it considered."""
        batch = self._spool.peek(self._batch_size, destination)
        to_send = self._drop_landed(table_id, batch)
        if not to_send:
            return len(batch)
        seqs = [record.seq for record in to_send]
        self._spool.mark_attempted(seqs)
        try:
            self._insert(table_id, to_send)
        except Exception:
            self._settled_at = time.monotonic() + self._settle_s
            raise
        self._spool.remove(seqs)
        self._shipped += len(to_send)
        self._batches += 1
        return len(batch)

    def _append_batch(self, destination: str, table_id: str) -> int:
        """write_api: one append of the next batch at its offset; returns how many rows it
        considered. A batch sent before (by this process or a killed one) is sent unchanged."""
        batch = self._spool.next_batch(self._batch_size, destination)
        considered = len(batch)
        messages = _ROW_MESSAGES[destination]
        rows = [messages.serialize(record.payload) for record in batch]
        if batch and batch[0].stream_name is None:
            batch, rows = self._assign(destination, table_id, batch, rows)
        if not batch:
            return considered
        stream_name, offset = batch[0].stream_name, batch[0].stream_offset
        try:
            outcome = self._writer.append(stream_name, offset, messages.descriptor, rows)
        except Exception:
            self._settled_at = time.monotonic() + self._settle_s
            raise
        seqs = [record.seq for record in batch]
        if outcome is AppendOutcome.STREAM_LOST:
            self._spool.retire_write_stream(destination, stream_name)
            self._settled_at = time.monotonic() + self._settle_s
            _LOG.warning(
                "write stream %s is lost: %d rows sent at its offset %d are looked up in %s "
                "after %.1f s, the others sent on a new stream",
                stream_name,
                len(seqs),
                offset,
                table_id,
                self._settle_s,
            )
            return considered
        self._spool.remove(seqs)
        if outcome is AppendOutcome.APPENDED:
            self._shipped += len(seqs)
            self._batches += 1
        else:
            self._already_landed += len(seqs)
            _LOG.info(
                "%d spooled rows had already landed at offset %d of %s; not resending them",
                len(seqs),
                offset,
                stream_name,
            )
        return considered

    def _assign(
        self, destination: str, table_id: str, batch: list[OutboxRecord], rows: list[bytes]
    ) -> tuple[list[OutboxRecord], list[bytes]]:
        """The batch as it will be sent: without the rows the table already holds, cut to fit
        one AppendRows request, its rows given the destination stream's next offsets."""
        to_send = {record.seq for record in self._drop_landed(table_id, batch)}
        kept = [(record, row) for record, row in zip(batch, rows) if record.seq in to_send]
        size = 0
        for count, (_, row) in enumerate(kept):
            size += len(row)
            if size > _MAX_APPEND_BYTES and count:
                kept = kept[:count]
                break
        if not kept:
            return [], []
        if self._spool.write_stream(destination) is None:
            self._spool.open_write_stream(destination, self._writer.create_stream(table_id))
        assigned = self._spool.assign_to_stream(destination, [record.seq for record, _ in kept])
        return assigned, [row for _, row in kept]

    def _drop_landed(self, table_id: str, batch: list[OutboxRecord]) -> list[OutboxRecord]:
        """Removes from the spool the attempted rows the table already holds; returns the rest."""
        attempted = [record for record in batch if record.attempts]
        if not attempted:
            return batch
        while time.monotonic() < self._settled_at:
            if self._past_deadline():
                return []
            self._pause(self._settled_at - time.monotonic())
        landed = self._landed_event_ids(table_id, [record.event_id for record in attempted])
        landed_seqs = {record.seq for record in attempted if record.event_id in landed}
        if landed_seqs:
            self._spool.remove(landed_seqs)
            self._already_landed += len(landed_seqs)
            _LOG.info(
                "%d spooled rows had already landed in %s; not resending them",
                len(landed_seqs),
                table_id,
            )
        return [record for record in batch if record.seq not in landed_seqs]

    def _landed_event_ids(self, table_id: str, event_ids: list[str]) -> set[str]:
        job = self._client.query(
            f"SELECT event_id FROM `{table_id}` WHERE event_id IN UNNEST(@ids)",
            job_config=bigquery.QueryJobConfig(
                query_parameters=[bigquery.ArrayQueryParameter("ids", "STRING", event_ids)],
                use_query_cache=False,
            ),
            retry=None,
            job_retry=None,
            timeout=self._request_timeout_s,
        )
        return {row["event_id"] for row in job.result(retry=None, timeout=self._request_timeout_s)}

    def _insert(self, table_id: str, records: list[OutboxRecord]) -> None:
        """One insertAll with no client-side retry: a blind resend could duplicate rows."""
        errors = self._client.insert_rows_json(
            table_id,
            [record.payload for record in records],
            row_ids=[record.event_id for record in records],
            retry=None,
            timeout=self._request_timeout_s,
        )
        if errors:
            raise InsertRefused(
                f"BigQuery refused rows of {table_id} ({len(errors)} errors); first: {errors[0]}"
            )

    def _record_failure(self, exc: Exception, failures: int) -> None:
        self._failed_attempts += 1
        self._last_error = f"{type(exc).__name__}: {exc}"[:_MAX_ERROR_CHARS]
        log = _LOG.warning if failures == 1 else _LOG.debug
        log("shipping to BigQuery failed (attempt %d); will retry: %s", failures, self._last_error)

    def _backoff_s(self, failures: int) -> float:
        """Exponential and capped, with jitter so many servers do not retry in lock-step."""
        exponent = min(failures - 1, _MAX_BACKOFF_EXPONENT)
        ceiling = min(self._max_backoff_s, self._initial_backoff_s * 2**exponent)
        return random.uniform(ceiling / 2, ceiling)

    def _pause(self, seconds: float) -> None:
        """Waits; close() cuts a wait short, but a closing logger retries until its deadline."""
        if seconds <= 0:
            return
        if self._closing.is_set():
            time.sleep(max(0.0, min(seconds, self._deadline - time.monotonic())))
        else:
            self._closing.wait(seconds)


def _lock_spool(spool: EventSpool) -> IO[str]:
    """An exclusive lock next to the spool, released by the kernel if the process dies."""
    lock_file = open(f"{spool.path}.shipper.lock", "w")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.close()
        raise ShipperAlreadyRunning(f"another PredictionLogger is shipping {spool.path}") from None
    return lock_file


@dataclasses.dataclass(frozen=True)
class _Column:
    """What validation needs of a schema field, read once instead of per value."""

    name: str
    kind: str
    types: frozenset[type]
    required: bool
    repeated: bool


def _columns(schema: Sequence[bigquery.SchemaField]) -> dict[str, _Column]:
    columns = {}
    for field in schema:
        kind = field.field_type.upper()
        if kind != "TIMESTAMP" and kind not in _PYTHON_TYPES:
            raise ValueError(
                f"column {field.name} has type {kind}, which the logger does not handle"
            )
        mode = (field.mode or "NULLABLE").upper()
        columns[field.name] = _Column(
            field.name,
            kind,
            _PYTHON_TYPES.get(kind, frozenset()),
            mode == "REQUIRED",
            mode == "REPEATED",
        )
    return columns


_COLUMNS = {PREDICTIONS: _columns(PREDICTIONS_SCHEMA), REWARDS: _columns(REWARDS_SCHEMA)}


def _prepare_row(row: dict[str, Any], columns: dict[str, _Column]) -> dict[str, Any]:
    """The row as plain JSON values, checked against the table's columns.

    A row BigQuery refuses would be retried forever and hold up every row behind
    it, so it is refused here, where the caller can still answer with an error.
    """
    unknown = row.keys() - columns.keys()
    if unknown:
        raise ValueError(f"unknown columns {sorted(unknown)}; the table has {sorted(columns)}")
    prepared = {}
    for name, column in columns.items():
        value = _plain(row.get(name))
        if value is None:
            if column.required:
                raise ValueError(f"column {name} is required")
            continue
        if column.repeated:
            if not isinstance(value, (list, tuple)):
                raise ValueError(f"column {name} is REPEATED: expected a list, got {value!r}")
            prepared[name] = _checked_items(column, value)
        else:
            prepared[name] = _checked(column, value)
    return prepared


def _plain(value: Any) -> Any:
    """NumPy arrays and scalars as Python lists and numbers."""
    return value.tolist() if hasattr(value, "tolist") else value


def _checked_items(column: _Column, items: Sequence[Any]) -> list[Any]:
    """A REPEATED column's items as a list, checked as `_checked` would check each one.

    Items that already have the column's exact Python types (a 1,682-id candidate
    list, an observation from `tolist()`) are checked in whole-list passes in C;
    anything else goes item by item, which converts NumPy scalars and names the
    first bad item.
    """
    types = set(map(type, items))
    finite = float not in types or (types == _FLOAT and all(map(math.isfinite, items)))
    if types <= column.types and finite:
        return list(items)
    return [_checked(column, item) for item in items]


def _checked(column: _Column, value: Any) -> Any:
    """Exact type match: True is no INT64 and "3" is no INT64, though BigQuery might coerce them."""
    if column.kind == "TIMESTAMP":
        return _timestamp(column.name, value)
    if type(value) not in column.types:
        value = _plain(value)
        if type(value) not in column.types:
            raise ValueError(f"column {column.name} is {column.kind}, got {value!r}")
    if type(value) is float and not math.isfinite(value):
        raise ValueError(f"column {column.name} must be finite, got {value!r}")
    return value


def _timestamp(name: str, value: Any) -> str:
    """An ISO-8601 string; datetimes must be timezone-aware so no local time is mistaken for UTC."""
    if isinstance(value, datetime.datetime):
        if value.tzinfo is None:
            raise ValueError(f"column {name} needs a timezone-aware datetime, got {value!r}")
        return value.isoformat()
    if isinstance(value, str):
        try:
            datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"column {name} needs an ISO-8601 timestamp, got {value!r}") from None
        return value
    raise ValueError(f"column {name} needs a datetime or ISO-8601 string, got {value!r}")
