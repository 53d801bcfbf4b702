"""serving.event_spool and its maintenance: transactions, size cap, WAL and registry bounds,
write-stream assignments and the migration of older spool files."""

import sqlite3
import threading
import time
from typing import Iterable, Tuple

import pytest

from serving.event_spool import (
    PREDICTIONS,
    REWARDS,
    WAL_SIZE_LIMIT_BYTES,
    EventSpool,
    RewardStatus,
    SpoolFullError,
    WriteStreamPosition,
)
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
    for i in range(1000):
        spool.append_predictions([{**_row(f"e{i}"), "observation": [0.5] * 20}])
    grown = _wal_bytes(spool)
    maintenance = SpoolMaintenance(spool, checkpoint_interval_s=0.05).start()
    try:
        deadline = time.monotonic() + 10
        while _wal_bytes(spool) > WAL_SIZE_LIMIT_BYTES:
            assert time.monotonic() < deadline, f"the WAL stayed at {_wal_bytes(spool)} bytes"
            spool.append_predictions([_row(f"later-{time.monotonic_ns()}")])
            time.sleep(0.05)
    finally:
        maintenance.stop()
    assert grown > WAL_SIZE_LIMIT_BYTES, "the test must write more WAL than the limit"
    spool.close()


def test_a_checkpoint_truncates_a_wal_that_outgrew_its_bound_under_steady_writes(tmp_path):
    """A PASSIVE checkpoint never resets a WAL that writers never leave idle; past the bound
    the checkpoint waits for them once and truncates it."""
    spool = EventSpool(tmp_path / "spool.sqlite")
    for i in range(300):
        spool.append_predictions([{**_row(f"e{i}"), "observation": [0.5] * 20}])
    before = spool.wal_bytes()
    writing = threading.Event()
    stop = threading.Event()

    def write_steadily() -> None:
        n = 0
        while not stop.is_set():
            spool.append_predictions([_row(f"steady-{n}")])
            writing.set()
            n += 1

    writer = threading.Thread(target=write_steadily)
    writer.start()
    try:
        assert writing.wait(10)
        spool.checkpoint(truncate_at_bytes=1024 * 1024)
        after = spool.wal_bytes()
    finally:
        stop.set()
        writer.join()
    assert before > 2 * 1024 * 1024, "the test must grow the WAL past the bound first"
    assert after < 1024 * 1024, f"the WAL kept {after} bytes"
    spool.close()


def test_a_checkpoint_under_steady_writes_lets_the_wal_start_over(tmp_path):
    """A lone PASSIVE pass never catches up with a steady writer, so the WAL never restarted
    and only a truncation, holding writers back, could shrink it; now it restarts on its own."""
    spool = EventSpool(tmp_path / "spool.sqlite")
    for i in range(300):
        spool.append_predictions([{**_row(f"e{i}"), "observation": [0.5] * 20}])
    before = spool.wal_bytes()
    written = []
    stop = threading.Event()

    def write_steadily() -> None:
        while not stop.is_set():
            spool.append_predictions([_row(f"steady-{len(written)}")])
            written.append(1)

    writer = threading.Thread(target=write_steadily)
    writer.start()
    try:
        deadline = time.monotonic() + 10
        while len(written) < 20:
            assert time.monotonic() < deadline, "the writer did not start"
            time.sleep(0.001)
        spool.checkpoint(truncate_at_bytes=2**62)
        after_checkpoint = len(written)
        while len(written) < after_checkpoint + 20:
            assert time.monotonic() < deadline, "the writer stopped"
            time.sleep(0.001)
    finally:
        stop.set()
        writer.join()
    assert before > WAL_SIZE_LIMIT_BYTES, "the test must grow the WAL past the limit first"
    assert spool.wal_bytes() <= WAL_SIZE_LIMIT_BYTES, f"the WAL kept {spool.wal_bytes()} bytes"
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


def _register(spool: EventSpool, served: Iterable[Tuple[str, float]]) -> None:
    """Registers (event id, served_at) pairs as served, without outbox rows."""
    with spool._transaction() as conn:
        conn.executemany("INSERT INTO served (event_id, served_at) VALUES (?, ?)", served)


