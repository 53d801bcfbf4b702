"""What can be checked of the two images without a Docker engine.

The serving image's entry point is started here as the image would start it:
the Dockerfile's ENTRYPOINT with exactly its ENV values, plus what Vertex AI
adds at deployment (AIP_STORAGE_URI) and three local necessities (a free
port on loopback, a writable spool, and no BigQuery to ship logs to).
"""

import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np
import pytest

from tfx_pipeline.config import REPO_ROOT

DOCKER = REPO_ROOT / "docker"
IMAGES = ("pipeline", "serving")
DIM, ARMS = 20, 20


def instructions(dockerfile: Path) -> List[Tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    pairs = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            keyword, _, rest = line.partition(" ")
            pairs.append((keyword.upper(), rest.strip()))
    return pairs


def dockerfile_env(dockerfile: Path, build_args: Dict[str, str]) -> Dict[str, str]:
    """The image's ENV, with ${ARG} references expanded as `docker build` would."""
    args: Dict[str, str] = {}
    env: Dict[str, str] = {}
    for keyword, rest in instructions(dockerfile):
        if keyword == "ARG":
            name, _, default = rest.partition("=")
            args[name] = build_args.get(name, default)
        elif keyword == "ENV":
            for pair in shlex.split(rest):
                name, _, value = pair.partition("=")
                env[name] = re.sub(r"\$\{(\w+)\}", lambda m: {**args, **env}[m.group(1)], value)
    return env


def arguments(dockerfile: Path, keyword: str) -> List[str]:
    return [rest for word, rest in instructions(dockerfile) if word == keyword]


def copied(dockerfile: Path) -> List[str]:
    return [rest.split()[0] for rest in arguments(dockerfile, "COPY")]


def installed_packages() -> List[str]:
    """Top-level packages setup.py installs."""
    include = re.search(r"include=\[([^\]]*)\]", (REPO_ROOT / "setup.py").read_text()).group(1)
    return sorted(re.findall(r'"(\w+)\*"', include))


def locked_version(package: str) -> str:
    lock = (REPO_ROOT / "requirements" / "pipeline.lock").read_text()
    return re.search(rf"^{package}==(\S+)$", lock, re.MULTILINE).group(1)


@pytest.mark.parametrize("image", IMAGES)
def test_images_install_the_project_from_the_lock(image):
    dockerfile = DOCKER / f"{image}.Dockerfile"
    runs = " ".join(arguments(dockerfile, "RUN"))
    assert "pip install --no-deps --requirement requirements/pipeline.lock" in runs
    assert "pip install --no-deps ." in runs
    # The server needs only the bottom package and itself; pipeline steps need all.
    packages = {"bandit_core", "serving"} if image == "serving" else set(installed_packages())
    assert set(copied(dockerfile)) == {"requirements/pipeline.lock", "setup.py", *packages}
    ignore = (DOCKER / f"{image}.Dockerfile.dockerignore").read_text().splitlines()
    assert ignore[1] == "*"
    assert {line[1:] for line in ignore if line.startswith("!")} == set(copied(dockerfile))


def test_pipeline_image_matches_the_locked_python_and_beam():
    (base,) = arguments(DOCKER / "pipeline.Dockerfile", "FROM")
    # Dataflow workers run this image, so its Beam SDK must be the launcher's.
    assert base == f"apache/beam_python3.10_sdk:{locked_version('apache-beam')}"
    assert 'python_requires=">=3.10,<3.11"' in (REPO_ROOT / "setup.py").read_text()


def test_serving_image_needs_the_bigquery_project_at_build_time():
    env = dockerfile_env(DOCKER / "serving.Dockerfile", {"BQ_PROJECT": "my-proj"})
    assert env["MLBANDITS_BQ_PROJECT"] == "my-proj"
    assert env["MLBANDITS_BQ_DATASET"] == "mlbandits"
    assert "MLBANDITS_BQ_REST_ENDPOINT" not in env  # real BigQuery, not the emulator
    assert env["AIP_HTTP_PORT"] == "8080"
    assert arguments(DOCKER / "serving.Dockerfile", "EXPOSE") == [env["AIP_HTTP_PORT"]]


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


def test_serving_entry_point_runs_with_the_images_environment(policy_dir, tmp_path):
    dockerfile = DOCKER / "serving.Dockerfile"
    (entrypoint,) = [json.loads(rest) for rest in arguments(dockerfile, "ENTRYPOINT")]
    assert entrypoint[0] == "python"
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path),
        **dockerfile_env(dockerfile, {"BQ_PROJECT": "my-proj"}),
        "AIP_STORAGE_URI": str(policy_dir),
        "AIP_HTTP_PORT": str(free_port()),
        "MLBANDITS_HOST": "127.0.0.1",
        "MLBANDITS_SPOOL_PATH": str(tmp_path / "spool.sqlite"),
        "MLBANDITS_SHIP_LOGS": "false",
    }
    base = f"http://127.0.0.1:{env['AIP_HTTP_PORT']}"
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen(
        [sys.executable, *entrypoint[1:]],
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
