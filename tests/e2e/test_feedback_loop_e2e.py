"""The demo's closed loop, shortened: serve, log, trigger, retrain, hot reload.

On the per-arm problem, the demo's default: the server draws the candidates,
logs them with the served movie, and the retraining DAG joins the logs to the
rewards and the items table.
"""

import json

import pytest

from bandit_core.bigquery import clients
from simulation.movielens_data import default_data_dir
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.demo_loop import feedback_loop
from tfx_pipeline.local.emulator import BigQueryEmulator

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (default_data_dir() / "u.data").exists(),
        reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
    ),
]


def test_one_round_retrains_on_the_served_logs_and_logs_every_event_once(tmp_path):
    config = PipelineConfig().replace(
        local={"root": str(tmp_path), "beam_workers": 1},
        movielens={"problem": "per_arm", "num_candidates": 20},
        trainer={"agent": "InteractionLinUCB"},
        evaluator={"bootstrap_samples": 100, "blessing_comparison": "point_estimate"},
        loop={
            "rounds": 1, "initial_events": 4000, "requests_per_round": 600, "min_new_events": 500
        },
    ).validate()
    with BigQueryEmulator(data_dir=tmp_path / "bigquery") as emulator:
        result = feedback_loop.run_feedback_loop(config, emulator.endpoints)
        client = clients.make_bigquery_client(emulator.endpoints)
        table = f"{emulator.project}.{config.bigquery.dataset}.{config.bigquery.predictions_table}"
        counts = next(iter(client.query(
            f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d, "
            f"COUNTIF(ARRAY_LENGTH(candidate_movie_ids) = 20 AND movie_id IN "
            f"UNNEST(candidate_movie_ids)) AS per_arm FROM `{table}`"
        ).result()))

    first, last = result.rounds
    assert "retrained" in last.trigger and "succeeded" in last.trigger
    if "not blessed" in last.trigger:
        assert last.model_version == first.model_version
    else:
        assert last.model_version != first.model_version
    for served in result.rounds:
        assert served.average_regret < 0.5 * result.uniform_random_regret
    assert counts["n"] == counts["d"] == counts["per_arm"] == first.events + last.events
    decisions = [json.loads(line) for line in (config.local.trigger_dir / "decisions.jsonl").open()]
    assert decisions[-1]["run"] and decisions[-1]["new_events"] >= 300
