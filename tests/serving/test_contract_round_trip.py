"""Every value the server accepts is one the pipeline accepts: a seeded property test.

Random valid requests (user ids, observations and rewards anywhere in the
data contract, its bounds included) go through the real server, the real
SQLite spool and the real shipper into the emulator's predictions and rewards
tables; the retraining source query then finds no row to quarantine, and the
rows ExampleGen would read (through the emulator ExampleGen's own reader and
TFX's row-to-Example conversion) show no anomaly against the curated schema.
ExampleGen, StatisticsGen and ExampleValidator are not run as components:
their work is done in-process with the same functions (TFX's `row_to_example`,
TFDV's in-memory statistics and `validate_statistics`), which keeps the test
to seconds.
"""

import asyncio
import json
import uuid
from typing import List

import aiohttp
import numpy as np
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tfx.extensions.google_cloud_big_query import utils as bigquery_utils
from tfx_bsl.coders import example_coder

from bandit_core.bigquery.clients import make_bigquery_client
from bandit_core.data_contract import (
    FLOAT32_MAX,
    REWARD_MAX,
    REWARD_MIN,
    USER_ID_MAX,
    USER_ID_MIN,
    DataContract,
)
from custom_components.bandit_schema_gen.schema import build_schema
from custom_components.bigquery_ingester.queries import (
    build_accepted_query,
    build_serving_logs_query,
)
from custom_components.bigquery_ingester.table_reader import read_query_rows
from custom_components.data_contract_gate import quarantine
from serving.event_spool import EventSpool
from serving.model_registry import ModelRegistry
from serving.policy_scorer import load_policy_scorer
from serving.prediction_logger import PredictionLogger
from serving.server import BanditServer, start_server
from serving.settings import ServingSettings
from tests.helpers.policy_factory import save_linucb_policy
from tfx_pipeline.local.emulator import BigQueryEmulator

DIM, ARMS = 6, 5
REQUESTS = 40
SHIP_DEADLINE_S = 60.0


def _random_user_id(rng: np.random.Generator):
    choice = rng.integers(5)
    if choice == 0:
        return None
    if choice == 1:
        return [USER_ID_MIN, USER_ID_MAX][rng.integers(2)]
    return int(rng.integers(USER_ID_MIN, 2**62))


def _random_observation(rng: np.random.Generator) -> List[float]:
    """Mostly ordinary features, sometimes the float32 extremes, zeros or tiny values."""
    values = rng.normal(size=DIM)
    extremes = np.array([FLOAT32_MAX, -FLOAT32_MAX, 0.0, 1e-40, -3.0e38])
    spoiled = rng.random(DIM) < 0.1
    values[spoiled] = rng.choice(extremes, size=spoiled.sum())
    return values.tolist()


def _random_reward(rng: np.random.Generator):
    choice = rng.integers(6)
    if choice == 0:
        return [REWARD_MIN, REWARD_MAX][rng.integers(2)]
    if choice == 1:
        return int(rng.integers(int(REWARD_MIN), int(REWARD_MAX) + 1))
    return float(rng.uniform(REWARD_MIN, REWARD_MAX))


async def _serve(server: BanditServer, rng: np.random.Generator) -> int:
    """Sends the random requests; returns how many events were rewarded."""
    runner = await start_server(server)
    host, port = runner.addresses[0][:2]
    rewarded = 0
    try:
        async with aiohttp.ClientSession(f"http://{host}:{port}") as session:
            for _ in range(REQUESTS):
                instances = []
                for _ in range(int(rng.integers(1, 4))):
                    instance = {"observation": _random_observation(rng)}
                    user_id = _random_user_id(rng)
                    if user_id is not None or rng.random() < 0.5:
                        instance["user_id"] = user_id
                    instances.append(instance)
                body = json.dumps({"instances": instances}).encode()
                async with session.post("/predict", data=body) as response:
                    answer = await response.json()
                    assert response.status == 200, answer
                for prediction in answer["predictions"]:
                    if rng.random() < 0.8:
                        reward = {"event_id": prediction["event_id"], "reward": _random_reward(rng)}
                        async with session.post("/reward", json=reward) as response:
                            assert response.status == 200, await response.text()
                        rewarded += 1
    finally:
        await runner.cleanup()
    return rewarded


def test_random_valid_requests_reach_training_with_no_quarantine_and_no_anomaly(tmp_path):
    rng = np.random.default_rng(20261201)
    save_linucb_policy(tmp_path / "push" / "1", seed=0, dim=DIM, arms=ARMS)
    registry = ModelRegistry(str(tmp_path / "push"), load_policy_scorer)
    assert registry.refresh() is not None
    contract = DataContract(observation_dim=DIM, num_actions=ARMS)
    dataset = f"roundtrip_{uuid.uuid4().hex[:8]}"
    with BigQueryEmulator() as emulator:
        logger = PredictionLogger(
            EventSpool(tmp_path / "spool.sqlite"),
            emulator.endpoints,
            dataset,
            "predictions",
            "rewards",
        ).start()
        server = BanditServer(
            registry, logger, ServingSettings(host="127.0.0.1", port=0, epsilon=0.5), rng
        )
        rewarded = asyncio.run(_serve(server, rng))
        assert logger.close(flush_timeout_s=SHIP_DEADLINE_S), logger.stats()

        project = emulator.project
        source = build_serving_logs_query(
            f"{project}.{dataset}.predictions", f"{project}.{dataset}.rewards"
        )
        counts = quarantine.count_broken_rows(
            make_bigquery_client(emulator.endpoints), source, contract
        )
        field_types, rows = read_query_rows(
            emulator.endpoints, build_accepted_query(source, contract), "roundtrip_scratch"
        )

    assert (counts.rows_read, counts.rows_quarantined) == (rewarded, 0), counts.describe()
    assert len(rows) == rewarded > REQUESTS
    examples = [bigquery_utils.row_to_example(field_types, row).SerializeToString() for row in rows]
    batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(examples)
    statistics = stats_impl.generate_statistics_in_memory(batch, tfdv.StatsOptions())
    anomalies = tfdv.validate_statistics(statistics, build_schema(contract))
    assert dict(anomalies.anomaly_info) == {}
    assert not anomalies.HasField("dataset_anomaly_info")
