"""Tests for the `mlbandits` command line: help, flag checking, config errors.

Nothing here starts a pipeline or the emulator: every path exercised fails
(or exits) before either is imported.
"""

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tfx_pipeline import cli
from tfx_pipeline.config import PipelineConfig
from tfx_pipeline.local import emulator

EXPECTED_FLAGS = {
    "train": ["--config", "--root", "--movielens-dir", "--num-events", "--seed"],
    "retrain": ["--config", "--root", "--movielens-dir"],
    "emulator": ["--data-dir", "--project"],
}


def _subcommands():
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


def _exit_code(argv, capsys):
    with pytest.raises(SystemExit) as excinfo:
        cli.main(argv)
    out, err = capsys.readouterr()
    return excinfo.value.code, out, err


def test_top_level_help_lists_every_subcommand(capsys):
    code, out, _ = _exit_code(["--help"], capsys)
    assert code == 0
    assert "usage: mlbandits" in out
    for name in _subcommands():
        assert name in out


def test_known_subcommands_exist():
    assert set(EXPECTED_FLAGS) <= set(_subcommands())


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_subcommand_help_exits_zero_and_lists_its_flags(command, capsys):
    code, out, _ = _exit_code([command, "--help"], capsys)
    assert code == 0
    assert f"usage: mlbandits {command}" in out
    declared = [
        option
        for action in _subcommands()[command]._actions
        for option in action.option_strings
        if option.startswith("--")
    ]
    for flag in set(declared) | set(EXPECTED_FLAGS.get(command, [])):
        assert flag in out


def test_retrain_has_no_generator_flags(capsys):
    code, _, err = _exit_code(["retrain", "--num-events", "5"], capsys)
    assert code == 2
    assert "unrecognized arguments: --num-events" in err


@pytest.mark.parametrize(
    "argv, fragments",
    [
        (["train", "--num-events", "0"], ["argument --num-events", "'0' must be at least 1"]),
        (["train", "--num-events", "-3"], ["argument --num-events", "must be at least 1"]),
        (
            ["train", "--num-events", "abc"],
            ["argument --num-events", "'abc' is not a whole number"],
        ),
        (["train", "--num-events", "1.5"], ["argument --num-events", "not a whole number"]),
        (["train", "--seed", "-1"], ["argument --seed", "'-1' must be 0 or more"]),
        (["train", "--seed", "x"], ["argument --seed", "'x' is not a whole number"]),
        (["train", "--bogus"], ["unrecognized arguments: --bogus"]),
        (["deploy"], ["invalid choice: 'deploy'"]),
        ([], ["COMMAND"]),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(argv, fragments, capsys):
    code, out, err = _exit_code(argv, capsys)
    assert code == 2
    assert out == ""
    for fragment in fragments:
        assert fragment in err


def test_flags_override_the_config_file(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(
        json.dumps({"generator": {"num_events": 9, "seed": 4}, "movielens": {"rank_k": 5}})
    )
    args = cli.build_parser().parse_args(
        [
            "train",
            "--config", str(config_file),
            "--seed", "0",
            "--root", str(tmp_path / "r"),
            "--movielens-dir", "/data/ml-100k",
        ]
    )
    config = cli.load_cli_config(args)
    assert config.generator.seed == 0
    assert config.generator.num_events == 9
    assert config.movielens.rank_k == 5
    assert config.movielens.data_dir == "/data/ml-100k"
    assert config.local.root == str(tmp_path / "r")
    assert config.trainer == PipelineConfig().trainer


def test_no_flags_give_the_defaults():
    args = cli.build_parser().parse_args(["retrain"])
    assert cli.load_cli_config(args) == PipelineConfig()


def test_the_demo_runs_the_per_arm_problem_unless_told_otherwise(tmp_path):
    demo = cli.load_cli_config(cli.build_parser().parse_args(["demo"]))
    assert (demo.movielens.problem, demo.trainer.agent) == ("per_arm", "InteractionLinUCB")
    classic = cli.load_cli_config(cli.build_parser().parse_args(["demo", "--problem", "classic"]))
    assert (classic.movielens.problem, classic.trainer.agent) == ("classic", "LinUCB")
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"trainer": {"agent": "LinTS"}}))
    from_file = cli.load_cli_config(
        cli.build_parser().parse_args(["demo", "--config", str(config_file)])
    )
    assert (from_file.movielens.problem, from_file.trainer.agent) == ("classic", "LinTS")


