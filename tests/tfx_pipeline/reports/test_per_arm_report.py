"""The per-arm agent report on a small setting: parity with TF-Agents, the interaction matters."""

import pytest

from bandit_core import agent_names
from custom_components.bandit_trainer.settings import TrainerSettings
from simulation.movielens_data import default_data_dir
from tfx_pipeline.reports import per_arm_report

pytestmark = pytest.mark.skipif(
    not (default_data_dir() / "u.data").exists(),
    reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
)


@pytest.fixture(scope="module")
def results():
    return per_arm_report.run_per_arm_agents(
        "",
        num_candidates=10,
        agents=(agent_names.PER_ARM_LINUCB, agent_names.INTERACTION_LINUCB),
        rank_k=8,
        num_events=8000,
        noise_sd=1.0,
        eval_rounds=2000,
        settings=TrainerSettings(alpha=0.1),
        bootstrap_samples=50,
    )


def test_our_per_arm_linucb_is_tf_agents_own(results):
    ours, _, anchor = results
    assert anchor.agent == per_arm_report.TF_AGENTS_ANCHOR
    # The same statistics give the same choices, so the same values and estimates.
    assert anchor.true_value == pytest.approx(ours.true_value, rel=1e-3)
    assert anchor.estimates["dr"].value == pytest.approx(ours.estimates["dr"].value, rel=1e-2)


def test_modelling_the_interaction_beats_concatenated_features(results):
    concatenated, interaction, _ = results
    assert interaction.true_value > concatenated.true_value + 0.1 * interaction.oracle_value
    for r in results:
        assert r.uniform_random_value < r.true_value <= r.oracle_value
        assert r.regret == pytest.approx(r.oracle_value - r.true_value)
        assert r.train_rows + r.eval_rows == 8000


def test_the_table_has_a_row_per_agent_and_the_references(results):
    table = per_arm_report.markdown_table(results)
    for label in ("PerArmLinUCB", "InteractionLinUCB", per_arm_report.TF_AGENTS_ANCHOR,
                  "uniform random", "oracle"):
        assert f"| 10 | {label} |" in table
