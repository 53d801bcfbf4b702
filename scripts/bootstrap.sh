#!/usr/bin/env bash
# Creates (or refreshes) both locked environments and installs the project.
#   .venv          Python 3.10: TFX 1.15, TF 2.15, TF-Agents 0.19 (requirements/pipeline.lock)
#   .venv-emulator Python 3.11: the bqemulator BigQuery emulator (requirements/emulator.lock)
# Idempotent and quick when nothing changed: a stamp per venv records the lock it was built from.
set -euo pipefail
cd "$(dirname "$0")/.."

find_python() {
  local version=$1
  for candidate in "python$version" "$HOME/.pyenv/versions/$version"*/bin/python"$version" \
                   /usr/bin/python"$version" /usr/local/bin/python"$version"; do
    if command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import sys' >/dev/null 2>&1; then
      command -v "$candidate"
      return 0
    fi
  done
  echo "bootstrap: python$version not found; install it (e.g. pyenv install $version) and retry" >&2
  return 1
}

ensure_uv() {
  if command -v uv >/dev/null 2>&1; then command -v uv; return 0; fi
  if [ ! -x .tools/bin/uv ]; then
    local py; py=$(find_python 3.11 || find_python 3.10)
    "$py" -m venv .tools >&2
    # -qq: warnings about unreachable indexes in a machine-wide pip.conf are not ours;
    # a failure still prints its error.
    .tools/bin/pip install -qq uv >&2 || {
      echo "bootstrap: could not install uv into .tools (the error above): check access to" \
           "PyPI, or install uv yourself and rerun \`bash scripts/bootstrap.sh\`" >&2
      return 1
    }
  fi
  echo "$PWD/.tools/bin/uv"
}

# Says what failed and what to run next, then stops; uv's own error is printed above it.
cannot_build() {
  local venv=$1 lock=$2
  echo "bootstrap: could not build $venv from $lock (the error above). If the package index" \
       "is unreachable, fix the network or proxy (HTTPS_PROXY, UV_INDEX_URL) and rerun" \
       "\`bash scripts/bootstrap.sh\`; to start $venv over, \`rm -rf $venv\` first." >&2
  exit 1
}

sync_venv() {
  local venv=$1 python=$2 lock=$3 stamp
  stamp="$venv/.lock.sha256"
  if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$(sha256sum "$lock" setup.py | sha256sum)" ]; then
    return 0
  fi
  if [ -f "$stamp" ]; then
    echo "bootstrap: $lock or setup.py changed since $venv was built; updating $venv" >&2
  else
    echo "bootstrap: building $venv from $lock (a few minutes the first time)" >&2
  fi
  [ -x "$venv/bin/python" ] || "$UV" venv --quiet --python "$python" "$venv" \
    || cannot_build "$venv" "$lock"
  "$UV" pip sync --quiet --python "$venv/bin/python" "$lock" || cannot_build "$venv" "$lock"
  sha256sum "$lock" setup.py | sha256sum > "$stamp"
}

UV=$(ensure_uv)
sync_venv .venv-emulator "$(find_python 3.11)" requirements/emulator.lock
sync_venv .venv "$(find_python 3.10)" requirements/pipeline.lock
if ! .venv/bin/python -c 'import tfx_pipeline' >/dev/null 2>&1 || [ ! -x .venv/bin/mlbandits ]; then
  "$UV" pip install --quiet --python .venv/bin/python --no-deps -e . \
    || cannot_build .venv "the project (setup.py)"
fi