def test_choosing_a_problem_keeps_an_agent_that_fits_it(tmp_path):
    config_file = tmp_path / "c.json"
    config_file.write_text(
        json.dumps(
            {"movielens": {"problem": "per_arm"}, "trainer": {"agent": "DotProductEpsilonGreedy"}}
        )
    )
    args = ["train", "--config", str(config_file), "--problem", "per_arm"]
    config = cli.load_cli_config(cli.build_parser().parse_args(args))
    assert (config.movielens.problem, config.trainer.agent) == (
        "per_arm", "DotProductEpsilonGreedy"
    )
    switched_args = ["train", "--config", str(config_file), "--problem", "classic"]
    switched = cli.load_cli_config(cli.build_parser().parse_args(switched_args))
    assert switched.trainer.agent == "LinUCB"


def test_a_classic_agent_in_a_per_arm_config_is_refused_naming_the_setting(tmp_path, capsys):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"movielens": {"problem": "per_arm"}}))
    assert cli.main(["train", "--config", str(config_file)]) == 2
    error = capsys.readouterr().err
    assert "trainer.agent" in error and "InteractionLinUCB" in error


@pytest.mark.parametrize(
    "content, setting",
    [
        ({"trainer": {"alhpa": 1.0}}, "trainer.alhpa"),
        ({"generator": {"num_events": "10"}}, "generator.num_events"),
        ({"validation": {"min_propensity": 0}}, "validation.min_propensity"),
    ],
)
@pytest.mark.parametrize("command", ["train", "retrain"])
def test_config_errors_return_2_and_name_the_setting(tmp_path, capsys, command, content, setting):
    config_file = tmp_path / "bad.json"
    config_file.write_text(json.dumps(content))
    assert cli.main([command, "--config", str(config_file)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.startswith("mlbandits: ")
    assert setting in err


def test_missing_config_file_returns_2(tmp_path, capsys):
    missing = tmp_path / "absent.json"
    assert cli.main(["train", "--config", str(missing)]) == 2
    assert f"{missing} does not exist" in capsys.readouterr().err


def test_console_script_help():
    script = Path(sys.executable).with_name("mlbandits")
    assert script.exists()
    result = subprocess.run(
        [str(script), "train", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr
    assert "--num-events" in result.stdout


def test_a_run_that_stops_before_metadata_says_so_instead_of_a_summary(
    tmp_path, capsys, monkeypatch
):
    monkeypatch.setenv(emulator.PYTHON_ENV_VAR, str(tmp_path / "no-such-python"))
    assert cli.main(["train", "--root", str(tmp_path / "runs")]) == 1
    error = capsys.readouterr().err
    assert "The run stopped before ML Metadata recorded it" in error
    assert "no-such-python" in error and "bootstrap.sh" in error
    assert (tmp_path / "runs" / "mlbandits.log").is_file()


def test_a_lineage_question_about_a_missing_root_creates_nothing(tmp_path, capsys):
    missing = tmp_path / "no-run"
    assert cli.main(["lineage", "runs", "--root", str(missing)]) == 1
    assert "no ML Metadata store at" in capsys.readouterr().err
    assert not missing.exists()


@pytest.mark.parametrize(
    "ingestion, fragment",
    [
        ({"window_start": "yesterday"}, "ingestion.window_start='yesterday' is not an ISO-8601"),
        (
            {"window_start": "2026-02-01T00:00:00Z", "window_end": "2026-01-01T00:00:00Z"},
            "must be before ingestion.window_end",
        ),
        ({"source": "x' OR '1'='1"}, "ingestion.source="),
    ],
)
def test_bad_ingestion_settings_stop_before_anything_runs(tmp_path, capsys, ingestion, fragment):
    config_file = tmp_path / "c.json"
    config_file.write_text(json.dumps({"ingestion": ingestion}))
    assert cli.main(["train", "--config", str(config_file), "--root", str(tmp_path / "r")]) == 2
    error = capsys.readouterr().err
    assert fragment in error and "invalid setting" in error
    assert not (tmp_path / "r").exists()
