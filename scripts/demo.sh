#!/usr/bin/env bash
# The whole demo from a fresh clone: environments, data, emulator, the DAG, a summary.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/mlbandits demo "$@"
