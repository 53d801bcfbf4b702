"""The demo's prediction server as a real child process: busy ports, a busy spool, Ctrl-C.

BigQuery is a closed loopback port here, so the server's logger can never
ship: what it logs stays in its SQLite spool, which is what an interrupted
demo must keep.
"""

import fcntl
import json
import socket
import threading
import urllib.request

import pytest

from bandit_core.bigquery.clients import BigQueryEndpoints
from serving.event_spool import EventSpool
from tests.helpers.policy_factory import save_linucb_policy
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop.serving_process import ServingProcess, ServingProcessError

# Generous: an uninterrupted stop waits up to the logger's 30 s flush for BigQuery.
STOP_DEADLINE_S = 20.0


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def config(tmp_path) -> PipelineConfig:
    config = PipelineConfig().replace(local={"root": str(tmp_path / "r")})
    save_linucb_policy(config.local.serving_model_dir / "1", seed=0)
    return config


@pytest.fixture
def unreachable_bigquery() -> BigQueryEndpoints:
    port = _closed_port()
    return BigQueryEndpoints("local-proj", f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")


def test_a_serving_port_in_use_is_named_before_the_server_starts(config, unreachable_bigquery):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy = config.replace(serving={"port": port})
        with pytest.raises(ServingProcessError) as error:
            ServingProcess(busy, unreachable_bigquery).__enter__()
    message = str(error.value)
    assert f"port {port} on 127.0.0.1, wanted by the prediction server (serving.port)" in message
    assert f"ss -ltnp 'sport = :{port}'" in message and "set serving.port" in message
    assert not busy.local.spool_path.parent.exists(), "no server was started"


def test_a_spool_another_server_ships_names_its_lock(config, unreachable_bigquery):
    spool = config.local.spool_path
    spool.parent.mkdir(parents=True)
    with open(f"{spool}.shipper.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ServingProcessError) as error:
            ServingProcess(config, unreachable_bigquery).__enter__()
    message = str(error.value)
    assert f"another server still ships the logs of {spool}" in message
    assert f"fuser {spool}.shipper.lock" in message and "rerun" in message


def test_interrupted_the_server_stops_promptly_and_keeps_its_logs(config, unreachable_bigquery):
    server = ServingProcess(config, unreachable_bigquery).__enter__()
    try:
        request = urllib.request.Request(
            f"{server.url}{config.serving.predict_route}",
            data=json.dumps({"instances": [{"observation": [0.1] * 20}]}).encode(),
            headers={"Content-Type": "application/json"},
        )
        opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with opener.open(request, timeout=30) as response:
            assert response.status == 200
    finally:
        stopping = threading.Thread(
            target=server.__exit__, args=(KeyboardInterrupt, KeyboardInterrupt(), None)
        )
        stopping.start()
        stopping.join(STOP_DEADLINE_S)
    assert not stopping.is_alive(), "the interrupted server waited to ship its logs"
    assert server.model_version() is None, "the server still answers"
    spool = EventSpool(config.local.spool_path)
    try:
        assert spool.pending_count() == 1, "the unshipped prediction stays for the next server"
    finally:
        spool.close()
