"""The serving logger against a real bqemulator: every row lands, through outages, reset
connections and crashes, exactly once with the Storage Write API (write_api), and with insertAll
(insert_all) exactly once unless an insert commits later than the settle delay after its call
failed."""

from __future__ import annotations

import contextlib
import datetime
import math
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from typing import Optional

import grpc
import numpy as np
import pytest
from google.api_core.exceptions import GoogleAPICallError
from google.cloud import bigquery

from bandit_core.bigquery.clients import BigQueryEndpoints, make_bigquery_client
from bandit_core.bigquery.tables import PREDICTIONS_SCHEMA, ensure_table
from serving.__main__ import SettingsError, settings_from_env
from serving.event_spool import PREDICTIONS, DuplicateEventError, EventSpool, RewardStatus
from serving.prediction_logger import (
    INSERT_ALL,
    SHIP_METHODS,
    WRITE_API,
    PredictionLogger,
    ShipperAlreadyRunning,
)
from tfx_pipeline.local.emulator import BigQueryEmulator

REQUEST_TIMEOUT_S = 2.0
EVENT_TIME = "2024-05-01T12:00:00.000001Z"
EVENT_DATETIME = datetime.datetime(2024, 5, 1, 12, 0, 0, 1, tzinfo=datetime.timezone.utc)
# Nothing listens on port 9: for tests that never reach BigQuery.
NOWHERE = BigQueryEndpoints("local-proj", "http://127.0.0.1:9", "127.0.0.1:9")


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    """Persistent, so a restart in the outage test keeps the tables."""
    with BigQueryEmulator(data_dir=tmp_path_factory.mktemp("bq")) as emu:
        yield emu


@pytest.fixture(scope="module")
def client(emulator):
    return make_bigquery_client(emulator.endpoints)


@pytest.fixture
def dataset() -> str:
    """Each test writes its own dataset: the emulator is shared by the module."""
    return f"logs_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def spool(tmp_path):
    with EventSpool(tmp_path / "spool.db") as spool:
        yield spool


def _prediction(event_id: str, user_id: int = 0) -> dict:
    return {
        "event_id": event_id,
        "event_time": EVENT_TIME,
        "user_id": user_id,
        "observation": [user_id + k / 100 for k in range(20)],
        "action": user_id % 5,
        "propensity": 0.25,
        "model_version": "v7",
        "policy_id": "linucb",
    }


def _predictions(prefix: str, count: int) -> list[dict]:
    return [_prediction(f"{prefix}-{i}", i) for i in range(count)]


def _logger(
    spool: EventSpool, endpoints: BigQueryEndpoints, dataset: str, **overrides
) -> PredictionLogger:
    options = {
        "initial_backoff_s": 0.05,
        "max_backoff_s": 0.5,
        "request_timeout_s": REQUEST_TIMEOUT_S,
        "settle_s": 0.5,
    }
    return PredictionLogger(
        spool, endpoints, dataset, "predictions", "rewards", **{**options, **overrides}
    )


def _landed_ids(client: bigquery.Client, dataset: str, table: str = "predictions") -> list[str]:
    query = f"SELECT event_id FROM `{dataset}.{table}`"
    return [row["event_id"] for row in client.query(query).result()]


def _assert_exactly_once(client: bigquery.Client, dataset: str, expected: set[str]) -> None:
    query = f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS ids FROM `{dataset}.predictions`"
    counts = next(iter(client.query(query).result()))
    assert (counts["n"], counts["ids"]) == (len(expected), len(expected))
    assert set(_landed_ids(client, dataset)) == expected


