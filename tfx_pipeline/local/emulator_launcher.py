"""Start bqemulator offline; run by the emulator venv's Python 3.11, never imported.

bqemulator refuses to start when DuckDB's `spatial` extension cannot be
downloaded, which is always the case offline. Making that load best-effort
costs only GEOGRAPHY support, which this project does not use.

Usage: python emulator_launcher.py start --rest-port P --grpc-port G ...
"""

import functools
import sys

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


if __name__ == "__main__":
    DuckDBEngine._load_spatial = _best_effort(DuckDBEngine._load_spatial)
    main(args=sys.argv[1:], prog_name="bqemulator")
