"""The demo's closed loop, shortened: serve, log, trigger, retrain, hot reload.

On the per-arm problem, the demo's default: the server draws the candidates,
logs them with the served movie, and the retraining DAG joins the logs to the
rewards and the items table. Checked on the shared short demo
(`conftest.small_demo`) through what it left behind: its loop record, the
Trigger's decisions and the predictions table in its BigQuery emulator.
"""

import json

import pytest

from bandit_core.bigquery import clients
from simulation.movielens_data import default_data_dir
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.reports import loop_report

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (default_data_dir() / "u.data").exists(),
        reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
    ),
]


def test_one_round_retrains_on_the_served_logs_and_logs_every_event_once(small_demo):
    config = small_demo.config
    result = loop_report.read_loop_result(config.local.root_dir / loop_report.LOOP_RESULT_FILE)
    with local_runner.bigquery_endpoints(config) as endpoints:
        client = clients.make_bigquery_client(endpoints)
        table = f"{endpoints.project}.{config.bigquery.dataset}.{config.bigquery.predictions_table}"
        counts = next(iter(client.query(
            f"SELECT COUNT(*) AS n, COUNT(DISTINCT event_id) AS d, "
            f"COUNTIF(ARRAY_LENGTH(candidate_movie_ids) = 20 AND movie_id IN "
            f"UNNEST(candidate_movie_ids)) AS per_arm FROM `{table}`"
        ).result()))

    assert config.trainer.agent == "InteractionLinUCB"
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
