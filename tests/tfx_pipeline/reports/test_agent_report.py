"""The agent report on a small MovieLens setting: table, JSON and plots are written."""

import json

import pytest

from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.policy_evaluator.settings import EvaluatorSettings
from simulation.movielens_data import default_data_dir
from tfx_pipeline.reports import agent_report

pytestmark = pytest.mark.skipif(
    not (default_data_dir() / "u.data").exists(),
    reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
)


def test_small_report_compares_agents_with_the_oracle(tmp_path):
    settings = {
        "NeuralEpsilonGreedy": TrainerSettings(
            agent="NeuralEpsilonGreedy", hidden_layers="16", batch_size=512, epochs=2
        )
    }
    results = agent_report.run_agents(
        "",
        arms=(5,),
        agent_names=("LinUCB", "NeuralEpsilonGreedy"),
        rank_k=5,
        num_events=3000,
        settings=settings,
        evaluation_settings=EvaluatorSettings(bootstrap_samples=100, policy_samples=8),
    )
    paths = agent_report.write_report(results, tmp_path / "report")

    linucb, neural = results
    assert (linucb.agent, neural.agent) == ("LinUCB", "NeuralEpsilonGreedy")
    assert linucb.fraction_of_oracle > 0.95
    assert linucb.regret == pytest.approx(linucb.oracle_value - linucb.average_reward)
    assert abs(linucb.estimates["dr"].value - linucb.average_reward) < 0.05 * linucb.oracle_value
    assert linucb.train_rows + linucb.eval_rows == 3000

    table = (tmp_path / "report" / agent_report.TABLE_FILE).read_text().splitlines()
    assert table[0].startswith("| arms | policy | average reward (true value) | regret")
    assert [line.split(" | ")[1] for line in table[2:]] == [
        "LinUCB", "NeuralEpsilonGreedy", "uniform random", "oracle",
    ]
    stored = json.loads((tmp_path / "report" / agent_report.JSON_FILE).read_text())
    assert [row["agent"] for row in stored] == ["LinUCB", "NeuralEpsilonGreedy"]
    for kind in ("values_plot", "ope_plot", "time_plot"):
        with open(paths[kind], "rb") as f:
            assert f.read(8) == b"\x89PNG\r\n\x1a\n"
