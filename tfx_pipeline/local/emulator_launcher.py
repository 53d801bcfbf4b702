"""Start bqemulator offline; run by the emulator venv's Python 3.11, never imported.

bqemulator refuses to start when DuckDB's `spatial` extension cannot be
downloaded, which is always the case offline. Making that load best-effort
costs only GEOGRAPHY support, which this project does not use.

bqemulator also runs every statement on one DuckDB connection, from the REST
event loop and from the gRPC (Storage Read/Write) worker threads alike. A
DuckDB connection holds one pending result, so a statement on one thread can
replace another thread's result before it is fetched: a REST query was seen
answering with the `Count` column of a concurrent AppendRows' INSERT. Giving
each thread its own cursor (DuckDB's connection duplicate, which shares the
database, its tables and its functions) keeps every result with its statement.

For time travel (`FOR SYSTEM_TIME AS OF`), bqemulator copies the whole table
into a new snapshot table after every write, kept for 7 days. Under a stream of
small inserts that is quadratic: in the soak, six minutes of serving logs grew
its database and memory to 7 GB. The project never reads through time travel,
so automatic snapshots are skipped; `CREATE SNAPSHOT TABLE` still works.

Usage: python emulator_launcher.py start --rest-port P --grpc-port G ...
"""

import functools
import sys
import threading

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine
from bqemulator.versioning.snapshots import SnapshotManager


def _best_effort(load_spatial):
    """Wrap the spatial loader so that its failure is logged, not fatal."""

    @functools.wraps(load_spatial)
    def wrapper(self):
        try:
            load_spatial(self)
        except Exception as exc:  # noqa: BLE001 - any failure only loses GEOGRAPHY
            print(f"spatial extension unavailable, GEOGRAPHY disabled: {exc}", file=sys.stderr)

    return wrapper


def _user_snapshots_only(capture):
    """Wrap SnapshotManager.capture so that the copy after every write (kind AUTO) is skipped."""

    @functools.wraps(capture)
    def wrapper(self, project_id, dataset_id, table_id, *, kind="AUTO"):
        if kind == "AUTO":
            return None  # what capture answers for a table it cannot snapshot
        return capture(self, project_id, dataset_id, table_id, kind=kind)

    return wrapper


def _per_thread(shared_connection: property) -> property:
    """The engine's connection property, answering each thread with a cursor of its own."""
    cursors = threading.local()

    def connection(self):
        shared = shared_connection.fget(self)
        if getattr(cursors, "shared", None) is not shared:  # first use, or a restarted engine
            cursor = shared.cursor()
            cursor.execute("SET TimeZone = 'UTC'")  # what the engine sets on its connection
            cursors.shared, cursors.cursor = shared, cursor
        return cursors.cursor

    return property(connection, doc=shared_connection.__doc__)


if __name__ == "__main__":
    DuckDBEngine._load_spatial = _best_effort(DuckDBEngine._load_spatial)
    DuckDBEngine.connection = _per_thread(DuckDBEngine.connection)
    SnapshotManager.capture = _user_snapshots_only(SnapshotManager.capture)
    main(args=sys.argv[1:], prog_name="bqemulator")
