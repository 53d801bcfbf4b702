"""The demo's closed loop, shortened: serve, log, trigger, retrain, hot reload."""

import json

import pytest

from simulation.movielens_data import default_data_dir
from tfx_pipeline import feedback_loop
from tfx_pipeline.bigquery import clients
from tfx_pipeline.bigquery.emulator import BigQueryEmulator
from tfx_pipeline.config import PipelineConfig

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (default_data_dir() / "u.data").exists(),
        reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
    ),
]


def test_one_retraining_round_lowers_regret_and_logs_every_event_once(tmp_path):
    config = PipelineConfig().replace(
        local={"root": str(tmp_path)},
        loop={"rounds": 1, "initial_events": 150, "requests_per_round": 400, "min_new_events": 300},
    ).validate()
    with BigQueryEmulator(data_dir=tmp_path / "bigquery") as emulator:
        result = feedback_loop.run_feedback_loop(config, emulator.endpoints)
        client = clients.make_bigquery_client(emulator.endpoints)
        table = f"{emulator.project}.{config.bigquery.dataset}.{config.bigquery.predictions_table}"
        counts = next(iter(client.query(
            f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d FROM `{table}`"
        ).result()))

    first, last = result.rounds
    assert first.model_version != last.model_version
    assert last.average_regret < 0.7 * first.average_regret
    assert last.average_regret < 0.5 * result.uniform_random_regret
    assert "retrained" in last.trigger and "succeeded" in last.trigger
    assert counts["n"] == counts["d"] == first.events + last.events
    decisions = [json.loads(line) for line in (config.local.trigger_dir / "decisions.jsonl").open()]
    assert decisions[-1]["run"] and decisions[-1]["new_events"] >= 300
