"""Run the bqemulator BigQuery emulator as a child process.

bqemulator needs Python >= 3.11, protobuf >= 4.25 and pyarrow >= 14, none of
which can coexist with TFX 1.15, so it lives in its own virtualenv and this
process talks to it only over REST and gRPC.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import IO, Optional

from bandit_core.bigquery.clients import BigQueryEndpoints
from tfx_pipeline.local import ports

PYTHON_ENV_VAR = "MLBANDITS_EMULATOR_PYTHON"
_REPO_ROOT = Path(__file__).resolve().parents[2]
_LAUNCHER = Path(__file__).with_name("emulator_launcher.py")
_LOG_NAME = "emulator.log"
_STOP_TIMEOUT_S = 15.0
_POLL_INTERVAL_S = 0.2
_LOG_TAIL_BYTES = 8192
_LOG_TAIL_LINES = 8
_REBUILD_HINT = (
    "Rebuild its environment with `bash scripts/bootstrap.sh` (after `rm -rf .venv-emulator` "
    "if a rebuild alone does not help) and rerun the command."
)
# Environment that would make the emulator's interpreter pick up this venv's packages.
_FOREIGN_PYTHON_VARS = ("PYTHONPATH", "PYTHONHOME")
# Direct connections only: a proxy from the environment must never see local traffic.
_NO_PROXY_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorError(RuntimeError):
    """The emulator process could not be started; the message says what to do."""


class EmulatorNotInstalled(EmulatorError, FileNotFoundError):
    """The emulator's interpreter does not exist."""


def default_python() -> Path:
    """The emulator venv's interpreter: $MLBANDITS_EMULATOR_PYTHON, else <repo>/.venv-emulator."""
    override = os.environ.get(PYTHON_ENV_VAR)
    return Path(override) if override else _REPO_ROOT / ".venv-emulator" / "bin" / "python"


def _tail(path: Path) -> str:
    """The last lines of the emulator's log, indented, for error messages."""
    try:
        with open(path, "rb") as log:
            log.seek(max(0, log.seek(0, os.SEEK_END) - _LOG_TAIL_BYTES))
            text = log.read().decode(errors="replace")
    except OSError as exc:
        return f"  <log unreadable: {exc}>"
    lines = [line for line in text.splitlines() if line.strip()][-_LOG_TAIL_LINES:]
    return "\n".join(f"  {line}" for line in lines)


