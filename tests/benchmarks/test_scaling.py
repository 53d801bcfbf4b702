"""The scaling benchmark's pure pieces: memory attributed to component windows, ratios, results."""

import json
import pathlib
import subprocess
import sys

import psutil
import pytest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[2] / "benchmarks"))

from scaling_results import (  # noqa: E402  (the script imports its siblings by file name)
    MB,
    ComponentFigures,
    MemoryUse,
    SizeRun,
    component_figures,
    format_table,
    latest_per_size,
    memory_by_component,
    memory_target_lines,
    plot,
    record,
    write_results,
)


def _samples(*pairs):
    return [(at, int(mb * MB)) for at, mb in pairs]


def test_each_sample_counts_for_the_component_whose_window_holds_it():
    samples = _samples((9.9, 500), (10.1, 600), (11.0, 900), (12.0, 700), (12.5, 2000),
                       (13.1, 1200), (14.0, 1100), (15.5, 5000))
    windows = {"StatisticsGen": (10.0, 12.0), "BanditTrainer": (13.0, 15.0)}
    assert memory_by_component(samples, windows) == {
        # rise from 500 MB, the last sample before it began
        "StatisticsGen": MemoryUse(peak_mb=900.0, rise_mb=400.0),
        # the 2,000 MB between the windows and the 5,000 MB after belong to neither
        "BanditTrainer": MemoryUse(peak_mb=1200.0, rise_mb=-800.0),
    }


def test_the_rise_starts_from_the_first_sample_inside_when_none_came_before():
    samples = _samples((1.5, 300), (2.0, 450), (2.5, 400))
    assert memory_by_component(samples, {"MovieLensGenerator": (1.0, 3.0)}) == {
        "MovieLensGenerator": MemoryUse(peak_mb=450.0, rise_mb=150.0)
    }


def test_samples_on_a_window_edge_belong_to_it_and_order_does_not_matter():
    samples = _samples((3.0, 800), (1.0, 100), (2.0, 200))
    assert memory_by_component(samples, {"PolicyEvaluator": (1.0, 3.0)}) == {
        "PolicyEvaluator": MemoryUse(peak_mb=800.0, rise_mb=700.0)
    }


def test_a_component_shorter_than_the_sampling_interval_gets_no_memory_figure():
    samples = _samples((1.0, 100), (1.2, 100))
    assert memory_by_component(samples, {"Pusher": (1.05, 1.1)}) == {}


def test_figures_give_rows_per_second_of_the_logged_events_and_keep_the_dag_order():
    windows = {"BigQueryExampleGen": (100.0, 104.0), "Pusher": (104.0, 104.5)}
    memory = {"BigQueryExampleGen": MemoryUse(peak_mb=1500.0, rise_mb=200.0)}
    figures = component_figures(1_000, windows, memory, {"BigQueryExampleGen": 1.5, "Pusher": 2.0})
    assert figures == [
        ComponentFigures("BigQueryExampleGen", 4.0, 250.0, 1500.0, 200.0, 1.5),
        # under a second the rate would measure the step's fixed cost, not its rows
        ComponentFigures("Pusher", 0.5, None, None, None, 2.0),
    ]


def _run(num_events: int, trainer_peak: float, evaluator_peak, stopped: str = "") -> SizeRun:
    return SizeRun(
        num_events=num_events,
        dag_seconds=num_events / 1_000,
        emulator_start_s=3.0,
        load_1m_end=1.0,
        stopped=stopped,
        components=[
            ComponentFigures("BanditTrainer", num_events / 10_000, 0.0, trainer_peak, 50.0, 1.0),
            ComponentFigures("PolicyEvaluator", num_events / 20_000, 0.0, evaluator_peak, 9.0, 1.0),
        ],
    )


def test_the_memory_target_is_judged_against_the_baseline_of_the_same_run():
    lines = memory_target_lines(_run(100_000, 1000.0, 1000.0), _run(1_000_000, 1400.0, 1600.0))
    assert lines == [
        "BanditTrainer peak RSS 1M/100k: 1.40x (target <= 1.5x): met",
        "PolicyEvaluator peak RSS 1M/100k: 1.60x (target <= 1.5x): NOT met",
    ]


def test_a_missing_peak_is_named_instead_of_judged():
    lines = memory_target_lines(_run(100_000, 1000.0, None), _run(1_000_000, 1000.0, 900.0))
    assert lines[1] == "PolicyEvaluator: no peak RSS at both sizes (failed, or too short to sample)"


def test_the_table_shows_ratios_to_the_baseline():
    table = format_table(_run(1_000_000, 1500.0, 800.0), _run(100_000, 1000.0, 1000.0))
    header, trainer, evaluator, dag = table.splitlines()
    assert "time vs 100k" in header and "peak vs 100k" in header
    assert trainer.split()[0] == "BanditTrainer" and trainer.split()[-2:] == ["10.00x", "1.50x"]
    assert evaluator.split()[-1] == "0.80x"
    assert dag.startswith("whole DAG") and dag.split()[-1] == "10.00x"


def test_results_append_and_the_plot_uses_each_sizes_latest_completed_run(tmp_path):
    path = tmp_path / "scaling.json"
    first = record("2026-12-01T10:00:00+00:00", "abc", ["--direct_num_workers=1"], 2,
                   [_run(100_000, 1000.0, 900.0), _run(1_000_000, 1100.0, 950.0)])
    write_results(path, first, append=False)
    second = record("2026-12-02T10:00:00+00:00", "def", ["--direct_num_workers=1"], 2,
                    [_run(1_000_000, 1200.0, 990.0), _run(10_000_000, 0.0, 0.0, stopped="boom")])
    results = write_results(path, second, append=True)
    assert json.loads(path.read_text()) == results
    assert [run["commit"] for run in results["runs"]] == ["abc", "def"]
    latest = latest_per_size(results)
    assert [run.num_events for run in latest] == [100_000, 1_000_000]  # 10M stopped
    assert latest[1].component("BanditTrainer").peak_rss_mb == 1200.0
    assert write_results(path, second, append=False)["runs"] == [second]


def test_the_plot_is_written_as_a_png(tmp_path):
    path = tmp_path / "docs" / "scaling.png"
    plot([_run(100_000, 1000.0, 900.0), _run(1_000_000, 1100.0, None)], path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("num_events, label", [(100_000, "100k"), (10_000_000, "10M"),
                                               (1_500, "1500")])
def test_sizes_are_named_compactly_in_the_target_lines(num_events, label):
    lines = memory_target_lines(_run(1_000, 1.0, 1.0), _run(num_events, 1.0, 1.0))
    assert lines[0].startswith(f"BanditTrainer peak RSS {label}/1k:")


def _holding(megabytes: int) -> subprocess.Popen:
    """A child process that keeps `megabytes` resident until its stdin closes."""
    child = subprocess.Popen(
        [sys.executable, "-c",
         f"held = b'x' * ({megabytes} * 2**20)\nprint('ready', flush=True)\ninput()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert child.stdout.readline() == "ready\n"
    return child


def test_the_tree_rss_adds_child_processes_except_the_excluded_one():
    from scaling import TreeRssSampler  # imports TFX: only this test pays for it

    worker, emulator = _holding(200), _holding(300)
    try:
        everything = TreeRssSampler(excluded_pid=None).tree_rss()
        without_emulator = TreeRssSampler(excluded_pid=emulator.pid).tree_rss()
        own = psutil.Process().memory_info().rss
    finally:
        for child in (worker, emulator):
            child.communicate("\n")
    assert everything - without_emulator >= 300 * MB
    assert without_emulator - own >= 200 * MB
