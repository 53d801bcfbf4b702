"""What can be checked of the two images without a Docker engine.

The serving image's entry point is started here as the image would start it:
the Dockerfile's ENTRYPOINT with exactly its ENV values, plus what Vertex AI
adds at deployment (AIP_STORAGE_URI) and three local necessities (a free
port on loopback, a writable spool, and no BigQuery to ship logs to). It runs
once in the project's environment and once in an environment built from the
serving image's lock alone, with only the directories the image copies.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import List, Tuple

import numpy as np
import pytest

from tests.docker.dockerfiles import (
    arguments,
    copied,
    dockerfile,
    dockerfile_env,
    installed_lock,
    instructions,
    pins,
)
from tests.docker.pypi import pypi_unreachable_reason, uv_command
from tfx_pipeline.config import REPO_ROOT

DIM, ARMS = 20, 20
SERVING_UID = "10001"


def installed_packages() -> List[str]:
    """Top-level packages setup.py installs."""
    include = re.search(r"include=\[([^\]]*)\]", (REPO_ROOT / "setup.py").read_text()).group(1)
    return sorted(re.findall(r'"(\w+)\*"', include))


def run_steps(image: str) -> List[str]:
    """Every shell command of the image's RUN instructions, in build order."""
    return [
        step.strip()
        for rest in arguments(dockerfile(image), "RUN")
        for step in rest.split("&&")
    ]


def test_pipeline_image_installs_its_lock_and_the_project():
    path = dockerfile("pipeline")
    steps = run_steps("pipeline")
    assert "pip install --no-deps --requirement requirements/pipeline.lock" in steps
    assert "pip install --no-deps ." in steps
    assert set(copied(path)) == {"requirements/pipeline.lock", "setup.py", *installed_packages()}


def test_serving_image_holds_only_the_server_and_its_own_lock():
    path = dockerfile("serving")
    assert "pip install --no-deps --requirement requirements/serving.lock" in run_steps("serving")
    # The server needs only the bottom package and itself (tests/test_layers.py); setup.py
    # would declare the whole pipeline's dependencies, so the project is not pip-installed.
    assert set(copied(path)) == {"requirements/serving.lock", "bandit_core", "serving"}
    assert dockerfile_env(path, {"BQ_PROJECT": "p"})["PYTHONPATH"] == "/opt/mlbandits"
    assert arguments(path, "WORKDIR") == ["/opt/mlbandits"]
    assert "tfx" not in pins(installed_lock("serving"))


@pytest.mark.parametrize("image", ["pipeline", "serving"])
def test_build_context_is_exactly_what_the_dockerfile_copies(image):
    ignore = Path(f"{dockerfile(image)}.dockerignore").read_text().splitlines()
    assert ignore[1] == "*"
    assert {line[1:] for line in ignore if line.startswith("!")} == set(copied(dockerfile(image)))


@pytest.mark.parametrize("image", ["pipeline", "serving"])
def test_pip_check_runs_after_the_last_install(image):
    steps = run_steps(image)
    installs = [i for i, step in enumerate(steps) if step.startswith("pip install")]
    checks = [i for i, step in enumerate(steps) if step == "pip check"]
    assert installs and checks, f"{image}.Dockerfile must run `pip check` after installing"
    assert max(checks) > max(installs), (
        f"{image}.Dockerfile installs after its last `pip check`: {steps[max(installs)]!r}"
    )


def test_pipeline_image_matches_the_locked_python_and_beam():
    (base,) = arguments(dockerfile("pipeline"), "FROM")
    # Dataflow workers run this image, so its Beam SDK must be the launcher's.
    assert base == f"apache/beam_python3.10_sdk:{pins(installed_lock('pipeline'))['apache-beam']}"
    assert 'python_requires=">=3.10,<3.11"' in (REPO_ROOT / "setup.py").read_text()


def test_serving_image_runs_as_a_fixed_unprivileged_user():
    path = dockerfile("serving")
    keywords = [keyword for keyword, _ in instructions(path)]
    users = arguments(path, "USER")
    assert users, "serving.Dockerfile must end with a USER instruction (it would run as root)"
    assert users[-1] == f"{SERVING_UID}:{SERVING_UID}"  # numeric, so runAsNonRoot can verify it
    assert "RUN" not in keywords[keywords.index("USER") :], "RUN steps after USER lose root"
    env = dockerfile_env(path, {"BQ_PROJECT": "p"})
    spool_dir = os.path.dirname(env["MLBANDITS_SPOOL_PATH"])
    owned = [
        step
        for step in run_steps("serving")
        if re.fullmatch(rf"install -d -o {SERVING_UID} -g {SERVING_UID} -m 0700 {spool_dir}", step)
    ]
    assert owned, f"{spool_dir} (the spool's directory) must be created owned by {SERVING_UID}"
    assert env["HOME"] == spool_dir
    user_add = [step for step in run_steps("serving") if step.startswith("useradd")]
    assert user_add and f"--uid {SERVING_UID}" in user_add[0]


