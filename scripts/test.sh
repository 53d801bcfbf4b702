#!/usr/bin/env bash
# The whole test suite from a fresh clone; the tests start the emulator they need.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/python -m pytest "$@"
