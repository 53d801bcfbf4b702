"""Faults against the real server process and the real emulator: nothing is lost.

The server runs as `python -m serving` (the container's entry point) with the
demo's environment; BigQuery is the emulator with a persistent data directory
so it can be stopped and brought back.
"""

import asyncio
import dataclasses
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import List, Optional, Tuple

import aiohttp
import numpy as np
import pytest
from google.api_core import exceptions

from bandit_core.bigquery import clients
from serving.__main__ import settings_from_env
from tests.helpers.policy_factory import save_linucb_policy
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop.serving_process import ServingProcess, serving_environment
from tfx_pipeline.local.emulator import BigQueryEmulator

pytestmark = pytest.mark.e2e


@pytest.fixture()
def emulator(tmp_path):
    with BigQueryEmulator(data_dir=tmp_path / "bigquery") as running:
        yield running


@pytest.fixture()
def config(tmp_path) -> PipelineConfig:
    config = PipelineConfig().replace(local={"root": str(tmp_path / "run")}).validate()
    save_linucb_policy(config.local.serving_model_dir / "1", seed=0)
    return config


async def _predict_many(url: str, count: int, concurrency: int = 4) -> List[str]:
    """Sends `count` single-instance predictions, each must get a 200; returns event ids."""
    rng = np.random.default_rng(count)
    observations = rng.normal(size=(count, 20)).tolist()
    event_ids: List[str] = []

    async def one(session: aiohttp.ClientSession, observation: list) -> None:
        body = {"instances": [{"observation": observation}]}
        async with session.post("/predict", json=body) as r:
            assert r.status == 200, await r.text()
            body = await r.json()
        event_ids.append(body["predictions"][0]["event_id"])

    async with aiohttp.ClientSession(base_url=url) as session:
        for start in range(0, count, concurrency):
            batch = observations[start : start + concurrency]
            await asyncio.gather(*(one(session, o) for o in batch))
    return event_ids


def _landed_event_ids(emulator: BigQueryEmulator, config: PipelineConfig) -> Tuple[int, set]:
    client = clients.make_bigquery_client(emulator.endpoints)
    table = f"{emulator.project}.{config.bigquery.dataset}.{config.bigquery.predictions_table}"
    try:
        rows = list(client.query(f"SELECT event_id FROM `{table}`").result())
    except exceptions.NotFound:
        return 0, set()
    return len(rows), {row["event_id"] for row in rows}


def _wait_for(condition, timeout_s: float = 90.0, interval_s: float = 0.5) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval_s)
    raise AssertionError("condition not met in time")


def test_the_server_process_gets_every_serving_setting_of_the_config(config):
    config = config.replace(
        serving={"exploration": "boltzmann", "temperature": 0.5, "predict_route": "/v1/predict"}
    )
    env = serving_environment(config, clients.BigQueryEndpoints(project="my-project"), port=9000)
    assert settings_from_env(env).serving == dataclasses.replace(config.serving, port=9000)


def test_an_emulator_outage_neither_blocks_predictions_nor_loses_records(emulator, config):
    """Every request is answered while BigQuery is down; how fast is benchmarks/' business."""
    with ServingProcess(config, emulator.endpoints) as server:
        before_ids = asyncio.run(_predict_many(server.url, 300))
        _wait_for(lambda: _landed_event_ids(emulator, config)[0] == 300)
        emulator.stop()
        during_ids = asyncio.run(_predict_many(server.url, 600))
        assert len(set(during_ids)) == 600, "every prediction during the outage got its own answer"
        emulator.start()
        sent = set(before_ids) | set(during_ids)
        _wait_for(lambda: _landed_event_ids(emulator, config)[1] == sent)
    count, landed = _landed_event_ids(emulator, config)
    assert count == len(sent) == 900
    assert landed == sent


def test_a_killed_server_loses_no_prediction_it_confirmed(emulator, config):
    emulator.stop()
    with ServingProcess(config, emulator.endpoints) as server:
        confirmed = asyncio.run(_predict_many(server.url, 400))
        server.kill()
    emulator.start()
    with ServingProcess(config, emulator.endpoints):
        _wait_for(lambda: _landed_event_ids(emulator, config)[1] >= set(confirmed))
    count, landed = _landed_event_ids(emulator, config)
    assert landed == set(confirmed)
    assert count == len(confirmed)


def _rss_mb(pid: int) -> float:
    """Resident memory of a process, from /proc."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


def _served_version(url: str) -> Optional[str]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(f"{url}/health", timeout=5) as response:
            return json.load(response).get("model_version")
    except OSError:
        return None


def test_memory_stays_flat_over_50_hot_reloads(tmp_path):
    """gc.freeze() after each reload once kept every replaced SavedModel alive (~20 MB each)."""
    trained = save_linucb_policy(tmp_path / "trained", seed=0)
    base = tmp_path / "push"
    shutil.copytree(trained, base / "1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "AIP_STORAGE_URI": str(base),
        "AIP_HTTP_PORT": str(port),
        "MLBANDITS_SCORER": "savedmodel",
        "MLBANDITS_MODEL_POLL_S": "0.05",
        "MLBANDITS_SHIP_LOGS": "false",
        "MLBANDITS_SPOOL_PATH": str(tmp_path / "spool.sqlite"),
    }
    url = f"http://127.0.0.1:{port}"
    with open(tmp_path / "server.log", "wb") as log:
        server = subprocess.Popen(
            [sys.executable, "-m", "serving"], env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        rss = {}
        for version in range(1, 52):
            if version > 1:
                shutil.copytree(trained, base / str(version))
            _wait_for(lambda: _served_version(url) == str(version), timeout_s=120, interval_s=0.05)
            rss[version] = _rss_mb(server.pid)
    finally:
        server.kill()
        server.wait()
    growth = rss[51] - rss[6]
    assert growth < 50, f"RSS grew {growth:.0f} MB over 45 reloads: {rss}"