def test_serving_image_needs_the_bigquery_project_at_build_time():
    env = dockerfile_env(dockerfile("serving"), {"BQ_PROJECT": "my-proj"})
    assert env["MLBANDITS_BQ_PROJECT"] == "my-proj"
    assert env["MLBANDITS_BQ_DATASET"] == "mlbandits"
    assert "MLBANDITS_BQ_REST_ENDPOINT" not in env  # real BigQuery, not the emulator
    assert env["AIP_HTTP_PORT"] == "8080"
    assert arguments(dockerfile("serving"), "EXPOSE") == [env["AIP_HTTP_PORT"]]


@pytest.fixture(scope="module")
def policy_dir(tmp_path_factory) -> Path:
    """A LinUCB policy exported the way BanditTrainer exports one."""
    from tf_agents.policies import policy_saver

    from bandit_core.linear_statistics import arm_statistics
    from bandit_core.policy_metadata import (
        PolicyMetadata,
        write_policy_metadata,
    )
    from custom_components.bandit_trainer.agents import linucb_agent_from_statistics

    rng = np.random.default_rng(0)
    observations = rng.normal(size=(500, DIM))
    actions = rng.integers(0, ARMS, size=500)
    rewards = np.einsum("nd,nd->n", observations, rng.normal(size=(ARMS, DIM))[actions])
    agent = linucb_agent_from_statistics(
        arm_statistics(observations, actions, rewards, ARMS), alpha=1.0, tikhonov_weight=1.0
    )
    path = tmp_path_factory.mktemp("policy") / "v1"
    policy_saver.PolicySaver(agent.policy, batch_size=None).save(str(path))
    write_policy_metadata(str(path), PolicyMetadata("LinUCB", DIM, ARMS, 1.0, 1.0))
    return path


@pytest.fixture(scope="module")
def serving_lock_python(tmp_path_factory) -> str:
    """An interpreter with exactly requirements/serving.lock installed, as in the image."""
    venv = tmp_path_factory.mktemp("serving-lock") / "venv"
    uv = uv_command()
    subprocess.run([*uv, "venv", "--quiet", "--python", sys.executable, str(venv)], check=True)
    sync = [*uv, "pip", "sync", "--quiet", "--python", str(venv / "bin" / "python")]
    lock = str(installed_lock("serving"))
    if subprocess.run([*sync, "--offline", lock], capture_output=True).returncode != 0:
        reason = pypi_unreachable_reason()
        if reason:
            pytest.skip(f"the serving lock is not in uv's cache and {reason}")
        done = subprocess.run([*sync, lock], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
    return str(venv / "bin" / "python")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(url: str, body: dict = None) -> Tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}")


@pytest.mark.parametrize("environment", ["project venv", "serving lock only"])
def test_serving_entry_point_runs_with_the_images_environment(
    policy_dir, tmp_path, request, environment
):
    path = dockerfile("serving")
    python = (
        sys.executable
        if environment == "project venv"
        else request.getfixturevalue("serving_lock_python")
    )
    # The image's /opt/mlbandits: only what the Dockerfile copies of the project.
    app = tmp_path / "app"
    for source in copied(path):
        if (REPO_ROOT / source).is_dir():
            shutil.copytree(
                REPO_ROOT / source, app / source, ignore=shutil.ignore_patterns("__pycache__")
            )
    (entrypoint,) = [json.loads(rest) for rest in arguments(path, "ENTRYPOINT")]
    assert entrypoint[0] == "python"
    env = {
        "PATH": os.environ["PATH"],
        **dockerfile_env(path, {"BQ_PROJECT": "my-proj"}),
        "PYTHONPATH": str(app),
        "HOME": str(tmp_path),
        "AIP_STORAGE_URI": str(policy_dir),
        "AIP_HTTP_PORT": str(free_port()),
        "MLBANDITS_HOST": "127.0.0.1",
        "MLBANDITS_SPOOL_PATH": str(tmp_path / "spool.sqlite"),
        "MLBANDITS_SHIP_LOGS": "false",
    }
    base = f"http://127.0.0.1:{env['AIP_HTTP_PORT']}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [python, *entrypoint[1:]],
        env=env,
        cwd=tmp_path,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 90
        status = None
        while status != 200:
            assert server.poll() is None, (tmp_path / "server.log").read_text()
            assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
            time.sleep(0.5)
            try:
                status, health = call(base + env["AIP_HEALTH_ROUTE"])
            except (ConnectionError, urllib.error.URLError):
                continue
        assert health["status"] == "ok"
        instances = [{"observation": [0.1] * DIM, "user_id": 7}]
        status, body = call(base + env["AIP_PREDICT_ROUTE"], {"instances": instances})
        assert status == 200, body
        assert 0 <= body["predictions"][0]["action"] < ARMS
    finally:
        server.terminate()
        server.wait(timeout=30)
        log.close()
