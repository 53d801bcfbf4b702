"""Quiet by default: library output goes to the run's log, the project's lines to the terminal.

The redirection works on file descriptor 2, which pytest captures itself, so
each case runs in a fresh interpreter that imports only the console module.
"""

import io
import logging
import os
import subprocess
import sys
import textwrap

import pytest
from absl import logging as absl_logging

from tfx_pipeline import console

_LIBRARY_NOISE = textwrap.dedent(
    """
    import logging, os, sys, warnings
    from pathlib import Path
    from absl import logging as absl_logging
    from tfx_pipeline import console

    with console.library_output_to(Path(sys.argv[1]), verbose=sys.argv[2] == "verbose"):
        os.write(2, b"native stderr line\\n")
        warnings.warn("a library warning")
        absl_logging.warning("an absl warning")
        logging.getLogger("tensorflow").warning("a tensorflow warning")
        print("own result line")
        print("own error line", file=sys.stderr)
    os.write(2, b"stderr after the block\\n")
    """
)
_NOISE = ("native stderr line", "a library warning", "an absl warning", "a tensorflow warning")


def _run(tmp_path, mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _LIBRARY_NOISE, str(tmp_path / "root" / "mlbandits.log"), mode],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_quiet_sends_library_output_to_the_log_and_keeps_the_projects_lines(tmp_path):
    result = _run(tmp_path, "quiet")
    assert result.returncode == 0, result.stderr
    assert result.stdout == "own result line\n"
    assert result.stderr == "own error line\nstderr after the block\n"
    log = (tmp_path / "root" / "mlbandits.log").read_text()
    for line in _NOISE:
        assert line in log


def test_verbose_leaves_library_output_on_the_terminal_and_writes_no_log(tmp_path):
    result = _run(tmp_path, "verbose")
    assert result.returncode == 0, result.stderr
    assert "own result line" in result.stdout
    for line in _NOISE + ("own error line",):
        assert line in result.stderr
    assert not (tmp_path / "root").exists()


def test_the_block_restores_absl_verbosity_and_the_root_logger(tmp_path):
    verbosity, handlers = absl_logging.get_verbosity(), logging.getLogger().handlers[:]
    with console.library_output_to(tmp_path / "mlbandits.log", verbose=False):
        assert absl_logging.get_verbosity() == absl_logging.INFO
        assert logging.getLogger().handlers != handlers
    assert absl_logging.get_verbosity() == verbosity
    assert logging.getLogger().handlers == handlers


def test_without_a_log_path_nothing_changes(tmp_path):
    verbosity = absl_logging.get_verbosity()
    with console.library_output_to(None, verbose=False):
        assert absl_logging.get_verbosity() == verbosity
    assert list(tmp_path.iterdir()) == []


def test_native_logs_are_silenced_unless_verbose(monkeypatch):
    monkeypatch.delenv("TF_CPP_MIN_LOG_LEVEL", raising=False)
    console.silence_native_logs(["mlbandits", "train", "--verbose"])
    assert "TF_CPP_MIN_LOG_LEVEL" not in os.environ
    console.silence_native_logs(["mlbandits", "train"])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "3"
    monkeypatch.setenv("TF_CPP_MIN_LOG_LEVEL", "0")
    console.silence_native_logs(["mlbandits", "train"])
    assert os.environ["TF_CPP_MIN_LOG_LEVEL"] == "0"


class _Terminal(io.StringIO):
    """What a terminal receives: the status line's carriage returns and erases."""

    def isatty(self) -> bool:
        return True


def test_status_line_rewrites_one_line_on_a_terminal_and_keeps_printed_lines():
    terminal = _Terminal()
    with console.StatusLine(terminal) as status:
        status.show("round 0: 10/100 requests")
        status.show("round 0: 20/100 requests", same_step=True)
        status.print("    0     100   ...")
    screen = terminal.getvalue()
    assert "\rround 0: 20/100 requests" in screen
    assert screen.count("\n") == 1 and "\r\x1b[K    0     100   ...\n" in screen
    assert screen.endswith("\r\x1b[K")


def test_status_line_shows_nothing_but_printed_lines_when_not_a_terminal():
    piped = io.StringIO()
    with console.StatusLine(piped) as status:
        status.show("BanditTrainer ...")
        status.print("  BanditTrainer   1.0 s  LinUCB, train rows 10")
    assert piped.getvalue() == "  BanditTrainer   1.0 s  LinUCB, train rows 10\n"


@pytest.mark.parametrize("extra", [["--verbose"], []])
def test_every_command_takes_verbose(extra):
    from tfx_pipeline import cli

    for argv in (
        ["train"], ["retrain"], ["demo"], ["report"], ["emulator"],
        ["lineage", "runs"], ["vertex", "compile"],
    ):
        assert cli.build_parser().parse_args(argv + extra).verbose == bool(extra)
