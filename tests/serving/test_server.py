"""The real aiohttp server on 127.0.0.1 over the real SQLite spool: predictions, rewards,
validation, health, hot reload, a full spool."""

import asyncio
import contextlib
import json
import logging
import shutil
import tempfile
import time
from pathlib import Path
from typing import AsyncIterator, List, Optional

import aiohttp
import numpy as np
import pytest
from aiohttp import web

from bandit_core.bigquery.clients import BigQueryEndpoints
from serving.__main__ import build_app, settings_from_env
from serving.event_spool import PREDICTIONS, REWARDS, WAL_SIZE_LIMIT_BYTES, EventSpool
from serving.model_registry import ModelRegistry
from serving.policy_scorer import load_policy_scorer
from serving.prediction_logger import PredictionLogger
from serving.server import BanditServer, PredictionBatcher, start_server
from serving.settings import ServingSettings
from tests.helpers.policy_factory import save_linucb_policy

DIM, ARMS = 20, 20


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> List[Path]:
    root = tmp_path_factory.mktemp("trained")
    dirs = [root / "first", root / "second"]
    for seed, policy_dir in enumerate(dirs):
        save_linucb_policy(policy_dir, seed, DIM, ARMS)
    return dirs


class RecordingLogger(PredictionLogger):
    """The real logger over a real spool in a temporary directory, never started (nothing
    ships); `predictions` and `rewards` read back the rows the spool holds."""

    def __init__(self, max_bytes: Optional[int] = None) -> None:
        self._directory = tempfile.TemporaryDirectory(prefix="spool-")
        self.spool = EventSpool(Path(self._directory.name) / "spool.sqlite", max_bytes=max_bytes)
        super().__init__(
            self.spool,
            BigQueryEndpoints("local-proj", "http://127.0.0.1:9"),
            "ds",
            "predictions",
            "rewards",
        )

    @property
    def predictions(self) -> List[dict]:
        return [record.payload for record in self.spool.peek(1_000_000, PREDICTIONS)]

    @property
    def rewards(self) -> List[dict]:
        return [record.payload for record in self.spool.peek(1_000_000, REWARDS)]


def push(policy: Path, base: Path, version: str) -> Path:
    """Copies a policy into the push directory file by file, as TFX's Pusher does."""
    return Path(shutil.copytree(policy, base / version))


def loaded_registry(storage: Path, poll_interval_s: float = 10.0) -> ModelRegistry:
    registry = ModelRegistry(str(storage), load_policy_scorer, poll_interval_s)
    registry.refresh()
    return registry


@contextlib.asynccontextmanager
async def serving(
    registry: ModelRegistry,
    logger=None,
    **settings,
) -> AsyncIterator[aiohttp.ClientSession]:
    """The server on a free port of 127.0.0.1 and a client session pointed at it."""
    server = BanditServer(
        registry,
        logger if logger is not None else RecordingLogger(),
        ServingSettings(host="127.0.0.1", port=0, **settings),
        rng=np.random.default_rng(0),
    )
    runner = await start_server(server)
    host, port = runner.addresses[0][:2]
    try:
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            yield session
    finally:
        await runner.cleanup()


def observation(seed: int = 0) -> List[float]:
    return np.random.default_rng(seed).normal(size=DIM).tolist()


async def post(session: aiohttp.ClientSession, path: str, body) -> tuple:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    async with session.post(path, data=data) as response:
        return response.status, await response.json()