def _hanging_endpoints() -> tuple[socket.socket, BigQueryEndpoints]:
    """A port that accepts connections and never answers: BigQuery at its slowest."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    port = server.getsockname()[1]
    return server, BigQueryEndpoints("local-proj", f"http://127.0.0.1:{port}", f"127.0.0.1:{port}")


@pytest.mark.parametrize("ship_method", SHIP_METHODS)
def test_rows_land_with_their_values(emulator, client, dataset, spool, ship_method):
    logger = _logger(spool, emulator.endpoints, dataset, ship_method=ship_method).start()
    first = _prediction("a", 1)
    second = {**_prediction("b", 2), "observation": np.linspace(0.0, 1.0, 20), "event_time": EVENT_DATETIME}
    logger.log_predictions([first, second])
    assert logger.log_reward("a", {"reward_time": "2024-05-01T12:00:05Z", "reward": 1.0}) is RewardStatus.ACCEPTED

    assert logger.close()

    rows = [dict(row) for row in client.query(f"SELECT * FROM `{dataset}.predictions` ORDER BY event_id").result()]
    per_arm_columns = {"candidate_movie_ids": [], "movie_id": None}  # classic rows leave them empty
    assert rows == [
        {**first, "event_time": EVENT_DATETIME, **per_arm_columns},
        {**second, "observation": pytest.approx(np.linspace(0.0, 1.0, 20).tolist()), **per_arm_columns},
    ]
    rewards = [dict(row) for row in client.query(f"SELECT * FROM `{dataset}.rewards`").result()]
    assert rewards == [
        {"event_id": "a", "reward_time": datetime.datetime(2024, 5, 1, 12, 0, 5, tzinfo=datetime.timezone.utc), "reward": 1.0}
    ]
    assert logger.stats().pending == 0 and logger.stats().shipped == 3


def test_rewards_need_a_served_event_and_count_once(emulator, client, dataset, tmp_path):
    reward = {"reward_time": "2024-05-01T12:00:05Z", "reward": 0.5}
    with EventSpool(tmp_path / "spool.db") as spool:
        logger = _logger(spool, emulator.endpoints, dataset)
        logger.log_predictions(_predictions("e", 3))
        assert logger.log_reward("never-served", reward) is RewardStatus.UNKNOWN_EVENT
        assert logger.log_reward("e-0", reward) is RewardStatus.ACCEPTED
        assert logger.log_reward("e-0", reward) is RewardStatus.DUPLICATE

    with EventSpool(tmp_path / "spool.db") as reopened:
        logger = _logger(reopened, emulator.endpoints, dataset).start()
        assert logger.log_reward("e-0", reward) is RewardStatus.DUPLICATE
        assert logger.log_reward("e-1", reward) is RewardStatus.ACCEPTED
        assert reopened.prune_served(served_before=math.inf) == 3
        assert logger.log_reward("e-2", reward) is RewardStatus.UNKNOWN_EVENT
        assert logger.close()

    assert sorted(_landed_ids(client, dataset, "rewards")) == ["e-0", "e-1"]


@pytest.mark.parametrize(
    "change, message",
    [
        ({"bogus": 1}, r"^unknown columns \['bogus'\]; the table has \['action', "),
        ({"event_time": None}, r"^column event_time is required$"),
        ({"event_time": "yesterday"}, r"^column event_time needs an ISO-8601 timestamp, got 'yes"),
        ({"event_time": datetime.datetime(2024, 5, 1)}, r"^column event_time needs a timezone-"),
        ({"action": "3"}, r"^column action is INT64, got '3'$"),
        ({"action": True}, r"^column action is INT64, got True$"),
        ({"propensity": math.nan}, r"^column propensity must be finite, got nan$"),
        ({"observation": [0.1, math.inf]}, r"^column observation must be finite, got inf$"),
        ({"observation": 0.1}, r"^column observation is REPEATED: expected a list, got 0.1$"),
        ({"observation": [0.1, math.nan, 1]}, r"^column observation must be finite, got nan$"),
        (
            {"observation": [np.float64(0.1), np.float64(-math.inf)]},
            r"^column observation must be finite, got -inf$",
        ),
        ({"observation": [0.1, True]}, r"^column observation is FLOAT64, got True$"),
        ({"observation": [0.1, "0.2"]}, r"^column observation is FLOAT64, got '0.2'$"),
        ({"candidate_movie_ids": [3, True]}, r"^column candidate_movie_ids is INT64, got True$"),
        ({"candidate_movie_ids": [3, 4.0]}, r"^column candidate_movie_ids is INT64, got 4.0$"),
        ({"candidate_movie_ids": [3, "4"]}, r"^column candidate_movie_ids is INT64, got '4'$"),
        ({"candidate_movie_ids": [3, None]}, r"^column candidate_movie_ids is INT64, got None$"),
        ({"candidate_movie_ids": np.array([3.0, 4.0])}, r"^column candidate_movie_ids is INT64, "),
        ({"candidate_movie_ids": 3}, r"^column candidate_movie_ids is REPEATED: expected a list"),
    ],
)
def test_rows_bigquery_would_refuse_are_refused_before_spooling(spool, change, message):
    logger = _logger(spool, NOWHERE, "unused")
    with pytest.raises(ValueError, match=message):
        logger.log_predictions([_prediction("ok"), {**_prediction("bad"), **change}])
    assert spool.pending_count() == 0


@pytest.mark.parametrize(
    "change, logged",
    [
        ({"candidate_movie_ids": [3, 17, 8]}, {"candidate_movie_ids": [3, 17, 8]}),
        ({"candidate_movie_ids": (3, 17)}, {"candidate_movie_ids": [3, 17]}),
        ({"candidate_movie_ids": np.array([3, 17])}, {"candidate_movie_ids": [3, 17]}),
        ({"candidate_movie_ids": [np.int64(3), 17]}, {"candidate_movie_ids": [3, 17]}),
        ({"candidate_movie_ids": []}, {"candidate_movie_ids": []}),
        ({"observation": [1, 0.5, -2]}, {"observation": [1, 0.5, -2]}),
        ({"observation": [np.float32(0.5), 1.5]}, {"observation": [0.5, 1.5]}),
        ({"observation": np.array([0.25, 2.0])}, {"observation": [0.25, 2.0]}),
    ],
)
def test_repeated_columns_are_logged_as_plain_lists(spool, change, logged):
    logger = _logger(spool, NOWHERE, "unused")
    logger.log_predictions([{**_prediction("x"), **change}])
    payload = spool.peek(1)[0].payload
    assert {name: payload[name] for name in logged} == logged
    assert all(type(item) is type(want) for name in logged for item, want in zip(payload[name], logged[name]))


def test_a_served_event_id_cannot_be_served_again(spool):
    spool.append_predictions([_prediction("x")])
    with pytest.raises(DuplicateEventError):
        spool.append_predictions([_prediction("y"), _prediction("x")])
    assert [record.event_id for record in spool.peek(10)] == ["x"]


@pytest.mark.parametrize("ship_method", SHIP_METHODS)
def test_close_flushes_everything_logged(emulator, client, dataset, spool, ship_method):
    logger = _logger(spool, emulator.endpoints, dataset, batch_size=500, ship_method=ship_method)
    rows = _predictions("flush", 3000)
    logger.start().log_predictions(rows)

    assert logger.close()

    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})
    assert (logger.stats().shipped, logger.stats().batches) == (3000, 6)


@pytest.mark.parametrize("ship_method", SHIP_METHODS)
def test_rows_logged_while_the_shipper_waits_share_one_send(
    emulator, client, dataset, spool, ship_method
):
    logger = _logger(
        spool, emulator.endpoints, dataset, poll_interval_s=1.0, ship_method=ship_method
    )
    logger.start().log_predictions([_prediction("first")])
    deadline = time.monotonic() + 30
    while logger.stats().shipped == 0:
        assert time.monotonic() < deadline, "the first row was never shipped"
        time.sleep(0.01)
    rows = _predictions("then", 5)
    for row in rows:  # one request each, all within the shipper's poll interval
        logger.log_predictions([row])

    assert logger.close()

    assert (logger.stats().shipped, logger.stats().batches) == (6, 2)
    _assert_exactly_once(client, dataset, {"first"} | {row["event_id"] for row in rows})


def test_logging_never_waits_for_a_hanging_bigquery(spool):
    """All logging happens while the shipper is inside one BigQuery call that never returns."""
    server, endpoints = _hanging_endpoints()
    with server:
        logger = _logger(spool, endpoints, "unused", request_timeout_s=120).start()
        server.settimeout(30)
        connection, _ = server.accept()  # the shipper is now waiting for BigQuery's answer
        for i in range(100):
            logger.log_predictions(_predictions(f"h{i}", 10))
        assert spool.pending_count() == 1000
        assert logger.stats().failed_attempts == 0, "the hanging call must still be in flight"
        server.close()  # refuses the reconnection, then ends the call
        connection.close()
        assert not logger.close(flush_timeout_s=0.5)
    assert logger.stats().failed_attempts >= 1
    assert spool.pending_count() == 1000


def test_a_hanging_bigquery_call_ends_at_the_request_timeout(spool):
    server, endpoints = _hanging_endpoints()
    with server:
        logger = _logger(spool, endpoints, "unused", request_timeout_s=0.3).start()
        logger.log_predictions(_predictions("t", 1))
        deadline = time.monotonic() + 30
        while "Timeout" not in (logger.stats().last_error or ""):
            assert time.monotonic() < deadline, logger.stats()
            time.sleep(0.05)
        assert not logger.close(flush_timeout_s=0)


@pytest.mark.parametrize("ship_method", SHIP_METHODS)
def test_emulator_outage_loses_and_duplicates_nothing(
    emulator, client, dataset, spool, ship_method
):
    """A restarted emulator has forgotten its write streams: write_api falls back to a
    read-back of the lost stream's batch, then opens a new stream."""
    logger = _logger(spool, emulator.endpoints, dataset, batch_size=100, ship_method=ship_method)
    logger.start()
    rows = _predictions("outage", 2000)
    for start in range(0, 1000, 10):
        logger.log_predictions(rows[start:start + 10])
    emulator.stop()
    for start in range(1000, len(rows), 10):  # answered although BigQuery is gone
        logger.log_predictions(rows[start:start + 10])
    deadline = time.monotonic() + 30
    while logger.stats().failed_attempts == 0:
        assert time.monotonic() < deadline, "the outage was never noticed"
        time.sleep(0.05)
    during_outage = logger.stats()
    emulator.start()

    assert logger.close(flush_timeout_s=30)

    assert during_outage.pending > 0, "rows logged during the outage wait in the spool"
    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})


