"""The real aiohttp server on 127.0.0.1: predictions, rewards, validation, health, hot reload."""

import asyncio
import contextlib
import json
import shutil
import threading
from pathlib import Path
from typing import AsyncIterator, List, Optional

import aiohttp
import numpy as np
import pytest

from bandit_core.bigquery.clients import BigQueryEndpoints
from serving.__main__ import SettingsError, settings_from_env
from serving.event_spool import EventSpool, RewardStatus
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


class RecordingLogger:
    """Test double of PredictionLogger: remembers rows, answers rewards like the spool."""

    def __init__(self) -> None:
        self.predictions: List[dict] = []
        self.rewards: List[dict] = []
        self.fail_with: Optional[Exception] = None
        self._lock = threading.Lock()

    def log_predictions(self, rows: List[dict]) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        with self._lock:
            self.predictions.extend(rows)

    def log_reward(self, event_id: str, row: dict) -> RewardStatus:
        with self._lock:
            if event_id not in {row["event_id"] for row in self.predictions}:
                return RewardStatus.UNKNOWN_EVENT
            if event_id in {row["event_id"] for row in self.rewards}:
                return RewardStatus.DUPLICATE
            self.rewards.append(row)
            return RewardStatus.ACCEPTED


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
        assert row["user_id"] == instance.get("user_id")
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


