"""A durable local spool between the serving request path and BigQuery.

Serving appends here and returns; a background shipper (`PredictionLogger`)
reads the outbox, ships it and removes rows only after BigQuery confirmed
them. The spool also remembers which events were served and rewarded so the
Reward API can reject unknown and duplicate rewards without asking BigQuery.

Durability: SQLite in WAL mode with synchronous=NORMAL. A committed
transaction survives the death of the process (SIGKILL included); after an OS
crash or power loss the last few transactions may roll back, the file stays
consistent.

Write streams: for BigQuery's Storage Write API the spool also holds, per
destination, the COMMITTED write stream in use and the offset its next batch
gets, and on each outbox row the stream and offset of the batch it was last
sent in; so a restarted shipper resends exactly the same rows at exactly the
same offset (see `serving.prediction_logger`).

Size: the database file is capped (`max_bytes`, SQLite's max_page_count) and the
WAL starts over after each checkpoint, cut back to `WAL_SIZE_LIMIT_BYTES`; the
checkpoints and the pruning of the served registry run from
`serving.spool_maintenance`, whether or not the rows are shipped. A write that
finds the cap reached, or the disk full, raises `SpoolFullError` and changes
nothing; writes succeed again as soon as shipping or pruning frees pages.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import math
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

PREDICTIONS = "predictions"
REWARDS = "rewards"
WAL_SIZE_LIMIT_BYTES = 4 * 1024 * 1024
# A WAL that a reader in another process kept from restarting is truncated past this.
WAL_TRUNCATE_AT_BYTES = 32 * 1024 * 1024
PRUNE_CHUNK_ROWS = 500
_BUSY_TIMEOUT_S = 5.0
# Between two prune chunks a request waiting for the spool's lock takes it.
_PRUNE_PAUSE_S = 0.002
_MB = 1024 * 1024

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    stream_name TEXT,
    stream_offset INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_by_destination ON outbox (destination, seq);
CREATE TABLE IF NOT EXISTS write_streams (
    destination TEXT PRIMARY KEY,
    stream_name TEXT NOT NULL,
    next_offset INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS served (
    event_id TEXT PRIMARY KEY,
    served_at REAL NOT NULL,
    rewarded INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS served_by_time ON served (served_at);
"""
# Columns added to the outbox after spools were first deployed: an older spool
# file gets them on open. The index needs them, so it is created after.
_OUTBOX_COLUMNS_ADDED = {"stream_name": "TEXT", "stream_offset": "INTEGER"}
_OUTBOX_BY_STREAM = (
    "CREATE INDEX IF NOT EXISTS outbox_by_stream ON outbox (stream_name, stream_offset, seq) "
    "WHERE stream_name IS NOT NULL"
)
_OUTBOX_COLUMNS = "seq, destination, event_id, payload, attempts, stream_name, stream_offset"


class RewardStatus(enum.Enum):
    """What `record_reward` did with a reward."""

    ACCEPTED = "accepted"
    UNKNOWN_EVENT = "unknown_event"
    DUPLICATE = "duplicate"


class DuplicateEventError(ValueError):
    """A prediction reused an event id that was already served."""


class SpoolFullError(RuntimeError):
    """The spool reached its size cap or its disk is full; the write changed nothing."""


@dataclasses.dataclass(frozen=True)
class OutboxRecord:
    """One row waiting for BigQuery; `attempts` > 0 means it may already have landed.

    `stream_name` and `stream_offset`: the Write API stream and offset of the
    batch this row was sent in, whose fate is not known yet; None if unassigned.
    """

    seq: int
    destination: str
    event_id: str
    payload: dict[str, Any]
    attempts: int
    stream_name: Optional[str]
    stream_offset: Optional[int]


@dataclasses.dataclass(frozen=True)
class WriteStreamPosition:
    """A destination's open write stream and the offset its next batch gets."""

    stream_name: str
    next_offset: int