def test_the_served_cutoff_keeps_exactly_the_newest_events(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    _register(spool, ((f"at-{t}", t) for t in map(float, range(1, 11))))
    assert spool.served_cutoff(keep_newest=10) is None, "no more than 10 are registered"
    assert spool.prune_served(spool.served_cutoff(keep_newest=3)) == 7
    assert spool.record_reward("at-7.0", {"reward": 1.0}) is RewardStatus.UNKNOWN_EVENT
    assert spool.record_reward("at-8.0", {"reward": 1.0}) is RewardStatus.ACCEPTED
    assert spool.prune_served(spool.served_cutoff(keep_newest=0)) == 3
    with pytest.raises(ValueError, match="keep_newest must be >= 0"):
        spool.served_cutoff(keep_newest=-1)
    spool.close()


def test_used_bytes_count_the_pages_in_use_not_the_file(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    empty = spool.used_bytes()
    spool.append_predictions([{**_row(f"e{i}"), "observation": [0.5] * 20} for i in range(500)])
    full = spool.used_bytes()
    spool.remove(record.seq for record in spool.peek(500))
    assert empty < spool.used_bytes() < full, (empty, spool.used_bytes(), full)
    spool.close()


def test_a_capped_spool_forgets_its_oldest_served_events_instead_of_refusing_predictions(
    tmp_path, caplog
):
    """The registry grows with rate x reward window (32 GB for 500 req/s over 7 days); once a
    capped spool is full of it, predictions were refused even though every row was shipped."""

    def serve_and_ship(spool: EventSpool, count: int, maintenance=None) -> None:
        for i in range(count):
            spool.append_predictions([_row(f"e{i}")])
            spool.remove(record.seq for record in spool.peek(1))
            if maintenance is not None and i % 200 == 199:
                maintenance.prune()

    cap = 256 * 1024
    unmaintained = EventSpool(tmp_path / "unmaintained.sqlite", max_bytes=cap)
    with pytest.raises(SpoolFullError):
        serve_and_ship(unmaintained, 20_000)
    unmaintained.close()

    spool = EventSpool(tmp_path / "spool.sqlite", max_bytes=cap)
    maintenance = SpoolMaintenance(spool)
    assert maintenance.served_budget == cap // 2 // 128
    serve_and_ship(spool, 20_000, maintenance)
    maintenance.prune()
    assert spool.record_reward("e19999", {"reward": 1.0}) is RewardStatus.ACCEPTED
    assert spool.record_reward("e0", {"reward": 1.0}) is RewardStatus.UNKNOWN_EVENT
    registered = spool._conn.execute("SELECT COUNT(*) FROM served").fetchone()[0]
    assert registered <= maintenance.served_budget
    assert any("reached its budget" in r.getMessage() for r in caplog.records), caplog.text
    spool.close()


def test_requests_are_answered_while_a_large_prune_runs(tmp_path):
    """Each request sees the prune part-way: it waited for a chunk, not for the whole prune."""
    old = 30_000
    spool = EventSpool(tmp_path / "spool.sqlite")
    _register(spool, ((f"old-{i}", 0.0) for i in range(old)))
    reader = sqlite3.connect(spool.path)
    pruned = []
    cutoff = time.time() - 3600
    prune = threading.Thread(target=lambda: pruned.append(spool.prune_served(cutoff, 500)))
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


def _stream_of(spool: EventSpool, seqs: list) -> set:
    return {(r.stream_name, r.stream_offset) for r in spool.peek(1000) if r.seq in seqs}


def test_batches_get_consecutive_offsets_of_their_destinations_stream(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    spool.append_predictions([_row(f"e{i}") for i in range(5)])
    assert spool.write_stream(PREDICTIONS) is None
    spool.open_write_stream(PREDICTIONS, "streams/p1")

    first = spool.assign_to_stream(PREDICTIONS, [r.seq for r in spool.next_batch(3, PREDICTIONS)])

    assert [(r.event_id, r.stream_name, r.stream_offset, r.attempts) for r in first] == [
        (f"e{i}", "streams/p1", 0, 1) for i in range(3)
    ]
    assert spool.write_stream(PREDICTIONS) == WriteStreamPosition("streams/p1", 3)
    assert spool.next_batch(2, PREDICTIONS) == first, "an assigned batch comes back whole"
    spool.remove(r.seq for r in first)
    second = spool.next_batch(10, PREDICTIONS)
    assert [r.event_id for r in second] == ["e3", "e4"] and second[0].stream_name is None
    second = spool.assign_to_stream(PREDICTIONS, [r.seq for r in second])
    assert {r.stream_offset for r in second} == {3}
    assert spool.write_stream(PREDICTIONS).next_offset == 5
    spool.close()


def test_a_reopened_spool_has_the_stream_and_the_assigned_batch(tmp_path):
    with EventSpool(tmp_path / "spool.sqlite") as spool:
        spool.append_predictions([_row("a"), _row("b")])
        spool.open_write_stream(PREDICTIONS, "streams/p1")
        assigned = spool.assign_to_stream(PREDICTIONS, [r.seq for r in spool.peek(10)])
    with EventSpool(tmp_path / "spool.sqlite") as reopened:
        assert reopened.write_stream(PREDICTIONS) == WriteStreamPosition("streams/p1", 2)
        assert reopened.next_batch(1, PREDICTIONS) == assigned


def test_a_retired_stream_leaves_its_rows_attempted_and_unassigned(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    spool.append_predictions([_row("a"), _row("b")])
    spool.record_reward("a", {"reward": 1.0})
    spool.open_write_stream(PREDICTIONS, "streams/p1")
    spool.open_write_stream(REWARDS, "streams/r1")
    spool.assign_to_stream(PREDICTIONS, [r.seq for r in spool.next_batch(10, PREDICTIONS)])
    spool.assign_to_stream(REWARDS, [r.seq for r in spool.next_batch(10, REWARDS)])

    spool.retire_write_stream(PREDICTIONS, "streams/p1")

    assert spool.write_stream(PREDICTIONS) is None
    assert [(r.attempts, r.stream_name) for r in spool.next_batch(10, PREDICTIONS)] == [
        (1, None),
        (1, None),
    ]
    assert spool.next_batch(10, REWARDS)[0].stream_name == "streams/r1", "other streams stay"
    spool.close()


def test_assigning_without_an_open_stream_says_what_to_do(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    spool.append_predictions([_row("a")])
    with pytest.raises(LookupError, match="^no write stream is open for predictions; open one"):
        spool.assign_to_stream(PREDICTIONS, [spool.peek(1)[0].seq])
    assert spool.peek(1)[0].attempts == 0, "nothing changed"
    spool.close()


def test_an_insert_all_attempt_drops_the_stream_assignment(tmp_path):
    spool = EventSpool(tmp_path / "spool.sqlite")
    spool.append_predictions([_row("a")])
    spool.open_write_stream(PREDICTIONS, "streams/p1")
    seqs = [r.seq for r in spool.assign_to_stream(PREDICTIONS, [spool.peek(1)[0].seq])]
    spool.mark_attempted(seqs)
    assert [(r.attempts, r.stream_name, r.stream_offset) for r in spool.peek(1)] == [
        (2, None, None)
    ]
    spool.close()


# The outbox as spools were created before write streams.
_OLD_SCHEMA = """
CREATE TABLE outbox (
    seq INTEGER PRIMARY KEY,
    destination TEXT NOT NULL,
    event_id TEXT NOT NULL,
    payload TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX outbox_by_destination ON outbox (destination, seq);
CREATE TABLE served (
    event_id TEXT PRIMARY KEY,
    served_at REAL NOT NULL,
    rewarded INTEGER NOT NULL DEFAULT 0
) WITHOUT ROWID;
CREATE INDEX served_by_time ON served (served_at);
INSERT INTO outbox (destination, event_id, payload, attempts)
    VALUES ('predictions', 'old', '{"event_id": "old"}', 1);
INSERT INTO served (event_id, served_at) VALUES ('old', 0);
"""


def test_a_spool_file_of_an_older_version_gets_the_stream_columns(tmp_path):
    path = tmp_path / "spool.sqlite"
    with sqlite3.connect(path) as old:
        old.executescript(_OLD_SCHEMA)

    for _ in range(2):  # opening again finds the columns there
        with EventSpool(path) as spool:
            assert [(r.event_id, r.attempts, r.stream_name) for r in spool.peek(10)] == [
                ("old", 1, None)
            ]
    with EventSpool(path) as spool:
        spool.open_write_stream(PREDICTIONS, "streams/p1")
        assigned = spool.assign_to_stream(PREDICTIONS, [spool.peek(1)[0].seq])
        assert [(r.event_id, r.attempts, r.stream_offset) for r in assigned] == [("old", 2, 0)]
        assert spool.record_reward("old", {"reward": 1.0}) is RewardStatus.ACCEPTED