def test_predict_batch_is_logged_before_it_is_returned(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1700000000"))
    logger = RecordingLogger()
    instances = [
        {"observation": observation(1), "user_id": 7},
        {"observation": observation(2)},
        {"observation": observation(3), "user_id": None},
    ]

    async def scenario():
        async with serving(registry, logger) as session:
            return await post(session, "/predict", {"instances": instances})

    status, body = asyncio.run(scenario())
    assert status == 200, body
    predictions = body["predictions"]
    assert len(predictions) == 3
    for prediction in predictions:
        assert set(prediction) == {"action", "propensity", "event_id", "model_version"}
        assert 0 <= prediction["action"] < ARMS
        assert prediction["propensity"] in (
            pytest.approx(0.9 + 0.1 / ARMS),
            pytest.approx(0.1 / ARMS),
        )
        assert len(prediction["event_id"]) == 32 and int(prediction["event_id"], 16) >= 0
        assert prediction["model_version"] == "1700000000"
    assert len({p["event_id"] for p in predictions}) == 3
    logged = {row["event_id"]: row for row in logger.predictions}
    assert set(logged) == {p["event_id"] for p in predictions}
    for instance, prediction in zip(instances, predictions):
        row = logged[prediction["event_id"]]
        assert row["observation"] == instance["observation"]
        assert row.get("user_id") == instance.get("user_id")
        assert (row["action"], row["propensity"]) == (
            prediction["action"],
            prediction["propensity"],
        )
        assert row["model_version"] == "1700000000"
        assert row["policy_id"] == "LinUCB+epsilon_greedy(epsilon=0.1)"
        assert row["event_time"].endswith("+00:00")


def test_greedy_server_serves_the_policy_action_with_propensity_one(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1"))
    observations = np.random.default_rng(5).normal(size=(50, DIM))

    async def scenario():
        async with serving(registry, epsilon=0.0) as session:
            return await post(
                session,
                "/predict",
                {"instances": [{"observation": o} for o in observations.tolist()]},
            )

    status, body = asyncio.run(scenario())
    assert status == 200
    expected = registry.current.scorer.greedy_actions(observations)
    assert [p["action"] for p in body["predictions"]] == expected.tolist()
    assert {p["propensity"] for p in body["predictions"]} == {1.0}


BAD_PREDICT_BODIES = [
    (b"not json", "request body: not valid JSON"),
    ({"instances": []}, "instances: expected 1 to 3 instances, got 0"),
    (
        {"instances": [{"observation": observation()}] * 4},
        "instances: expected 1 to 3 instances, got 4",
    ),
    ({"instances": [{"observation": observation()}], "extra": 1}, "extra: unexpected field"),
    ({"rows": []}, "rows: unexpected field"),
    ({}, "instances: required field is missing"),
    (
        {"instances": [{"observation": observation(), "colour": 1}]},
        "instances[0].colour: unexpected field",
    ),
    ({"instances": [{"user_id": 3}]}, "instances[0].observation: required field is missing"),
    (
        {"instances": [{"observation": observation()}, {"observation": observation()[:19]}]},
        "instances[1].observation: expected 20 numbers, got 19",
    ),
    (
        b'{"instances": [{"observation": [NaN' + b", 0" * 19 + b"]}]}",
        "instances[0].observation[0]: expected a finite number",
    ),
    (
        b'{"instances": [{"observation": [0, Infinity' + b", 0" * 18 + b"]}]}",
        "instances[0].observation[1]: expected a finite number",
    ),
    (
        {"instances": [{"observation": ["x"] * 20}]},
        "instances[0].observation[0]: expected a number, got string",
    ),
    (
        {"instances": [{"observation": observation(), "user_id": "u1"}]},
        "instances[0].user_id: expected an integer",
    ),
    ({"instances": "all"}, "instances: expected an array, got string"),
]


def test_each_bad_predict_request_gets_400_and_the_server_keeps_serving(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1"))

    async def scenario():
        results = []
        async with serving(registry, max_instances=3) as session:
            for body, _ in BAD_PREDICT_BODIES:
                results.append(await post(session, "/predict", body))
            results.append(
                await post(session, "/predict", {"instances": [{"observation": observation()}]})
            )
            async with session.get("/predict") as wrong_method:
                results.append((wrong_method.status, await wrong_method.json()))
        return results

    results = asyncio.run(scenario())
    for (status, body), (_, message) in zip(results, BAD_PREDICT_BODIES):
        assert status == 400, body
        assert body["error"].startswith(message), body
    assert results[len(BAD_PREDICT_BODIES)][0] == 200
    assert results[-1][0] == 405 and "error" in results[-1][1]


def test_a_full_spool_answers_503_saying_so_logs_once_and_recovers_when_rows_leave(
    tmp_path, policies, caplog
):
    registry = loaded_registry(push(policies[0], tmp_path, "1"))
    logger = RecordingLogger(max_bytes=64 * 1024)
    one = {"instances": [{"observation": observation()}]}

    async def scenario():
        async with serving(registry, logger) as session:
            answers = [await post(session, "/predict", one)]
            while answers[-1][0] == 200 and len(answers) < 1000:
                answers.append(await post(session, "/predict", one))
            event_id = answers[0][1]["predictions"][0]["event_id"]
            answers.append(await post(session, "/predict", one))
            answers.append(await post(session, "/reward", {"event_id": event_id, "reward": 1.0}))
            shipped = logger.spool.peek(20)  # as the shipper removes rows BigQuery confirmed
            logger.spool.remove(record.seq for record in shipped)
            return answers, await post(session, "/predict", one)

    with caplog.at_level(logging.INFO, logger="serving.server"):
        answers, recovered = asyncio.run(scenario())
    refused = answers[-3:]
    assert len(answers) < 1000 and all(status == 200 for status, _ in answers[:-3])
    for status, body in refused:
        assert status == 503 and "predictions" not in body
        assert "is full (its cap of 0.0625 MB)" in body["error"]
        assert "MLBANDITS_SPOOL_MAX_MB" in body["error"] and body["error"].endswith("retry later")
    assert recovered[0] == 200, recovered
    messages = [record.getMessage() for record in caplog.records]
    assert len([m for m in messages if "until the spool has room" in m]) == 1, messages
    assert len([m for m in messages if "has room again" in m]) == 1, messages
    assert logger.spool.pending_count() == len(answers) - 3 - 20 + 1


def test_a_prediction_that_cannot_be_logged_is_not_returned(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1"))
    logger = RecordingLogger()
    logger.spool.close()

    async def scenario():
        async with serving(registry, logger) as session:
            return await post(session, "/predict", {"instances": [{"observation": observation()}]})

    status, body = asyncio.run(scenario())
    assert status == 503 and "predictions" not in body and "could not be logged" in body["error"]


def test_rewards_accepted_once_unknown_404_duplicate_409_bad_400(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1"))
    logger = RecordingLogger()

    async def scenario():
        async with serving(registry, logger) as session:
            _, body = await post(
                session, "/predict", {"instances": [{"observation": observation()}]}
            )
            event_id = body["predictions"][0]["event_id"]
            return [
                await post(session, "/reward", {"event_id": event_id, "reward": 4.5}),
                await post(session, "/reward", {"event_id": event_id, "reward": 3.0}),
                await post(session, "/reward", {"event_id": "0" * 32, "reward": 1.0}),
                await post(session, "/reward", {"event_id": event_id}),
                await post(session, "/reward", {"event_id": event_id, "reward": "high"}),
                await post(session, "/reward", b"{"),
            ], event_id

    results, event_id = asyncio.run(scenario())
    assert results[0] == (200, {"status": "accepted"})
    assert results[1][0] == 409 and "already recorded" in results[1][1]["error"]
    assert results[2][0] == 404 and results[2][1]["error"].startswith("event_id: no prediction")
    assert [status for status, _ in results[3:]] == [400, 400, 400]
    assert [body["error"].split(":")[0] for _, body in results[3:]] == [
        "reward",
        "reward",
        "request body",
    ]
    assert len(logger.rewards) == 1
    reward = logger.rewards[0]
    assert (reward["event_id"], reward["reward"]) == (event_id, 4.5)
    assert reward["reward_time"].endswith("+00:00")


def test_health_is_503_until_a_policy_loads(tmp_path, policies):
    base = tmp_path / "push"
    base.mkdir()
    registry = ModelRegistry(str(base), load_policy_scorer)

    async def scenario():
        async with serving(registry) as session:
            async with session.get("/health") as before:
                before = (before.status, await before.json())
            predict_before = await post(
                session, "/predict", {"instances": [{"observation": observation()}]}
            )
            push(policies[0], base, "42")
            await asyncio.get_running_loop().run_in_executor(None, registry.refresh)
            async with session.get("/health") as after:
                after = (after.status, await after.json())
            return before, predict_before, after

    before, predict_before, after = asyncio.run(scenario())
    assert before[0] == 503 and before[1]["status"] == "loading"
    assert predict_before[0] == 503 and "no policy loaded" in predict_before[1]["error"]
    assert after == (200, {"status": "ok", "model_version": "42"})


def test_hot_reload_under_load_drops_no_request(tmp_path, policies):
    base = tmp_path / "push"
    push(policies[0], base, "100")
    registry = ModelRegistry(str(base), load_policy_scorer, poll_interval_s=0.02)
    registry.start()

    async def client_loop(session, stop: asyncio.Event, seen: list) -> None:
        while not stop.is_set():
            status, body = await post(
                session, "/predict", {"instances": [{"observation": observation()}]}
            )
            seen.append(
                (status, body["predictions"][0]["model_version"] if status == 200 else body)
            )

    async def until(condition, what: str) -> None:
        deadline = time.monotonic() + 30
        while not condition():
            assert time.monotonic() < deadline, f"timed out waiting until {what}"
            await asyncio.sleep(0.01)

    def every_client_saw(version: str) -> bool:
        return all(any(answer[1] == version for answer in s) for s in seen)

    async def scenario():
        async with serving(registry) as session:
            await until(lambda: registry.current is not None, "a policy loads")
            stop = asyncio.Event()
            clients = [asyncio.create_task(client_loop(session, stop, s)) for s in seen]
            await until(lambda: every_client_saw("100"), "every client was answered")
            await asyncio.get_running_loop().run_in_executor(None, push, policies[1], base, "200")
            await until(lambda: every_client_saw("200"), "every client saw the new version")
            stop.set()
            await asyncio.gather(*clients)

    seen: List[list] = [[] for _ in range(4)]

    try:
        asyncio.run(scenario())
    finally:
        registry.stop()
    for per_client in seen:
        assert per_client and all(status == 200 for status, _ in per_client), per_client
        versions = [version for _, version in per_client]
        assert versions[0] == "100" and versions[-1] == "200"
        # Once a client saw the new version it never sees the old one again.
        assert versions == sorted(versions, key=int)


class CountingLogger(RecordingLogger):
    """The spooled logger, counting the rows of each `log_predictions` call."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: List[int] = []

    def log_predictions(self, rows: List[dict]) -> None:
        self.calls.append(len(rows))
        super().log_predictions(rows)


def test_requests_ready_together_share_one_logger_call():
    logger = CountingLogger()

    def row(event_id: str) -> dict:
        return {"event_id": event_id, "event_time": "2024-05-01T12:00:00+00:00"}

    async def scenario():
        batcher = PredictionBatcher(logger)
        await asyncio.gather(
            *(batcher.log([row(f"{i}-{j}") for j in range(i)]) for i in range(1, 6))
        )
        await batcher.log([row("alone")])
        return await asyncio.gather(
            batcher.log([row("new")]), batcher.log([row("alone")]), return_exceptions=True
        )

    failures = asyncio.run(scenario())
    assert logger.calls == [15, 1, 2]
    assert len(logger.predictions) == 16, "a failed call spools none of its rows"
    assert all("already served" in str(failure) for failure in failures), failures


def test_without_shipping_the_container_still_keeps_its_spool_bounded(tmp_path, policies):
    """MLBANDITS_SHIP_LOGS=false once meant no WAL checkpoint at all: ~20 KB per commit, forever."""
    push(policies[0], tmp_path / "push", "1")
    spool_path = tmp_path / "spool.sqlite"
    wal = spool_path.with_name(spool_path.name + "-wal")
    settings = settings_from_env(
        {
            "AIP_STORAGE_URI": str(tmp_path / "push"),
            "AIP_HTTP_PORT": "0",
            "MLBANDITS_SPOOL_PATH": str(spool_path),
            "MLBANDITS_SHIP_LOGS": "false",
            "MLBANDITS_MODEL_POLL_S": "0.05",
        }
    )
    one = {"instances": [{"observation": observation()}]}

    async def scenario():
        runner = web.AppRunner(build_app(settings))
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        try:
            async with aiohttp.ClientSession(f"http://127.0.0.1:{port}") as session:
                deadline = time.monotonic() + 30
                while (await session.get("/health")).status != 200:
                    assert time.monotonic() < deadline, "no policy loaded"
                    await asyncio.sleep(0.05)
                for _ in range(400):  # one commit each: about 7 MB of WAL unless checkpointed
                    assert (await post(session, "/predict", one))[0] == 200
                deadline = time.monotonic() + 20
                while wal.stat().st_size > WAL_SIZE_LIMIT_BYTES:
                    assert time.monotonic() < deadline, f"the WAL stayed at {wal.stat().st_size} B"
                    assert (await post(session, "/predict", one))[0] == 200
                    await asyncio.sleep(0.1)
        finally:
            await runner.cleanup()

    asyncio.run(scenario())
    with EventSpool(spool_path) as spool:
        assert spool.pending_count(PREDICTIONS) >= 400, "the rows wait in the spool"
