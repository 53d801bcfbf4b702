"""The real server refuses out-of-contract values with a 400 naming the field, value and range.

The server runs on 127.0.0.1 over the real SQLite spool (its logger never
ships here); nothing a refused request carried reaches the spool.
"""

import asyncio
import json
from pathlib import Path
from typing import List, Tuple

import aiohttp
import numpy as np
import pytest

from bandit_core.bigquery.clients import BigQueryEndpoints
from serving.event_spool import PREDICTIONS, REWARDS, EventSpool
from serving.model_registry import ModelRegistry
from serving.policy_scorer import load_policy_scorer
from serving.prediction_logger import PredictionLogger
from serving.server import BanditServer, start_server
from serving.settings import ServingSettings
from tests.helpers.policy_factory import save_linucb_policy

DIM = 4
USER_RANGE = "[1, 9223372036854775807]"


@pytest.fixture(scope="module")
def registry(tmp_path_factory) -> ModelRegistry:
    base = tmp_path_factory.mktemp("push")
    save_linucb_policy(base / "1", seed=0, dim=DIM, arms=3)
    registry = ModelRegistry(str(base), load_policy_scorer)
    assert registry.refresh() is not None
    return registry


def _exchange(
    registry: ModelRegistry, spool_path: Path, predict_bodies: List[dict], reward_values: List
) -> Tuple[List[tuple], List[tuple], EventSpool]:
    """Posts the predict bodies, then one reward per value for the first served event."""
    spool = EventSpool(spool_path)
    logger = PredictionLogger(
        spool, BigQueryEndpoints("local-proj", "http://127.0.0.1:9"), "ds", "predictions", "rewards"
    )
    server = BanditServer(
        registry, logger, ServingSettings(host="127.0.0.1", port=0), np.random.default_rng(0)
    )

    async def post(session: aiohttp.ClientSession, path: str, body) -> tuple:
        async with session.post(path, data=json.dumps(body).encode()) as response:
            return response.status, await response.json()

    async def scenario():
        runner = await start_server(server)
        host, port = runner.addresses[0][:2]
        try:
            async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
                first = {"instances": [{"observation": [0.0] * DIM}]}
                served = await post(session, "/predict", first)
                assert served[0] == 200, served
                event_id = served[1]["predictions"][0]["event_id"]
                predicted = [await post(session, "/predict", body) for body in predict_bodies]
                rewarded = [
                    await post(session, "/reward", {"event_id": event_id, "reward": value})
                    for value in reward_values
                ]
                return predicted, rewarded
        finally:
            await runner.cleanup()

    predicted, rewarded = asyncio.run(scenario())
    return predicted, rewarded, spool


@pytest.mark.parametrize(
    "user_id, message",
    [
        (0, f"instances[0].user_id: 0 is outside the allowed range {USER_RANGE}"),
        (-7, f"instances[0].user_id: -7 is outside the allowed range {USER_RANGE}"),
        (2**63, f"instances[0].user_id: {2**63} is outside the allowed range {USER_RANGE}"),
    ],
)
def test_a_user_id_outside_the_contract_gets_400_and_logs_nothing(
    registry, tmp_path, user_id, message
):
    body = {"instances": [{"observation": [0.1] * DIM, "user_id": user_id}]}
    (answer,), _, spool = _exchange(registry, tmp_path / "spool.sqlite", [body], [])
    assert answer == (400, {"error": message})
    assert len(spool.peek(10, PREDICTIONS)) == 1  # only the scenario's own valid prediction
    spool.close()


@pytest.mark.parametrize(
    "reward, message",
    [
        (1e300, "reward: 1e+300 is outside the allowed range [-5.0, 10.0]"),
        (-5.5, "reward: -5.5 is outside the allowed range [-5.0, 10.0]"),
        (11, "reward: 11 is outside the allowed range [-5.0, 10.0]"),
    ],
)
def test_a_reward_outside_the_contract_gets_400_and_the_event_can_still_be_rewarded(
    registry, tmp_path, reward, message
):
    _, answers, spool = _exchange(registry, tmp_path / "spool.sqlite", [], [reward, 10.0])
    assert answers == [(400, {"error": message}), (200, {"status": "accepted"})]
    assert [record.payload["reward"] for record in spool.peek(10, REWARDS)] == [10.0]
    spool.close()


def test_values_at_the_contract_bounds_are_served(registry, tmp_path):
    bodies = [
        {"instances": [{"observation": [0.1] * DIM, "user_id": user_id}]}
        for user_id in (1, 10**12, 2**63 - 1)
    ]
    predicted, rewarded, spool = _exchange(registry, tmp_path / "spool.sqlite", bodies, [-5])
    assert [status for status, _ in predicted + rewarded] == [200, 200, 200, 200]
    logged = {record.payload.get("user_id") for record in spool.peek(10, PREDICTIONS)}
    assert {1, 10**12, 2**63 - 1} <= logged
    spool.close()