class BigQueryEmulator:
    """A bqemulator server on two free localhost ports, stopped on exit or at interpreter exit.

    Persistent (tables survive `restart()`) when `data_dir` is given, in-memory otherwise.
    `rest_port` and `grpc_port` fix the ports (for clients configured by hand);
    both default to free ones.
    """

    def __init__(
        self,
        python: Optional[Path] = None,
        project: str = "local-proj",
        data_dir: Optional[Path] = None,
        host: str = "127.0.0.1",
        startup_timeout_s: float = 90.0,
        rest_port: Optional[int] = None,
        grpc_port: Optional[int] = None,
    ) -> None:
        self.python = Path(python) if python is not None else default_python()
        if not self.python.exists():
            raise EmulatorNotInstalled(
                f"BigQuery emulator interpreter not found: {self.python}. "
                f"Create the emulator environment with `scripts/bootstrap.sh`, "
                f"or point ${PYTHON_ENV_VAR} at an existing one."
            )
        self.project = project
        self.data_dir = Path(data_dir) if data_dir is not None else None
        self.host = host
        self.startup_timeout_s = startup_timeout_s
        log_dir = self.data_dir or Path(tempfile.mkdtemp(prefix="bqemulator-"))
        self.log_path = log_dir / _LOG_NAME
        self._requested_ports = (rest_port, grpc_port)
        self._ports: Optional[list[int]] = None
        self._proc: Optional[subprocess.Popen[bytes]] = None
        self._log: Optional[IO[bytes]] = None

    @property
    def rest_endpoint(self) -> str:
        return f"http://{self.host}:{self._port(0)}"

    @property
    def grpc_endpoint(self) -> str:
        return f"{self.host}:{self._port(1)}"

    @property
    def endpoints(self) -> BigQueryEndpoints:
        return BigQueryEndpoints(self.project, self.rest_endpoint, self.grpc_endpoint)

    @property
    def pid(self) -> Optional[int]:
        return self._proc.pid if self._proc is not None else None

    def _port(self, index: int) -> int:
        if self._ports is None:
            raise EmulatorError("emulator has not been started yet; its ports are not chosen")
        return self._ports[index]

    def start(self) -> BigQueryEmulator:
        """Start the server and block until it answers; ports are kept across restarts."""
        if self._proc is not None:
            return self
        if self._ports is None:
            self._ports = self._choose_ports()
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "ab")
        self._proc = subprocess.Popen(
            self._command(),
            stdin=subprocess.DEVNULL,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            cwd=self.log_path.parent,
            env={k: v for k, v in os.environ.items() if k not in _FOREIGN_PYTHON_VARS},
            start_new_session=True,
        )
        atexit.register(self.stop)
        try:
            self._wait_until_ready(self._proc)
        except BaseException:
            self.stop()
            raise
        return self

    def _choose_ports(self) -> list[int]:
        """The requested ports, checked free, with free ones where none was requested."""
        requested = set(self._requested_ports)
        free = iter(p for p in ports.free_ports(self.host, 4) if p not in requested)
        chosen = [port or next(free) for port in self._requested_ports]
        for port, option in zip(self._requested_ports, ("--rest-port", "--grpc-port")):
            if port and ports.port_in_use(self.host, port):
                raise EmulatorError(
                    ports.port_in_use_message(
                        self.host, port, "the BigQuery emulator",
                        f"pass another {option} (or none: a free port is taken)",
                    )
                )
        return chosen

    def _command(self) -> list[str]:
        rest_port, grpc_port = self._port(0), self._port(1)
        command = [
            str(self.python), str(_LAUNCHER), "start",
            "--rest-host", self.host, "--rest-port", str(rest_port),
            "--grpc-host", self.host, "--grpc-port", str(grpc_port),
            "--project", self.project,
        ]
        if self.data_dir is not None:
            command += ["--persistent", "--data-dir", str(self.data_dir)]
        return command

    def _wait_until_ready(self, proc: subprocess.Popen[bytes]) -> None:
        """Poll /healthz, then the gRPC port: bqemulator binds REST before gRPC."""
        deadline = time.monotonic() + self.startup_timeout_s
        while not (self._healthy() and self._grpc_listening()):
            if proc.poll() is not None:
                raise EmulatorError(
                    f"the BigQuery emulator exited with code {proc.returncode} during start-up. "
                    f"The end of its log {self.log_path}:\n{_tail(self.log_path)}\n"
                    f"{_REBUILD_HINT}"
                )
            if time.monotonic() > deadline:
                raise EmulatorError(
                    f"the BigQuery emulator did not answer within {self.startup_timeout_s:.0f} s "
                    f"(a busy machine?). The end of its log {self.log_path}:\n"
                    f"{_tail(self.log_path)}\nRerun the command; if it happens again, "
                    f"{_REBUILD_HINT[0].lower()}{_REBUILD_HINT[1:]}"
                )
            time.sleep(_POLL_INTERVAL_S)

    def _healthy(self) -> bool:
        try:
            with _NO_PROXY_OPENER.open(f"{self.rest_endpoint}/healthz", timeout=2) as response:
                return response.status == 200
        except OSError:
            return False

    def _grpc_listening(self) -> bool:
        try:
            with socket.create_connection((self.host, self._port(1)), timeout=2):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        """SIGTERM the process group, SIGKILL it if still alive after a grace period; idempotent."""
        proc, self._proc = self._proc, None
        if proc is not None:
            atexit.unregister(self.stop)
            if proc.poll() is None:
                _terminate_group(proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def restart(self) -> BigQueryEmulator:
        """Stop and start again on the same ports and data dir."""
        self.stop()
        return self.start()

    def __enter__(self) -> BigQueryEmulator:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _terminate_group(proc: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=_STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        logging.getLogger(__name__).warning("BigQuery emulator %d ignored SIGTERM; killing it", proc.pid)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
