"""serving.event_spool and its maintenance: transactions, size cap, WAL and registry bounds."""

import sqlite3
import threading
import time

import pytest

from serving.event_spool import WAL_SIZE_LIMIT_BYTES, EventSpool, RewardStatus, SpoolFullError
from serving.spool_maintenance import SpoolMaintenance


def _row(event_id: str) -> dict:
    return {"event_id": event_id, "action": 1}


def test_a_refused_commit_rolls_back_and_the_spool_keeps_working(tmp_path):
    """A COMMIT that fails leaves SQLite's transaction open unless it is rolled back.

    A deferred foreign key makes COMMIT itself fail, as a full disk or an I/O
    error at commit time would; the next write must still start.
    """
    spool = EventSpool(tmp_path / "spool.sqlite")
    spool._conn.execute("PRAGMA foreign_keys=ON")
    with spool._transaction() as conn:
        conn.execute("CREATE TABLE parent (id INTEGER PRIMARY KEY)")
        conn.execute(
            "CREATE TABLE child (parent INTEGER REFERENCES parent (id) "
            "DEFERRABLE INITIALLY DEFERRED)"
        )
    with pytest.raises(sqlite3.IntegrityError, match="FOREIGN KEY"):
        with spool._transaction() as conn:
            conn.execute("INSERT INTO child VALUES (1)")
            conn.execute(
                "INSERT INTO outbox (destination, event_id, payload) VALUES ('p', 'lost', '{}')"
            )

    spool.append_predictions([_row("after")])
    assert [r.event_id for r in spool.peek(10)] == ["after"]
    spool.close()


def _wal_bytes(spool: EventSpool) -> int:
    wal = spool.path.with_name(spool.path.name + "-wal")
    return wal.stat().st_size if wal.exists() else 0


def test_a_spool_at_its_cap_refuses_writes_by_name_and_recovers_when_rows_leave(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite", max_bytes=64 * 1024)
    written = 0
    with pytest.raises(SpoolFullError) as full:
        while written < 10_000:
            spool.append_predictions([{**_row(f"e{written}"), "observation": [0.5] * 20}])
            written += 1
    message = str(full.value)
    assert "is full (its cap of 0.0625 MB)" in message and "MLBANDITS_SPOOL_MAX_MB" in message
    assert 0 < written < 10_000 and spool.pending_count() == written, "the refused row is not kept"

    spool.remove(record.seq for record in spool.peek(50))
    spool.append_predictions([_row("after")])
    assert spool.peek(1, "predictions") and spool.pending_count() == written - 50 + 1
    spool.close()


def test_maintenance_keeps_the_wal_bounded_without_any_shipper(tmp_path):
    """About 20 KB of WAL per single-row commit stays on disk unless something checkpoints."""
    spool = EventSpool(tmp_path / "spool.sqlite")
    maintenance = SpoolMaintenance(spool, checkpoint_interval_s=0.05).start()
    try:
        for i in range(1000):
            spool.append_predictions([{**_row(f"e{i}"), "observation": [0.5] * 20}])
        grown = _wal_bytes(spool)
        deadline = time.monotonic() + 10
        while _wal_bytes(spool) > WAL_SIZE_LIMIT_BYTES:
            assert time.monotonic() < deadline, f"the WAL stayed at {_wal_bytes(spool)} bytes"
            spool.append_predictions([_row(f"later-{time.monotonic_ns()}")])
            time.sleep(0.05)
    finally:
        maintenance.stop()
    assert grown > WAL_SIZE_LIMIT_BYTES, "the test must write more WAL than the limit"
    spool.close()


def test_maintenance_forgets_events_older_than_the_reward_window(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    spool.append_predictions([_row("old-0"), _row("old-1")])
    time.sleep(0.3)  # the events must be older than the window, not a wait for a result
    maintenance = SpoolMaintenance(spool, reward_window_s=0.2, checkpoint_interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 5
        while spool.record_reward("old-0", {"reward": 1.0}) is not RewardStatus.UNKNOWN_EVENT:
            assert time.monotonic() < deadline, "the served registry was never pruned"
            time.sleep(0.05)
    finally:
        maintenance.stop()
    spool.close()


def test_requests_are_answered_while_a_large_prune_runs(tmp_path):
    """Each request sees the prune part-way: it waited for a chunk, not for the whole prune."""
    old = 30_000
    spool = EventSpool(tmp_path / "spool.sqlite")
    with spool._transaction() as conn:
        conn.executemany(
            "INSERT INTO served (event_id, served_at) VALUES (?, 0)",
            ((f"old-{i}",) for i in range(old)),
        )
    reader = sqlite3.connect(spool.path)
    pruned = []
    prune = threading.Thread(target=lambda: pruned.append(spool.prune_served(3600, chunk_rows=500)))
    prune.start()
    left_after_each_request = []
    request = 0
    while prune.is_alive():
        spool.append_predictions([_row(f"request-{request}")])
        request += 1
        left_after_each_request.append(
            reader.execute("SELECT COUNT(*) FROM served WHERE served_at = 0").fetchone()[0]
        )
    prune.join()
    assert pruned == [old]
    assert any(0 < left < old for left in left_after_each_request), left_after_each_request
    assert reader.execute("SELECT COUNT(*) FROM served").fetchone()[0] == request
    reader.close()
    spool.close()
