"""Every failure a user can hit in `mlbandits` says what happened and what to run next.

Each test makes the condition real: an empty data directory with downloads
off, a refused or corrupt download from a local server, a port held by a
listening socket, an emulator interpreter without bqemulator, a run root and
an ML Metadata store locked by another process, a full disk (a 256 KB tmpfs
in a private mount namespace, `unshare`), and Ctrl-C sent to a real demo.
None of them prints the command's own traceback.
"""

import http.server
import os
import pathlib
import signal
import socket
import subprocess
import sys
import threading
import time

import apache_beam as beam
import pytest
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from simulation import movielens_data
from tfx_pipeline import cli, failures
from tfx_pipeline.local import emulator

REPO = pathlib.Path(__file__).resolve().parents[2]
MLBANDITS = pathlib.Path(sys.executable).with_name("mlbandits")
CLI_SOURCE = pathlib.Path(cli.__file__).name


def _run(argv, capsys):
    code = cli.main(argv)
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


@pytest.fixture
def listening_port():
    """A port held by a listening socket for the test's length."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_missing_movielens_with_downloads_off_says_where_to_put_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv(movielens_data.DOWNLOAD_URL_ENV_VAR, movielens_data.DOWNLOADS_OFF)
    empty = tmp_path / "empty"
    empty.mkdir()
    root = tmp_path / "r"
    code, _, err = _run(["train", "--root", str(root), "--movielens-dir", str(empty)], capsys)
    assert code == 1
    assert f"MovieLens 100K is not in {empty} (no u.data) and downloads are off" in err
    assert "--movielens-dir" in err and movielens_data.DATA_DIR_ENV_VAR in err
    assert not (root / "bigquery").exists(), "the emulator must not start without data"


def test_a_refused_download_says_how_to_get_the_data_offline(tmp_path, capsys, monkeypatch):
    url = f"http://127.0.0.1:{_closed_port()}/ml-100k.zip"
    monkeypatch.setenv(movielens_data.DOWNLOAD_URL_ENV_VAR, url)
    empty = tmp_path / "empty"
    code, _, err = _run(["demo", "--root", str(tmp_path / "r"), "--movielens-dir", str(empty)],
                        capsys)
    assert code == 1
    assert f"Could not download MovieLens 100K from {url}" in err
    assert "Connection refused" in err and "If this machine is offline" in err
    assert "--movielens-dir" in err


def test_a_corrupt_download_is_refused_by_its_checksum(tmp_path, capsys, monkeypatch):
    class NotMovieLens(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            body = b"an error page, not a zip"
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    with http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotMovieLens) as server:
        threading.Thread(target=server.serve_forever, daemon=True).start()
        url = f"http://127.0.0.1:{server.server_address[1]}/ml-100k.zip"
        monkeypatch.setenv(movielens_data.DOWNLOAD_URL_ENV_VAR, url)
        empty = tmp_path / "empty"
        code, _, err = _run(
            ["train", "--root", str(tmp_path / "r"), "--movielens-dir", str(empty)], capsys
        )
        server.shutdown()
    assert code == 1
    assert f"Checksum mismatch for {url}" in err and "nothing was extracted" in err
    assert not (empty / "u.data").exists()


def test_an_emulator_port_in_use_names_it_and_how_to_find_its_holder(listening_port, capsys):
    code, _, err = _run(["emulator", "--rest-port", str(listening_port)], capsys)
    assert code == 1
    assert f"port {listening_port} on 127.0.0.1, wanted by the BigQuery emulator, is in use" in err
    assert f"ss -ltnp 'sport = :{listening_port}'" in err and "another --rest-port" in err


def test_an_emulator_that_cannot_start_shows_its_log_and_the_rebuild(capsys, monkeypatch):
    monkeypatch.setenv(emulator.PYTHON_ENV_VAR, sys.executable)  # a Python without bqemulator
    code, _, err = cli.main(["emulator"]), *capsys.readouterr()
    assert code == 1
    assert "the BigQuery emulator exited with code 1 during start-up" in err
    assert "No module named 'bqemulator'" in err
    assert "bash scripts/bootstrap.sh" in err and "rm -rf .venv-emulator" in err
    assert CLI_SOURCE not in err, "the command's own traceback stays in the log"


def test_a_busy_run_root_names_the_command_holding_it(tmp_path, capsys):
    root = tmp_path / "r"
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import pathlib, sys\n"
            "from tfx_pipeline.local.run_lock import holding_run_root\n"
            f"with holding_run_root(pathlib.Path({str(root)!r}), 'mlbandits demo'):\n"
            "    print('held', flush=True)\n"
            "    sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO,
    )
    try:
        assert holder.stdout.readline() == "held\n"
        code, _, err = _run(["train", "--root", str(root)], capsys)
    finally:
        holder.communicate("")
    assert code == 1
    assert f"`mlbandits demo` (pid {holder.pid}) is already running on {root}" in err
    assert f"fuser {root / '.mlbandits.lock'}" in err and "another --root" in err


def test_a_locked_metadata_store_says_who_to_wait_for(tmp_path, capsys):
    """MLMD retries a locked SQLite store for about 30 s before giving up."""
    root = tmp_path / "r"
    store = root / "metadata.sqlite"
    root.mkdir()
    connection = metadata_store_pb2.ConnectionConfig()
    connection.sqlite.filename_uri = str(store)
    metadata_store.MetadataStore(connection)
    holder = subprocess.Popen(
        [
            sys.executable, "-c",
            "import sqlite3, sys\n"
            f"db = sqlite3.connect({str(store)!r}, isolation_level=None)\n"
            "db.execute('BEGIN EXCLUSIVE')\n"
            "print('locked', flush=True)\n"
            "sys.stdin.read()\n",
        ],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        assert holder.stdout.readline() == "locked\n"
        code, _, err = _run(["train", "--root", str(root)], capsys)
    finally:
        holder.communicate("")
    assert code == 1
    assert f"{store} stayed locked by another process" in err
    assert f"fuser {store}" in err and f"then rerun `mlbandits train --root {root}`" in err


def _can_mount_tmpfs() -> bool:
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         "mount -t tmpfs -o size=64k tmpfs /mnt"],
        capture_output=True,
    )
    return probe.returncode == 0


def test_a_full_disk_says_so_and_how_to_make_room(tmp_path):
    """A real ENOSPC: the run root is a 256 KB tmpfs, mounted in a private namespace."""
    if not _can_mount_tmpfs():
        pytest.skip("this kernel refuses unprivileged user namespaces, so no private tmpfs")
    tiny = tmp_path / "tiny"
    tiny.mkdir()
    result = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c",
         f'mount -t tmpfs -o size=256k tmpfs "{tiny}" && exec "$0" "$@"',
         str(MLBANDITS), "train", "--root", str(tiny / "r"), "--num-events", "200"],
        capture_output=True, text=True, timeout=300, cwd=REPO,
    )
    assert result.returncode == 1, result.stderr
    assert f"mlbandits: the disk holding {tiny / 'r'} is full" in result.stderr
    assert "database or disk is full" in result.stderr
    assert f"df -h {tiny / 'r'}" in result.stderr
    assert "pass --root on a disk with room" in result.stderr
    assert "Traceback" not in result.stderr


def _processes_naming(text: str) -> list:
    """Pids of processes whose command line holds `text`."""
    found = []
    for entry in pathlib.Path("/proc").iterdir():
        if entry.name.isdecimal():
            try:
                if text in (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def _poll(condition, deadline_s: float, what: str) -> None:
    deadline = time.monotonic() + deadline_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def test_ctrl_c_mid_demo_stops_everything_and_says_what_was_kept(tmp_path):
    """SIGINT to the demo's process group, as a terminal's Ctrl-C sends it, mid-DAG."""
    root = tmp_path / "r"
    demo = subprocess.Popen(
        [str(MLBANDITS), "demo", "--root", str(root)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
        start_new_session=True,
    )
    try:
        # Mid-DAG, in the Beam steps after ingestion began (a Ctrl-C in Beam arrives wrapped).
        _poll(lambda: (root / "pipeline_root" / "BigQueryExampleGen").exists()
              or demo.poll() is not None, 120, "the initial DAG to ingest")
        assert demo.poll() is None, demo.communicate()
        os.killpg(demo.pid, signal.SIGINT)
        try:
            _, err = demo.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            demo.kill()
            _, err = demo.communicate()
            pytest.fail(f"the demo was still running 60 s after Ctrl-C; its stderr ends:\n{err[-3000:]}")
    finally:
        if demo.poll() is None:
            demo.kill()
    assert demo.returncode == 130
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err
    assert lines[0] == (
        "mlbandits: interrupted; the prediction server and the BigQuery emulator are stopped. "
        f"{root} keeps the finished DAG runs, BigQuery tables and serving logs not yet shipped: "
        f"rerun `mlbandits demo --root {root}` to go on, or `rm -rf {root}` first to start clean."
    )
    _poll(lambda: not _processes_naming(str(root)), 30, "the emulator to be gone")


def test_a_ctrl_c_inside_a_beam_step_counts_as_an_interrupt():
    def interrupt(_):
        raise KeyboardInterrupt

    with pytest.raises(Exception) as raised:
        with beam.Pipeline() as pipeline:
            _ = pipeline | beam.Create([1]) | beam.Map(interrupt)
    assert not isinstance(raised.value, KeyboardInterrupt)  # Beam wraps it
    assert failures.interrupted(raised.value)
    assert not failures.interrupted(RuntimeError("the emulator is down"))