class EventSpool:
    """Outbox and served-events registry in one SQLite file; thread-safe through one lock.

    One connection under a lock keeps check-then-write sequences (rewards) atomic
    within the process; BEGIN IMMEDIATE keeps them atomic across processes too.
    `max_bytes` caps the database file; None leaves only the disk as the limit.
    """

    def __init__(self, path: Path, max_bytes: Optional[int] = None) -> None:
        if max_bytes is not None and max_bytes < 1:
            raise ValueError(f"max_bytes must be positive or None, got {max_bytes}")
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # An automatic checkpoint would run (and sync the disk) inside a request's
        # commit every ~1000 pages; `checkpoint()` does it off the request path.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        self._conn.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT_BYTES}")
        with self._transaction() as conn:
            _create_schema(conn)
        if max_bytes is not None:
            page_size = self._conn.execute("PRAGMA page_size").fetchone()[0]
            self._conn.execute(f"PRAGMA max_page_count={max(1, max_bytes // page_size)}")

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )

    def checkpoint(self, truncate_at_bytes: int = WAL_TRUNCATE_AT_BYTES) -> None:
        """Copies the WAL into the database, so that the next write starts it over.

        Two passes, both PASSIVE. The first, on a connection of its own, copies
        and syncs the bulk without blocking writers; under steady writes it never
        catches up with them. The second holds the spool's lock and copies the
        few frames written meanwhile: the WAL is then fully copied, and the next
        commit restarts it from the top and cuts the file back to
        `WAL_SIZE_LIMIT_BYTES`. A writer of this process waits on the lock for
        the couple of milliseconds that takes, not in SQLite's busy handler,
        whose sleeps (1, 2, 5, 10 ms, ...) once turned such waits into 20-36 ms
        stalls. If a reader in another process kept the WAL from restarting and
        it has grown past `truncate_at_bytes`, it is truncated, under the lock too.
        """
        with contextlib.closing(self._connect()) as conn:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        with self._lock:
            self._conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
            if self.wal_bytes() > truncate_at_bytes:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def wal_bytes(self) -> int:
        """The size of the spool's write-ahead log file, 0 when there is none."""
        wal = self.path.with_name(self.path.name + "-wal")
        try:
            return wal.stat().st_size
        except FileNotFoundError:
            return 0

    @contextlib.contextmanager
    def _transaction(self, durable: bool = False) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any error.

        A failed COMMIT (disk full, I/O error) can leave SQLite's transaction
        open, and then every later BEGIN would fail until a restart; so the
        COMMIT is inside the try and the rollback runs whenever one is open.
        A full spool or disk raises SpoolFullError. `durable` syncs the commit
        to disk (synchronous=FULL), so it survives an OS crash or power loss too.
        """
        with self._lock:
            if durable:
                self._conn.execute("PRAGMA synchronous=FULL")
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException as error:
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    if _is_full(error):
                        raise SpoolFullError(self._full_message()) from error
                    raise
            finally:
                if durable:
                    self._conn.execute("PRAGMA synchronous=NORMAL")

    def _full_message(self) -> str:
        cap = f"its cap of {self.max_bytes / _MB:g} MB" if self.max_bytes else "no cap"
        return (
            f"the event spool {self.path} is full ({cap}) or its disk has no space left: "
            "rows leave it once they are shipped to BigQuery; check that shipping is on and "
            "BigQuery is reachable, then raise the cap (MLBANDITS_SPOOL_MAX_MB) or free disk space"
        )

    def append_predictions(self, rows: list[dict[str, Any]]) -> None:
        """Spools prediction rows and registers their event ids as served, all or nothing.

        Raises DuplicateEventError (nothing spooled) if an event id was served before.
        """
        now = time.time()
        outbox = [(PREDICTIONS, row["event_id"], _dumps(row)) for row in rows]
        try:
            with self._transaction() as conn:
                conn.executemany(
                    "INSERT INTO outbox (destination, event_id, payload) VALUES (?, ?, ?)", outbox
                )
                conn.executemany(
                    "INSERT INTO served (event_id, served_at) VALUES (?, ?)",
                    [(event_id, now) for _, event_id, _ in outbox],
                )
        except sqlite3.IntegrityError as exc:
            raise DuplicateEventError(
                f"an event id in this batch was already served: {exc}"
            ) from exc

    def record_reward(self, event_id: str, row: dict[str, Any]) -> RewardStatus:
        """Spools a reward if its event was served and not rewarded yet; `row` gets `event_id`."""
        payload = _dumps({**row, "event_id": event_id})
        with self._transaction() as conn:
            found = conn.execute(
                "SELECT rewarded FROM served WHERE event_id = ?", (event_id,)
            ).fetchone()
            if found is None:
                return RewardStatus.UNKNOWN_EVENT
            if found[0]:
                return RewardStatus.DUPLICATE
            conn.execute("UPDATE served SET rewarded = 1 WHERE event_id = ?", (event_id,))
            conn.execute(
                "INSERT INTO outbox (destination, event_id, payload) VALUES (?, ?, ?)",
                (REWARDS, event_id, payload),
            )
        return RewardStatus.ACCEPTED

    def peek(self, limit: int, destination: Optional[str] = None) -> list[OutboxRecord]:
        """The oldest `limit` outbox rows, of one destination if given; they stay spooled."""
        query = f"SELECT {_OUTBOX_COLUMNS} FROM outbox"
        params: tuple[Any, ...] = (limit,)
        if destination is not None:
            query += " WHERE destination = ?"
            params = (destination, limit)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY seq LIMIT ?", params).fetchall()
        return _records(rows)

    def next_batch(self, limit: int, destination: str) -> list[OutboxRecord]:
        """What the Write API shipper sends next, oldest first; the rows stay spooled.

        If the oldest row was sent on a write stream, its whole batch (the rows of
        that stream and offset, whatever `limit` is now), which must be resent
        unchanged; else up to `limit` of the oldest rows not assigned to a stream.
        """
        with self._lock:
            head = self._conn.execute(
                "SELECT stream_name, stream_offset FROM outbox WHERE destination = ? "
                "ORDER BY seq LIMIT 1",
                (destination,),
            ).fetchone()
            if head is None:
                return []
            if head[0] is not None:
                rows = self._conn.execute(
                    f"SELECT {_OUTBOX_COLUMNS} FROM outbox "
                    "WHERE stream_name = ? AND stream_offset = ? ORDER BY seq",
                    head,
                ).fetchall()
            else:
                rows = self._conn.execute(
                    f"SELECT {_OUTBOX_COLUMNS} FROM outbox "
                    "WHERE destination = ? AND stream_name IS NULL ORDER BY seq LIMIT ?",
                    (destination, limit),
                ).fetchall()
        return _records(rows)

    def mark_attempted(self, seqs: Iterable[int]) -> None:
        """Records, before sending, that these rows may land: a later sender checks them first.

        For insertAll: a write-stream assignment is dropped, as the rows leave that path.
        """
        with self._transaction() as conn:
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, stream_name = NULL, "
                "stream_offset = NULL WHERE seq = ?",
                [(s,) for s in seqs],
            )

    def write_stream(self, destination: str) -> Optional[WriteStreamPosition]:
        """The destination's open write stream, None if it has none."""
        with self._lock:
            found = self._conn.execute(
                "SELECT stream_name, next_offset FROM write_streams WHERE destination = ?",
                (destination,),
            ).fetchone()
        return WriteStreamPosition(*found) if found else None

    def open_write_stream(self, destination: str, stream_name: str) -> None:
        """Records a new, empty write stream for a destination that has none open."""
        with self._transaction() as conn:
            conn.execute(
                "INSERT INTO write_streams (destination, stream_name, next_offset) "
                "VALUES (?, ?, 0)",
                (destination, stream_name),
            )

    def assign_to_stream(self, destination: str, seqs: list[int]) -> list[OutboxRecord]:
        """Before sending: gives the rows, in `seqs` order, the next offsets of the open stream.

        Marks them attempted in the same transaction, synced to disk: were it lost
        in an OS crash after the rows landed, their offsets would go to other rows
        later, and those would be taken for landed. Raises LookupError if the
        destination has no open stream. Returns the rows as assigned.
        """
        with self._transaction(durable=True) as conn:
            found = conn.execute(
                "SELECT stream_name, next_offset FROM write_streams WHERE destination = ?",
                (destination,),
            ).fetchone()
            if found is None:
                raise LookupError(f"no write stream is open for {destination}; open one first")
            stream_name, offset = found
            conn.executemany(
                "UPDATE outbox SET attempts = attempts + 1, stream_name = ?, stream_offset = ? "
                "WHERE seq = ? AND destination = ?",
                [(stream_name, offset, seq, destination) for seq in seqs],
            )
            conn.execute(
                "UPDATE write_streams SET next_offset = ? WHERE destination = ?",
                (offset + len(seqs), destination),
            )
            rows = conn.execute(
                f"SELECT {_OUTBOX_COLUMNS} FROM outbox "
                "WHERE stream_name = ? AND stream_offset = ? ORDER BY seq",
                (stream_name, offset),
            ).fetchall()
        if len(rows) != len(seqs):
            raise LookupError(f"of {len(seqs)} rows to assign only {len(rows)} are spooled")
        return _records(rows)

    def retire_write_stream(self, destination: str, stream_name: str) -> None:
        """Forgets a lost stream; its rows keep `attempts` > 0 and lose their assignment.

        Whether they landed is unknown, so the shipper asks the table before it
        sends them again, on a new stream.
        """
        with self._transaction() as conn:
            conn.execute(
                "UPDATE outbox SET stream_name = NULL, stream_offset = NULL "
                "WHERE stream_name = ?",
                (stream_name,),
            )
            conn.execute(
                "DELETE FROM write_streams WHERE destination = ? AND stream_name = ?",
                (destination, stream_name),
            )

    def remove(self, seqs: Iterable[int]) -> None:
        """Deletes confirmed rows from the outbox."""
        with self._transaction() as conn:
            conn.executemany("DELETE FROM outbox WHERE seq = ?", [(s,) for s in seqs])

    def pending_count(self, destination: Optional[str] = None) -> int:
        """Rows not yet confirmed by BigQuery."""
        with self._lock:
            if destination is None:
                return self._conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0]
            return self._conn.execute(
                "SELECT COUNT(*) FROM outbox WHERE destination = ?", (destination,)
            ).fetchone()[0]

    def used_bytes(self) -> int:
        """Bytes of the database file in use (its pages less the free ones); cheap to ask."""
        with self._lock:
            pages, free, size = (
                self._conn.execute(f"PRAGMA {name}").fetchone()[0]
                for name in ("page_count", "freelist_count", "page_size")
            )
        return (pages - free) * size

    def served_cutoff(self, keep_newest: int) -> Optional[float]:
        """The served time before which events must go for at most `keep_newest` to remain.

        None when no more than that many are registered. Walks `keep_newest`
        entries of the time index on a connection of its own, without the lock.
        """
        if keep_newest < 0:
            raise ValueError(f"keep_newest must be >= 0, got {keep_newest}")
        with contextlib.closing(self._connect()) as conn:
            found = conn.execute(
                "SELECT served_at FROM served ORDER BY served_at DESC LIMIT 1 OFFSET ?",
                (keep_newest,),
            ).fetchone()
        return None if found is None else math.nextafter(found[0], math.inf)

    def prune_served(self, served_before: float, chunk_rows: int = PRUNE_CHUNK_ROWS) -> int:
        """Forgets the events served before `served_before` (a `time.time()`); returns how many.

        Keeps the registry bounded. Consequence: a reward for a forgotten event is
        rejected as UNKNOWN_EVENT. Deletes `chunk_rows` per transaction on a
        connection of its own and lets waiting writers in between, so a request
        waits for one chunk at most, never for the whole prune.
        """
        if chunk_rows < 1:
            raise ValueError(f"chunk_rows must be positive, got {chunk_rows}")
        pruned = 0
        with contextlib.closing(self._connect()) as conn:
            while True:
                with self._lock:
                    deleted = conn.execute(
                        "DELETE FROM served WHERE event_id IN "
                        "(SELECT event_id FROM served WHERE served_at < ? LIMIT ?)",
                        (served_before, chunk_rows),
                    ).rowcount
                pruned += deleted
                if deleted < chunk_rows:
                    return pruned
                time.sleep(_PRUNE_PAUSE_S)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _create_schema(conn: sqlite3.Connection) -> None:
    """Creates what is missing, including columns a spool file of an older version lacks."""
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)
    existing = {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}
    for column, kind in _OUTBOX_COLUMNS_ADDED.items():
        if column not in existing:
            conn.execute(f"ALTER TABLE outbox ADD COLUMN {column} {kind}")
    conn.execute(_OUTBOX_BY_STREAM)


def _records(rows: list[tuple]) -> list[OutboxRecord]:
    return [
        OutboxRecord(seq, destination, event_id, json.loads(payload), attempts, stream, offset)
        for seq, destination, event_id, payload, attempts, stream, offset in rows
    ]


def _is_full(error: BaseException) -> bool:
    """SQLITE_FULL: the page cap is reached or the disk is full (Python 3.10 has no error code)."""
    return isinstance(error, sqlite3.OperationalError) and "full" in str(error)


def _dumps(row: dict[str, Any]) -> str:
    """Strict JSON: BigQuery would refuse NaN and infinity on every retry; refused here instead."""
    return json.dumps(row, allow_nan=False, separators=(",", ":"))
