#!/usr/bin/env bash
# The whole test suite from a fresh clone; the tests start the emulator they need.
# Two pytest-xdist workers, each taking whole test files, so a module's fixture
# (an emulator, a trained run) is built once; `-n 0` after it runs in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest -n 2 --dist loadfile "$@"
