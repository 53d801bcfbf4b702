"""One short per-arm demo, shared by the e2e modules that check what it left behind.

The demo is the closed loop a user runs (train, serve, log, trigger,
retrain, hot reload); running it once for the walkthrough notebook, the
demo's printed lines and the loop's records keeps the suite's slowest
fixture to a single run.
"""

import contextlib
import io
import json
import pathlib
from typing import NamedTuple

import pytest

from tfx_pipeline import cli
from tfx_pipeline.config import PipelineConfig

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


@pytest.fixture(scope="session")
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
