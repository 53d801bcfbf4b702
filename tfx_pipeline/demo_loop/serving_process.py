"""Runs the prediction server (`python -m serving`) as a child process for the demo.

The server is configured exactly as on Vertex AI, through AIP_* and
MLBANDITS_* environment variables, so the demo exercises the container's
entry point rather than an in-process shortcut.
"""

import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Dict, Optional

from google.cloud import bigquery

from bandit_core import agent_names
from bandit_core.bigquery.clients import BigQueryEndpoints
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop import serving_logs
from tfx_pipeline.local import ports

_MODEL_POLL_S = 1.0
# SIGTERM lets the server ship what it can, for up to its logger's 30 s when
# BigQuery is slow or gone. Interrupted, the user is waiting: rows not shipped
# stay in the spool (SQLite, durable) for the next server.
_STOP_GRACE_S = 60.0
_INTERRUPTED_GRACE_S = 3.0
# What the server's log says when another server's logger holds the spool.
_SHIPPER_BUSY = "ShipperAlreadyRunning"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _has_numpy_scorer(agent: str) -> bool:
    """Classic LinUCB and every per-arm agent have a fast scorer; see `serving`."""
    return agent == agent_names.LINUCB or agent in agent_names.PER_ARM_AGENTS


class ServingProcessError(RuntimeError):
    """The server did not start, or did not do what the loop waited for in time."""


def serving_environment(config: PipelineConfig, endpoints: BigQueryEndpoints, port: int) -> Dict[str, str]:
    """The environment variables of the serving container, for this config."""
    bq = config.bigquery
    env = {
        **dataclasses.replace(config.serving, port=port).environment(),
        "AIP_STORAGE_URI": str(config.local.serving_model_dir),
        "MLBANDITS_MODEL_POLL_S": str(_MODEL_POLL_S),
        "MLBANDITS_SPOOL_PATH": str(config.local.spool_path),
        "MLBANDITS_SCORER": "numpy" if _has_numpy_scorer(config.trainer.agent) else "savedmodel",
        "MLBANDITS_BQ_PROJECT": endpoints.project,
        "MLBANDITS_BQ_DATASET": bq.dataset,
        "MLBANDITS_BQ_PREDICTIONS_TABLE": bq.predictions_table,
        "MLBANDITS_BQ_REWARDS_TABLE": bq.rewards_table,
    }
    if endpoints.rest_endpoint:
        env["MLBANDITS_BQ_REST_ENDPOINT"] = endpoints.rest_endpoint
    if endpoints.grpc_endpoint:
        env["MLBANDITS_BQ_GRPC_ENDPOINT"] = endpoints.grpc_endpoint
    return env


class ServingProcess:
    """Context manager: starts the server, waits for health, stops it on exit."""

    def __init__(self, config: PipelineConfig, endpoints: BigQueryEndpoints, startup_timeout_s: float = 120.0):
        self._config = config
        self._endpoints = endpoints
        self._startup_timeout_s = startup_timeout_s
        self._port = config.serving.port or ports.free_ports(config.serving.host, 1)[0]
        self._process: Optional[subprocess.Popen] = None
        self.log_path = config.local.root_dir / "serving" / "server.log"
        self._log_start = 0

    @property
    def url(self) -> str:
        return f"http://{self._config.serving.host}:{self._port}"

    def __enter__(self) -> "ServingProcess":
        host = self._config.serving.host
        if self._config.serving.port and ports.port_in_use(host, self._port):
            raise ServingProcessError(
                ports.port_in_use_message(
                    host, self._port, "the prediction server (serving.port)",
                    "set serving.port in your --config file to another port, or to 0 for any "
                    "free one",
                )
            )
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, **serving_environment(self._config, self._endpoints, self._port)}
        with open(self.log_path, "ab") as log:
            self._log_start = log.tell()
            self._process = subprocess.Popen(
                [sys.executable, "-m", "serving"], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        try:
            self._wait(lambda: self.model_version() is not None, self._startup_timeout_s, "become healthy")
        except BaseException:
            self.stop()
            raise
        return self

    def __exit__(self, exc_type, *exc_info) -> None:
        interrupted = exc_type is not None and issubclass(exc_type, KeyboardInterrupt)
        self.stop(_INTERRUPTED_GRACE_S if interrupted else _STOP_GRACE_S)

    def stop(self, grace_s: float = _STOP_GRACE_S) -> None:
        """SIGTERM lets the server flush its logger; SIGKILL after `grace_s` seconds."""
        if self._process is None or self._process.poll() is not None:
            return
        self._process.send_signal(signal.SIGTERM)
        try:
            self._process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def kill(self) -> None:
        """SIGKILL, as a crash would: nothing is flushed."""
        if self._process is not None and self._process.poll() is None:
            self._process.kill()
            self._process.wait()

    def model_version(self) -> Optional[str]:
        """The version the health route reports, or None while no policy is loaded."""
        try:
            health = f"{self.url}{self._config.serving.health_route}"
            with _NO_PROXY.open(health, timeout=5) as response:
                return json.load(response).get("model_version")
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return None

    def wait_for_version_change(self, previous: Optional[str], timeout_s: float) -> str:
        self._wait(lambda: self.model_version() not in (None, previous), timeout_s, "hot-reload a new policy")
        return self.model_version()

    def wait_until_logged(
        self, client: bigquery.Client, rewards_table_id: str, expected: int, timeout_s: float = 120.0
    ) -> None:
        """Waits until the logger shipped `expected` rewarded events to BigQuery."""
        self._wait(
            lambda: serving_logs.count_rewarded_events(client, rewards_table_id) >= expected,
            timeout_s,
            f"ship {expected} rewards to BigQuery",
        )

    def _wait(self, condition, timeout_s: float, what: str) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise ServingProcessError(self._exit_message(self._process.returncode))
            if condition():
                return
            time.sleep(0.25)
        raise ServingProcessError(f"the server did not {what} within {timeout_s:.0f} s; see {self.log_path}")

    def _exit_message(self, code: int) -> str:
        """Why the server ended, from what it logged since this start."""
        with open(self.log_path, "rb") as log:
            log.seek(self._log_start)
            logged = log.read().decode(errors="replace")
        spool = self._config.local.spool_path
        if _SHIPPER_BUSY in logged:
            return (
                f"the prediction server stopped at start: another server still ships the logs "
                f"of {spool} (one an earlier run left behind?). Stop it (`fuser "
                f"{spool}.shipper.lock` names its process), then rerun the command."
            )
        return f"the prediction server exited with code {code}; see {self.log_path}"
