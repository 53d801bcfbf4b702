"""`scripts/bootstrap.sh` says when a venv is older than its lock, and what to do if a build fails.

The script runs for real in a copy of the repository's layout whose lock
names a package no index has; uv runs offline (UV_OFFLINE), so it fails at
once without touching the network, as it would on a machine cut off from
the package index.
"""

import os
import pathlib
import shutil
import subprocess
import sys

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
UV = REPO / ".tools" / "bin" / "uv"


@pytest.fixture
def checkout(tmp_path) -> pathlib.Path:
    if not (UV.exists() or shutil.which("uv")):
        pytest.skip("no uv here: scripts/bootstrap.sh would install it from PyPI")
    (tmp_path / "scripts").mkdir()
    shutil.copy(REPO / "scripts" / "bootstrap.sh", tmp_path / "scripts")
    (tmp_path / "requirements").mkdir()
    for lock in ("emulator.lock", "pipeline.lock"):
        (tmp_path / "requirements" / lock).write_text("no-such-package-mlbandits==1.0\n")
    (tmp_path / "setup.py").write_text("# the project\n")
    return tmp_path


def _bootstrap(checkout: pathlib.Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "UV_OFFLINE": "1", "PATH": f"{UV.parent}:{os.environ['PATH']}"}
    return subprocess.run(
        ["bash", "scripts/bootstrap.sh"], cwd=checkout, env=env, capture_output=True, text=True,
        timeout=120,
    )


def test_a_venv_older_than_its_lock_is_updated_and_a_failed_update_says_what_to_do(checkout):
    venv = checkout / ".venv-emulator"
    subprocess.run(
        [str(UV if UV.exists() else "uv"), "venv", "--quiet", "--python", sys.executable,
         str(venv)],
        check=True,
    )
    (venv / ".lock.sha256").write_text("built from an older lock\n")
    result = _bootstrap(checkout)
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert lines[0] == (
        "bootstrap: requirements/emulator.lock or setup.py changed since .venv-emulator was "
        "built; updating .venv-emulator"
    )
    assert "no-such-package-mlbandits" in result.stderr, "uv's own error is shown"
    assert lines[-1] == (
        "bootstrap: could not build .venv-emulator from requirements/emulator.lock (the error "
        "above). If the package index is unreachable, fix the network or proxy (HTTPS_PROXY, "
        "UV_INDEX_URL) and rerun `bash scripts/bootstrap.sh`; to start .venv-emulator over, "
        "`rm -rf .venv-emulator` first."
    )
    assert (venv / ".lock.sha256").read_text() == "built from an older lock\n", (
        "a failed update must leave the venv marked stale"
    )


def test_a_first_build_says_it_is_building(checkout):
    result = _bootstrap(checkout)
    assert result.returncode == 1
    assert result.stderr.startswith(
        "bootstrap: building .venv-emulator from requirements/emulator.lock"
    )
    assert "rm -rf .venv-emulator" in result.stderr.strip().splitlines()[-1]
