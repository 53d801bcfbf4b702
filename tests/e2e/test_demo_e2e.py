"""`mlbandits demo` on a small loop, as a user runs it, and what it left behind.

One short per-arm demo (train, serve, log, trigger, retrain, hot reload)
serves three checks, so the suite's slowest fixture runs once:

- the demo's own lines: a line per component with its key output, no
  library output (that goes to the run's log);
- the closed loop, through its records: the loop's rounds, the Trigger's
  decisions, and the predictions table in the run's BigQuery emulator. On
  the per-arm problem the server draws the candidates and logs them with the
  served movie, and the retraining DAG joins the logs to the rewards and the
  items table;
- the walkthrough notebook, top to bottom on the run.
"""

import contextlib
import io
import json
import pathlib
from typing import NamedTuple

import nbclient
import nbformat
import pytest

from bandit_core.bigquery import clients
from simulation.movielens_data import default_data_dir
from tfx_pipeline import cli, console
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.reports import loop_report

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (default_data_dir() / "u.data").exists(),
        reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
    ),
]

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"
SMALL_LOOP = {
    "local": {"beam_workers": 1},
    "movielens": {"num_candidates": 20},
    "evaluator": {"bootstrap_samples": 100, "blessing_comparison": "point_estimate"},
    "loop": {
        "rounds": 1, "initial_events": 4000, "requests_per_round": 600, "min_new_events": 500
    },
}


class DemoRun(NamedTuple):
    root: pathlib.Path
    printed: str
    config: PipelineConfig


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> DemoRun:
    """A one-round per-arm `mlbandits demo`, as a user runs it."""
    root = tmp_path_factory.mktemp("demo")
    config_file = root / "small.json"
    config_file.write_text(json.dumps(SMALL_LOOP))
    argv = ["demo", "--problem", "per_arm", "--config", str(config_file), "--root", str(root)]
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = cli.main(argv)
    assert code == 0, printed.getvalue()
    config = cli.load_cli_config(cli.build_parser().parse_args(argv))
    return DemoRun(root, printed.getvalue(), config)


def test_the_demo_prints_its_own_lines_and_logs_the_libraries(small_demo):
    root, printed, _ = small_demo
    lines = printed.splitlines()
    ended = {line.split()[0]: line for line in lines if line.startswith("  ") and " s  " in line}
    assert "DR " in ended["PolicyEvaluator"] and "blessed" in ended["PolicyEvaluator"]
    assert "pushed version" in ended["Pusher"]
    assert "InteractionLinUCB, train rows" in ended["BanditTrainer"]
    assert "anomalies none" in ended["ExampleValidator"]
    assert any(line.split()[:2] == ["0", "600"] for line in lines)
    assert any(line.split()[:2] == ["1", "600"] for line in lines)
    assert not [line for line in lines if "WARNING" in line or "absl" in line]
    assert "absl" in (root / console.LOG_FILE_NAME).read_text()


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


def test_the_walkthrough_runs_top_to_bottom_on_the_demos_run(small_demo, monkeypatch, tmp_path):
    root = small_demo.root
    monkeypatch.setenv("MLBANDITS_RUN_ROOT", str(root))
    monkeypatch.setenv("MLBANDITS_NOTEBOOK_AGENT_EVENTS", "1000")
    monkeypatch.setenv("MLBANDITS_NOTEBOOK_AGENTS", "PerArmLinUCB,InteractionLinUCB")
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(
        notebook,
        timeout=900,
        kernel_name="python3",
        resources={"metadata": {"path": str(tmp_path)}},
    ).execute()

    outputs = [output for cell in notebook.cells for output in cell.get("outputs", [])]
    shown = "\n".join(
        [output.get("text", "") for output in outputs]
        + [str(value) for output in outputs for value in output.get("data", {}).values()]
    )
    kinds = {kind for output in outputs for kind in output.get("data", {})}
    (agent_table,) = [
        data["text/markdown"]
        for data in (output.get("data", {}) for output in outputs)
        if "text/markdown" in data
    ]
    assert "no served prediction to trace" not in shown
    assert "made by Pusher" in shown and "made by MovieLensGenerator" in shown
    assert "blessed: " in shown and "<td>SNIPS</td>" in shown and "<td>DR</td>" in shown
    assert "initial training DAG" in shown and "retrained" in shown
    assert "| 20 | InteractionLinUCB |" in agent_table and "| 20 | PerArmLinUCB |" in agent_table
    assert {"image/png", "text/markdown", "text/html"} <= kinds