def test_a_prediction_that_cannot_be_logged_is_not_returned(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1"))
    logger = RecordingLogger()
    logger.fail_with = OSError("disk full")

    async def scenario():
        async with serving(registry, logger) as session:
            failed = await post(
                session, "/predict", {"instances": [{"observation": observation()}]}
            )
            logger.fail_with = None
            recovered = await post(
                session, "/predict", {"instances": [{"observation": observation()}]}
            )
            return failed, recovered

    (status, body), (recovered_status, _) = asyncio.run(scenario())
    assert status == 503 and "predictions" not in body and "could not be logged" in body["error"]
    assert recovered_status == 200


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


def test_rows_pass_the_real_logger_and_its_spool(tmp_path, policies):
    """The real PredictionLogger (not started: nothing ships) accepts the server's rows."""
    registry = loaded_registry(push(policies[0], tmp_path, "1"))
    spool = EventSpool(tmp_path / "spool.sqlite")
    logger = PredictionLogger(
        spool, BigQueryEndpoints("local-proj", "http://127.0.0.1:9"), "ds", "predictions", "rewards"
    )

    async def scenario():
        async with serving(registry, logger) as session:
            status, body = await post(
                session,
                "/predict",
                {"instances": [{"observation": observation(), "user_id": 3}] * 2},
            )
            assert status == 200, body
            event_id = body["predictions"][0]["event_id"]
            return [
                await post(session, "/reward", {"event_id": event_id, "reward": 1}),
                await post(session, "/reward", {"event_id": event_id, "reward": 1}),
                await post(session, "/reward", {"event_id": "unknown", "reward": 1}),
            ]

    statuses = [status for status, _ in asyncio.run(scenario())]
    assert statuses == [200, 409, 404]
    assert spool.pending_count("predictions") == 2 and spool.pending_count("rewards") == 1
    spool.close()


def test_a_stray_directory_with_a_unicode_digit_does_not_stop_polling(tmp_path, policies):
    base = tmp_path / "push"
    (base / "²").mkdir(parents=True)
    push(policies[0], base, "7")
    registry = ModelRegistry(str(base), load_policy_scorer)
    registry.refresh()
    assert registry.current.version == "7"


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

    async def scenario():
        async with serving(registry) as session:
            while registry.current is None:
                await asyncio.sleep(0.01)
            stop, seen = asyncio.Event(), [[] for _ in range(4)]
            clients = [asyncio.create_task(client_loop(session, stop, s)) for s in seen]
            await asyncio.sleep(0.3)
            await asyncio.get_running_loop().run_in_executor(None, push, policies[1], base, "200")
            deadline = asyncio.get_running_loop().time() + 20
            while (
                registry.current.version != "200" and asyncio.get_running_loop().time() < deadline
            ):
                await asyncio.sleep(0.01)
            await asyncio.sleep(0.3)
            stop.set()
            await asyncio.gather(*clients)
            return seen

    try:
        seen = asyncio.run(scenario())
    finally:
        registry.stop()
    for per_client in seen:
        assert per_client and all(status == 200 for status, _ in per_client), per_client
        versions = [version for _, version in per_client]
        assert versions[0] == "100" and versions[-1] == "200"
        # Once a client saw the new version it never sees the old one again.
        assert versions == sorted(versions, key=int)


def test_broken_and_incomplete_versions_are_skipped_then_retried_when_fixed(tmp_path, policies):
    base = tmp_path / "push"
    push(policies[0], base, "100")
    incomplete = base / "300"
    incomplete.mkdir()
    shutil.copy(policies[1] / "saved_model.pb", incomplete)
    loads = []
    registry = ModelRegistry(str(base), lambda path: loads.append(path) or load_policy_scorer(path))
    assert registry.refresh().version == "100"

    broken = push(policies[1], base, "200")
    (broken / "variables" / "variables.index").write_bytes(b"truncated")
    assert registry.refresh().version == "100", "a broken version must not replace a good one"
    assert registry.refresh().version == "100"
    assert [Path(path).name for path in loads] == ["100", "200"], (
        "the incomplete version is not tried, the unchanged broken one not twice"
    )

    shutil.copy(policies[1] / "variables" / "variables.index", broken / "variables")
    assert registry.refresh().version == "200", "a repaired version is retried"
    shutil.rmtree(incomplete)
    push(policies[0], base, "300")
    assert registry.refresh().version == "300"


def test_storage_uri_may_be_a_single_policy_dir(tmp_path, policies):
    registry = loaded_registry(push(policies[0], tmp_path, "1795633363"))
    assert registry.current.version == "1795633363"
    assert registry.refresh() is registry.current


def test_settings_come_from_vertex_and_mlbandits_variables():
    settings = settings_from_env(
        {
            "AIP_STORAGE_URI": "gs://bucket/serving_model",
            "AIP_HTTP_PORT": "9000",
            "AIP_PREDICT_ROUTE": "/v1/predict",
            "MLBANDITS_HOST": "0.0.0.0",
            "MLBANDITS_EXPLORATION": "boltzmann",
            "MLBANDITS_TEMPERATURE": "0.5",
            "MLBANDITS_BQ_REST_ENDPOINT": "http://127.0.0.1:9050",
            "MLBANDITS_SHIP_LOGS": "false",
        }
    )
    assert settings.serving == ServingSettings(
        host="0.0.0.0",
        port=9000,
        exploration="boltzmann",
        temperature=0.5,
        predict_route="/v1/predict",
    )
    assert settings.endpoints.rest_endpoint == "http://127.0.0.1:9050" and not settings.ship_logs
    assert (settings.dataset, settings.predictions_table) == ("mlbandits", "predictions")


def test_the_container_listens_on_vertex_ais_port_by_default():
    assert settings_from_env({"AIP_STORAGE_URI": "/models"}).serving.port == 8080


@pytest.mark.parametrize(
    "env, variable",
    [
        ({}, "AIP_STORAGE_URI"),
        ({"AIP_HTTP_PORT": "http"}, "AIP_HTTP_PORT"),
        ({"MLBANDITS_EPSILON": "2"}, "MLBANDITS_EPSILON"),
        ({"MLBANDITS_SHIP_LOGS": "maybe"}, "MLBANDITS_SHIP_LOGS"),
        ({"MLBANDITS_SCORER": "gpu"}, "MLBANDITS_SCORER"),
        (
            {"MLBANDITS_SCORER": "savedmodel", "MLBANDITS_EXPLORATION": "boltzmann"},
            "MLBANDITS_EXPLORATION",
        ),
    ],
)
def test_bad_settings_name_the_variable(env, variable):
    if variable != "AIP_STORAGE_URI":
        env = {"AIP_STORAGE_URI": "/models", **env}
    with pytest.raises(SettingsError, match=variable):
        settings_from_env(env)


def test_requests_ready_together_share_one_logger_call():
    logger = RecordingLogger()
    calls = []
    log_predictions = logger.log_predictions
    logger.log_predictions = lambda rows: calls.append(len(rows)) or log_predictions(rows)

    async def scenario():
        batcher = PredictionBatcher(logger)
        await asyncio.gather(
            *(batcher.log([{"event_id": f"{i}-{j}"} for j in range(i)]) for i in range(1, 6))
        )
        await batcher.log([{"event_id": "alone"}])
        logger.fail_with = OSError("disk full")
        return await asyncio.gather(
            *(batcher.log([{"event_id": "x"}]) for _ in range(3)), return_exceptions=True
        )

    failures = asyncio.run(scenario())
    assert calls == [15, 1, 3]
    assert len(logger.predictions) == 16
    assert all(isinstance(failure, OSError) for failure in failures)
