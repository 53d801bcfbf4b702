"""The demo's saved loop result reads back as the result it was."""

from tfx_pipeline.demo_loop.feedback_loop import LoopResult, RoundResult
from tfx_pipeline.reports import loop_report


def test_a_saved_loop_result_reads_back_equal(tmp_path):
    result = LoopResult(
        rounds=[
            RoundResult(0, 600, "17", 3.91, 0.42, "initial training DAG"),
            RoundResult(1, 600, "18", 4.02, 0.31, "retrained (600 >= 500), succeeded"),
        ],
        uniform_random_regret=1.52,
        oracle_reward=4.33,
    )
    path = loop_report.write_loop_result(result, tmp_path / "run" / loop_report.LOOP_RESULT_FILE)
    assert loop_report.read_loop_result(path) == result
