"""The per-arm serving benchmark refuses flags it cannot honour before it starts anything."""

import os
import pathlib
import subprocess
import sys

SCRIPT = pathlib.Path(__file__).resolve().parents[2] / "benchmarks" / "per_arm_serving.py"


def _run(*flags: str, env: dict = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(SCRIPT), *flags],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


def test_pinning_the_server_to_a_cpu_the_machine_lacks_says_which_it_has():
    done = _run("--pin-server", "4096")
    assert done.returncode == 2
    assert "--pin-server 4096: needs one of this machine's CPUs" in done.stderr
    assert str(sorted(os.sched_getaffinity(0))) in done.stderr


def test_pinning_the_only_cpu_leaves_none_for_the_load_generator():
    only = min(os.sched_getaffinity(0))
    done = subprocess.run(
        ["taskset", "-c", str(only), sys.executable, str(SCRIPT), "--pin-server", str(only)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2
    assert "at least one other left for the rest" in done.stderr


def test_wrk_as_client_without_wrk_installed_says_how_to_get_it(tmp_path):
    done = _run("--client", "wrk", env={"PATH": str(tmp_path)})
    assert done.returncode == 2
    assert "wrk is not installed; `apt-get install wrk` or --client python" in done.stderr


def test_measuring_the_target_no_times_is_refused():
    done = _run("--target-runs", "0")
    assert done.returncode == 2
    assert "--target-runs 0: measure the target at least once (1)" in done.stderr
