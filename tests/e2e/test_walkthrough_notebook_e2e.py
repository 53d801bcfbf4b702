"""`mlbandits demo` on a small loop, as a user runs it, then the walkthrough notebook on its root.

The shared short demo (`conftest.small_demo`) serves both checks: the
demo's own lines (a line per component with its key output, no library
output: that goes to the run's log) and the notebook running top to bottom
on the run it left behind.
"""

import pathlib

import nbclient
import nbformat
import pytest

from simulation.movielens_data import default_data_dir
from tfx_pipeline import console

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (default_data_dir() / "u.data").exists(),
        reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
    ),
]

NOTEBOOK = pathlib.Path(__file__).resolve().parents[2] / "notebooks" / "walkthrough.ipynb"


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
