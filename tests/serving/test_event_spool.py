"""Tests for serving.event_spool's transactions when SQLite refuses a COMMIT."""

import sqlite3

import pytest

from serving.event_spool import EventSpool


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
