"""A durable local spool between the serving request path and BigQuery.

Serving appends here and returns; a background shipper (`PredictionLogger`)
reads the outbox, ships it and removes rows only after BigQuery confirmed
them. The spool also remembers which events were served and rewarded so the
Reward API can reject unknown and duplicate rewards without asking BigQuery.

Durability: SQLite in WAL mode with synchronous=NORMAL. A committed
transaction survives the death of the process (SIGKILL included); after an OS
crash or power loss the last few transactions may roll back, the file stays
consistent.
"""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import json
import sqlite3
import threading
import time
from pathlib import Path
from typing import Any, Iterable, Iterator, Optional

PREDICTIONS = "predictions"
REWARDS = "rewards"
_BUSY_TIMEOUT_S = 5.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS outbox_by_destination ON outbox (destination, seq);
CREATE TABLE IF NOT EXISTS served (
    event_id TEXT PRIMARY KEY,
    served_at REAL NOT NULL,
    rewarded INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS served_by_time ON served (served_at);
"""


class RewardStatus(enum.Enum):
    """What `record_reward` did with a reward."""

    ACCEPTED = "accepted"
    UNKNOWN_EVENT = "unknown_event"
    DUPLICATE = "duplicate"


class DuplicateEventError(ValueError):
    """A prediction reused an event id that was already served."""


@dataclasses.dataclass(frozen=True)
class OutboxRecord:
    """One row waiting for BigQuery; `attempts` > 0 means it may already have landed."""

    seq: int
    destination: str
    event_id: str
    payload: dict[str, Any]
    attempts: int


class EventSpool:
    """Outbox and served-events registry in one SQLite file; thread-safe through one lock.

    One connection under a lock keeps check-then-write sequences (rewards) atomic
    within the process; BEGIN IMMEDIATE keeps them atomic across processes too.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(
            self.path, timeout=_BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
        )
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        # An automatic checkpoint would run (and sync the disk) inside a request's
        # commit every ~1000 pages; `checkpoint()` does it off the request path.
        self._conn.execute("PRAGMA wal_autocheckpoint=0")
        with self._transaction() as conn:
            _create_schema(conn)

    def checkpoint(self) -> None:
        """Copies the WAL into the database without blocking writers (PASSIVE).

        Called from the shipper thread on its own connection, so the disk sync
        it implies never delays a request that is spooling a prediction.
        """
        conn = sqlite3.connect(self.path, timeout=_BUSY_TIMEOUT_S)
        try:
            conn.execute("PRAGMA wal_checkpoint(PASSIVE)")
        finally:
            conn.close()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: committed on success, rolled back on any error.

        A failed COMMIT (disk full, I/O error) can leave SQLite's transaction
        open, and then every later BEGIN would fail until a restart; so the
        COMMIT is inside the try and the rollback runs whenever one is open.
        """
        with self._lock:
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield self._conn
                self._conn.execute("COMMIT")
            except BaseException:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise

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
            raise DuplicateEventError(f"an event id in this batch was already served: {exc}") from exc

    def record_reward(self, event_id: str, row: dict[str, Any]) -> RewardStatus:
        """Spools a reward if its event was served and not rewarded yet; `row` gets `event_id`."""
        payload = _dumps({**row, "event_id": event_id})
        with self._transaction() as conn:
            found = conn.execute("SELECT rewarded FROM served WHERE event_id = ?", (event_id,)).fetchone()
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
        query = "SELECT seq, destination, event_id, payload, attempts FROM outbox"
        params: tuple[Any, ...] = (limit,)
        if destination is not None:
            query += " WHERE destination = ?"
            params = (destination, limit)
        with self._lock:
            rows = self._conn.execute(query + " ORDER BY seq LIMIT ?", params).fetchall()
        return [
            OutboxRecord(seq, dest, event_id, json.loads(payload), attempts)
            for seq, dest, event_id, payload, attempts in rows
        ]

    def mark_attempted(self, seqs: Iterable[int]) -> None:
        """Records, before sending, that these rows may land: a later sender checks them first."""
        with self._transaction() as conn:
            conn.executemany("UPDATE outbox SET attempts = attempts + 1 WHERE seq = ?", [(s,) for s in seqs])

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

    def prune_served(self, older_than_seconds: float) -> int:
        """Forgets events served more than `older_than_seconds` ago; returns how many.

        Keeps the registry bounded. Consequence: a reward for a forgotten event is
        rejected as UNKNOWN_EVENT, so choose this longer than the reward window.
        """
        cutoff = time.time() - older_than_seconds
        with self._transaction() as conn:
            return conn.execute("DELETE FROM served WHERE served_at < ?", (cutoff,)).rowcount

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventSpool:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def _create_schema(conn: sqlite3.Connection) -> None:
    for statement in filter(str.strip, _SCHEMA.split(";")):
        conn.execute(statement)


def _dumps(row: dict[str, Any]) -> str:
    """Strict JSON: NaN and infinity would be refused by BigQuery on every retry, so refuse them now."""
    return json.dumps(row, allow_nan=False, separators=(",", ":"))
