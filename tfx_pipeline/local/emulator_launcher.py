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

Usage: python emulator_launcher.py start --rest-port P --grpc-port G ...
"""

import functools
import sys
import threading

from bqemulator.cli import main
from bqemulator.storage.engine import DuckDBEngine


def _best_effort(load_spatial):
    """Wrap the spatial loader so that its failure is logged, not fatal."""

    @functools.wraps(load_spatial)
    def wrapper(self):
        try:
            load_spatial(self)
        except Exception as exc:  # noqa: BLE001 - any failure only loses GEOGRAPHY
            print(f"spatial extension unavailable, GEOGRAPHY disabled: {exc}", file=sys.stderr)

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
    main(args=sys.argv[1:], prog_name="bqemulator")