@pytest.mark.parametrize("ship_method", SHIP_METHODS)
def test_rows_that_landed_before_a_crash_are_not_resent(
    emulator, client, dataset, spool, ship_method
):
    """The crash window between insertAll's confirmation and the spool delete, reproduced
    exactly; a write_api logger taking over such a spool checks those rows the same way."""
    rows = _predictions("window", 300)
    spool.append_predictions(rows)
    in_flight = spool.peek(200)
    spool.mark_attempted(record.seq for record in in_flight)
    table_id = ensure_table(client, dataset, "predictions", PREDICTIONS_SCHEMA)
    landed = in_flight[:150]
    assert client.insert_rows_json(table_id, [r.payload for r in landed], row_ids=[r.event_id for r in landed]) == []

    logger = _logger(spool, emulator.endpoints, dataset, ship_method=ship_method).start()
    assert logger.close()

    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})
    assert (logger.stats().already_landed, logger.stats().shipped) == (150, 150)


CRASHING_SERVER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from serving.event_spool import EventSpool
    from serving.prediction_logger import PredictionLogger
    from bandit_core.bigquery.clients import BigQueryEndpoints

    spool_path, rest, grpc, dataset = sys.argv[1:5]
    logger = PredictionLogger(
        EventSpool(Path(spool_path)), BigQueryEndpoints("local-proj", rest, grpc),
        dataset, "predictions", "rewards", batch_size=50,
    ).start()
    rows = [
        {"event_id": f"crash-{i}", "event_time": "2024-05-01T12:00:00Z", "observation": [0.5] * 20}
        for i in range(5000)
    ]
    for start in range(0, len(rows), 100):
        logger.log_predictions(rows[start:start + 100])
    print("logged", flush=True)
    time.sleep(600)
    """
)


def test_a_killed_server_leaves_the_rest_for_the_next_logger(emulator, client, dataset, tmp_path):
    spool_path = tmp_path / "spool.db"
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SERVER, str(spool_path), emulator.rest_endpoint,
         emulator.grpc_endpoint, dataset],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert child.stdout.readline().strip() == "logged"
        deadline = time.monotonic() + 30
        while not _table_has_rows(client, dataset) and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()

    with EventSpool(spool_path) as spool:
        left = spool.pending_count()
        logger = _logger(spool, emulator.endpoints, dataset).start()
        assert logger.close()

    assert 0 < left < 5000
    _assert_exactly_once(client, dataset, {f"crash-{i}" for i in range(5000)})


def _table_has_rows(client: bigquery.Client, dataset: str) -> bool:
    try:
        return bool(_landed_ids(client, dataset))
    except GoogleAPICallError:  # the table does not exist until the logger's first round
        return False


def test_only_one_logger_ships_a_spool(spool):
    first = _logger(spool, NOWHERE, "unused").start()
    with pytest.raises(ShipperAlreadyRunning):
        _logger(spool, NOWHERE, "unused").start()
    first.close(flush_timeout_s=0)
    _logger(spool, NOWHERE, "unused").start().close(flush_timeout_s=0)


class ResettingProxy:
    """A TCP proxy to the emulator's REST port that breaks the first insertAll the hard way.

    It holds that request back, resets the client's connection (RST) before any
    reply, and only `delay_s` later hands the request to the emulator: the rows
    land after the client has seen its connection fail, as rows that were still
    committing in BigQuery would. Every other request passes through unchanged.
    """

    def __init__(self, upstream: str, delay_s: float) -> None:
        host, port = upstream.removeprefix("http://").split(":")
        self._upstream = (host, int(port))
        self._delay_s = delay_s
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self.late_insert_landed = threading.Event()
        self._tripped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()
        buffered = b""
        while chunk := _recv(client):
            buffered += chunk
            if not self._tripped and b"/insertAll" in buffered.split(b"\r\n", 1)[0]:
                request = _whole_request(client, buffered)
                self._tripped = True
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                upstream.close()
                threading.Timer(self._delay_s, self._send_late, args=(request,)).start()
                return
            upstream.sendall(buffered)
            buffered = b""
        upstream.close()

    def _send_late(self, request: bytes) -> None:
        with socket.create_connection(self._upstream) as late:
            late.sendall(request)
            if late.recv(65536).startswith(b"HTTP/1.1 200"):
                self.late_insert_landed.set()


def _recv(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    while data := _recv(source):
        try:
            sink.sendall(data)
        except OSError:
            return


def _whole_request(client: socket.socket, buffered: bytes) -> bytes:
    """Reads the rest of one HTTP/1.1 request with a Content-Length body."""
    while b"\r\n\r\n" not in buffered:
        buffered += client.recv(65536)
    head, body = buffered.split(b"\r\n\r\n", 1)
    length = int(re.search(rb"(?i)\r\ncontent-length: *(\d+)", head).group(1))
    while len(body) < length:
        body += client.recv(65536)
    return head + b"\r\n\r\n" + body


def test_rows_that_land_after_their_connection_was_reset_are_not_resent(
    emulator, client, dataset, spool
):
    """insert_all's read-back of what landed waits `settle_s`, so a late commit is seen, not
    duplicated."""
    proxy = ResettingProxy(emulator.rest_endpoint, delay_s=0.5)
    try:
        endpoints = BigQueryEndpoints(emulator.project, proxy.endpoint)
        logger = _logger(spool, endpoints, dataset, settle_s=4.0, ship_method=INSERT_ALL).start()
        rows = _predictions("reset", 20)
        logger.log_predictions(rows)
        assert logger.close(flush_timeout_s=60)
    finally:
        proxy.close()

    assert proxy.late_insert_landed.wait(30), "the held-back insert never reached the emulator"
    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})
    stats = logger.stats()
    assert (stats.already_landed, stats.shipped, stats.failed_attempts) == (20, 0, 1)


class AppendFaultProxy:
    """A TCP proxy to the emulator's gRPC port that breaks the first AppendRows carrying `marker`.

    It watches the bytes of each connection (gRPC sends proto rows uncompressed) and
    trips once, on the first request holding `marker`, in one of two ways:
    - `late_s` None: the request goes through, its answer does not: once the emulator
      has answered (the append landed), the answer is dropped and `answer_withheld`
      set; with `reset` the client's connection is then reset (RST), without it the
      connection just stays silent.
    - `late_s` a number: the request is held back, the client's connection reset, and
      only `late_s` later is the request handed to the emulator on the connection it
      was meant for: the append commits after the client saw its call fail.
      `late_append_answered` is set when the emulator answers it.
    Every other byte passes through unchanged; later connections are not touched.
    """

    def __init__(
        self, upstream: str, marker: bytes, late_s: Optional[float] = None, reset: bool = True
    ) -> None:
        host, port = upstream.split(":")
        self._upstream = (host, int(port))
        self._marker = marker
        self._late_s = late_s
        self._reset = reset
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self.answer_withheld = threading.Event()
        self.late_append_answered = threading.Event()
        self._tripped = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._listener.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(self._upstream)
        watching = threading.Event()  # this connection carried the marked request
        threading.Thread(
            target=self._answers, args=(upstream, client, watching), daemon=True
        ).start()
        while chunk := _recv(client):
            if self._marker in chunk and self._tripped.acquire(blocking=False):
                if self._late_s is not None:
                    self._deliver_late(client, upstream, chunk, watching)
                    return
                watching.set()
            try:
                upstream.sendall(chunk)
            except OSError:
                break
        upstream.close()

    def _answers(self, upstream: socket.socket, client: socket.socket, watching) -> None:
        """Upstream to client; after the marked request, its answer is dropped or observed."""
        while data := _recv(upstream):
            if watching.is_set() and b"/streams/" in data:
                if self._late_s is not None:
                    self.late_append_answered.set()
                    continue
                self.answer_withheld.set()
                if self._reset:
                    _reset(client)
                    upstream.close()
                    return
                continue
            if self.answer_withheld.is_set() and watching.is_set():
                continue  # a silent connection stays silent
            try:
                client.sendall(data)
            except OSError:
                pass

    def _deliver_late(self, client, upstream, chunk: bytes, watching) -> None:
        client.settimeout(0.2)  # the rest of the request, if it came in more than one segment
        held = chunk
        with contextlib.suppress(OSError):
            while more := client.recv(65536):
                held += more
        _reset(client)
        watching.set()
        time.sleep(self._late_s)
        upstream.sendall(held)


def _reset(sock: socket.socket) -> None:
    """Closes with RST, as a dropped connection looks to the peer.

    SHUT_RD first: a close alone would wait for another thread's blocked recv on it.
    """
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.shutdown(socket.SHUT_RD)
        sock.close()


def _via(emulator, proxy: AppendFaultProxy) -> BigQueryEndpoints:
    return BigQueryEndpoints(emulator.project, emulator.rest_endpoint, proxy.endpoint)


def test_an_append_whose_answer_is_lost_is_resent_at_its_offset_and_lands_once(
    emulator, client, dataset, spool
):
    """The append landed, the client saw a reset: the same rows at the same offset are refused
    with ALREADY_EXISTS and leave the spool unsent, with no settle delay to wait for."""
    rows = _predictions("lost", 20)
    proxy = AppendFaultProxy(emulator.grpc_endpoint, b"lost-7")
    try:
        logger = _logger(spool, _via(emulator, proxy), dataset, settle_s=60.0).start()
        logger.log_predictions(rows)
        assert logger.close(flush_timeout_s=30), logger.stats()
    finally:
        proxy.close()

    assert proxy.answer_withheld.is_set()
    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})
    stats = logger.stats()
    assert (stats.already_landed, stats.shipped, stats.failed_attempts) == (20, 0, 1)


def test_an_append_that_commits_after_its_connection_was_reset_lands_once(
    emulator, client, dataset, spool
):
    """The interleaving that makes insert_all write twice when a commit outlasts `settle_s`:
    the resend lands first, the late append arrives after it and is refused by its offset."""
    rows = _predictions("late", 20)
    proxy = AppendFaultProxy(emulator.grpc_endpoint, b"late-7", late_s=2.0)
    try:
        # The held-back request keeps its deadline: it must outlast the hold.
        logger = _logger(
            spool, _via(emulator, proxy), dataset, settle_s=0.1, request_timeout_s=30.0
        ).start()
        logger.log_predictions(rows)
        assert logger.close(flush_timeout_s=30), logger.stats()
        assert proxy.late_append_answered.wait(30), "the held-back append never reached BigQuery"
    finally:
        proxy.close()

    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})
    stats = logger.stats()
    assert (stats.shipped, stats.already_landed) == (20, 0) and stats.failed_attempts >= 1


def test_a_lost_stream_falls_back_to_the_read_back_and_a_new_stream(
    emulator, client, dataset, tmp_path
):
    """Rows sent on a stream that is then finalized: their fate is unknown to the spool, the
    table is asked after the settle delay, and the rest go to a new stream."""
    spool_path = tmp_path / "spool.db"
    rows = _predictions("sealed", 30)
    proxy = AppendFaultProxy(emulator.grpc_endpoint, b"sealed-0", reset=False)
    try:
        with EventSpool(spool_path) as spool:
            first = _logger(spool, _via(emulator, proxy), dataset, batch_size=10).start()
            first.log_predictions(rows[:10])
            assert proxy.answer_withheld.wait(30), "the first append never reached BigQuery"
            assert not first.close(flush_timeout_s=0)
            sealed = spool.write_stream(PREDICTIONS).stream_name
    finally:
        proxy.close()
    _finalize(emulator, sealed)

    with EventSpool(spool_path) as spool:
        spool.append_predictions(rows[10:])
        logger = _logger(spool, emulator.endpoints, dataset, batch_size=10).start()
        assert logger.close(flush_timeout_s=30), logger.stats()
        assert spool.write_stream(PREDICTIONS).stream_name != sealed
        assert (logger.stats().already_landed, logger.stats().shipped) == (10, 20)

    _assert_exactly_once(client, dataset, {row["event_id"] for row in rows})


def _finalize(emulator, stream_name: str) -> None:
    from google.cloud.bigquery_storage_v1 import BigQueryWriteClient
    from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (
        BigQueryWriteGrpcTransport,
    )

    channel = grpc.insecure_channel(emulator.grpc_endpoint, options=[("grpc.enable_http_proxy", 0)])
    writer = BigQueryWriteClient(transport=BigQueryWriteGrpcTransport(channel=channel))
    writer.finalize_write_stream(name=stream_name, timeout=10)
    channel.close()


def test_a_logger_killed_after_an_append_resends_it_at_the_same_offset_after_restart(
    emulator, client, dataset, tmp_path
):
    """SIGKILL while the third append's answer is on its way: the next logger on the spool finds
    that batch with its stream and offset and resends it there; BigQuery answers it landed."""
    spool_path = tmp_path / "spool.db"
    proxy = AppendFaultProxy(emulator.grpc_endpoint, b"crash-100", reset=False)
    child = subprocess.Popen(
        [sys.executable, "-c", CRASHING_SERVER, str(spool_path), emulator.rest_endpoint,
         proxy.endpoint, dataset],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        assert proxy.answer_withheld.wait(60), "the marked append never reached BigQuery"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
        child.stdout.close()
        proxy.close()

    with EventSpool(spool_path) as spool:
        stream = spool.write_stream(PREDICTIONS)
        in_flight = spool.next_batch(1000, PREDICTIONS)
        assert (stream.next_offset, len(in_flight)) == (150, 50)
        assert {(r.stream_name, r.stream_offset) for r in in_flight} == {(stream.stream_name, 100)}
        logger = _logger(spool, emulator.endpoints, dataset, settle_s=60.0).start()
        assert logger.close(flush_timeout_s=60), logger.stats()
        assert (logger.stats().already_landed, logger.stats().shipped) == (50, 4850)

    _assert_exactly_once(client, dataset, {f"crash-{i}" for i in range(5000)})


def test_the_write_api_needs_the_emulators_grpc_endpoint(spool):
    logger = _logger(spool, BigQueryEndpoints("local-proj", "http://127.0.0.1:9"), "unused")
    with pytest.raises(ValueError, match="set it \\(MLBANDITS_BQ_GRPC_ENDPOINT\\) or ship with"):
        logger.start()
    _logger(
        spool, BigQueryEndpoints("local-proj", "http://127.0.0.1:9"), "unused",
        ship_method=INSERT_ALL,
    ).start().close(flush_timeout_s=0)


def test_an_unknown_ship_method_is_refused_by_name(spool):
    with pytest.raises(ValueError, match="^ship_method 'bulk' is not one of write_api, insert_a"):
        _logger(spool, NOWHERE, "unused", ship_method="bulk")


@pytest.mark.parametrize(
    "env, method",
    [({}, INSERT_ALL), ({"MLBANDITS_SHIP_METHOD": "insert_all"}, INSERT_ALL),
     ({"MLBANDITS_SHIP_METHOD": " Write_API "}, WRITE_API)],
)
def test_the_container_reads_the_ship_method(env, method):
    settings = settings_from_env({"AIP_STORAGE_URI": "/models", **env})
    assert settings.ship_method == method


@pytest.mark.parametrize(
    "env, message",
    [
        (
            {"MLBANDITS_SHIP_METHOD": "storage"},
            "MLBANDITS_SHIP_METHOD: 'storage' is not one of write_api, insert_all (write_api: "
            "each row once in the table; insert_all: at least once)",
        ),
        (
            {
                "MLBANDITS_SHIP_METHOD": "write_api",
                "MLBANDITS_BQ_REST_ENDPOINT": "http://127.0.0.1:9050",
            },
            "MLBANDITS_BQ_GRPC_ENDPOINT: the Storage Write API (MLBANDITS_SHIP_METHOD=write_api) "
            "speaks gRPC: set it to the emulator's host:port beside MLBANDITS_BQ_REST_ENDPOINT, "
            "or set MLBANDITS_SHIP_METHOD=insert_all",
        ),
    ],
)
def test_a_bad_ship_method_setting_names_the_variable_and_the_fix(env, message):
    with pytest.raises(SettingsError) as error:
        settings_from_env({"AIP_STORAGE_URI": "/models", **env})
    assert str(error.value) == message


@pytest.mark.parametrize(
    "env",
    [
        {"MLBANDITS_BQ_REST_ENDPOINT": "http://127.0.0.1:9050", "MLBANDITS_SHIP_LOGS": "false"},
        {"MLBANDITS_BQ_REST_ENDPOINT": "http://127.0.0.1:9", "MLBANDITS_SHIP_METHOD": "insert_all"},
    ],
)
def test_a_rest_only_emulator_is_fine_when_nothing_uses_the_write_api(env):
    assert settings_from_env({"AIP_STORAGE_URI": "/models", **env}).endpoints.grpc_endpoint is None
