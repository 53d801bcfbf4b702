"""What `mlbandits` shows on the terminal: the project's own lines, libraries' output in a log file.

Quiet is the default: TensorFlow, TF-Agents, TFX, Beam, absl and gRPC write
warnings and logs through Python's `warnings` and `logging`, through
`sys.stderr` and straight to file descriptor 2 from C++. During a command all
of it goes to `<run root>/mlbandits.log`; `--verbose` leaves it on the
terminal. Errors the command reports, and tracebacks, still reach the terminal.

This module imports nothing heavy: `silence_native_logs` must run before
TensorFlow is imported, because TF's C++ logging reads its level only once.
"""

import argparse
import contextlib
import logging
import os
import pathlib
import shutil
import sys
import threading
import time
from typing import IO, Iterator, Optional, Sequence

from absl import logging as absl_logging

VERBOSE_FLAG = "--verbose"
LOG_FILE_NAME = "mlbandits.log"
# TF's C++ logs at import (the cuDNN/cuFFT/cuBLAS factory errors among them)
# are printed before a run root, and so the log file, is known; quiet hides them.
_QUIET_TF_CPP_LEVEL = "3"
_TICK_S = 1.0


def silence_native_logs(argv: Sequence[str]) -> None:
    """Sets TF_CPP_MIN_LOG_LEVEL unless `--verbose` is asked for or the caller set it.

    Children (the prediction server, Beam workers) inherit the setting.
    """
    if VERBOSE_FLAG not in argv:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", _QUIET_TF_CPP_LEVEL)


def add_verbose_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        VERBOSE_FLAG,
        action="store_true",
        help=f"show libraries' warnings and logs (default: written to <root>/{LOG_FILE_NAME})",
    )


@contextlib.contextmanager
def library_output_to(log_path: Optional[pathlib.Path], verbose: bool) -> Iterator[None]:
    """Within the block, send everything but the project's own lines to `log_path`.

    File descriptor 2 points at the log, so C++ and child-process stderr go
    there; Python warnings and log records go there through the root logger.
    `sys.stderr`, when it is the process's own, becomes a stream on the
    original terminal so the command's error messages still show. Verbose
    changes nothing but absl's verbosity, which lets TFX's component log
    lines through; no `log_path` changes nothing at all.

    The verbosity is absl's flag, not the absl logger's level: TensorFlow's
    SavedModel export sets the flag to FATAL and back, which resets the level.
    """
    if log_path is None:
        yield
        return
    absl_verbosity = absl_logging.get_verbosity()
    absl_logging.set_verbosity(absl_logging.INFO)
    if verbose:
        try:
            yield
        finally:
            absl_logging.set_verbosity(absl_verbosity)
        return
    log_path.parent.mkdir(parents=True, exist_ok=True)
    root = logging.getLogger()
    saved_handlers, saved_level = root.handlers[:], root.level
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    with open(log_path, "ab", buffering=0) as log:
        terminal_fd = os.dup(2)
        os.dup2(log.fileno(), 2)
        handler = logging.FileHandler(log_path, encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root.handlers = [handler]
        root.setLevel(logging.INFO)
        logging.captureWarnings(True)
        own_stderr = sys.stderr is sys.__stderr__
        saved_stderr = sys.stderr
        if own_stderr:
            sys.stderr = open(
                os.dup(terminal_fd), "w", buffering=1, errors="backslashreplace"
            )
        try:
            yield
        finally:
            logging.captureWarnings(False)
            root.handlers, root.level = saved_handlers, saved_level
            absl_logging.set_verbosity(absl_verbosity)
            handler.close()
            if own_stderr:
                sys.stderr.flush()
                sys.stderr.close()
                sys.stderr = saved_stderr
            os.dup2(terminal_fd, 2)
            os.close(terminal_fd)


class StatusLine:
    """One terminal line rewritten in place: what runs now, with a live seconds counter.

    On anything but a terminal it shows nothing, so logs and pipes get only
    the permanent lines written through `print`.
    """

    def __init__(self, stream: Optional[IO[str]] = None) -> None:
        self._stream = stream if stream is not None else sys.stdout
        self.live = self._stream.isatty()
        self._lock = threading.Lock()
        self._text = ""
        self._since: Optional[float] = None
        self._drawn = False
        self._ticker: Optional[threading.Thread] = None
        self._stopped = threading.Event()

    def show(self, text: str, same_step: bool = False) -> None:
        """Shows what runs now, with the seconds since its step began, kept current.

        `same_step` keeps the clock of the step shown before (a counter moving on).
        """
        with self._lock:
            self._text = text
            if not same_step or self._since is None:
                self._since = time.monotonic()
            self._draw()
        if self.live and self._ticker is None:
            self._ticker = threading.Thread(target=self._tick, name="status-line", daemon=True)
            self._ticker.start()

    def print(self, line: str) -> None:
        """A permanent line above the status line."""
        with self._lock:
            self._erase()
            self._stream.write(f"{line}\n")
            self._draw()
            self._stream.flush()

    def clear(self) -> None:
        with self._lock:
            self._text, self._since = "", None
            self._erase()
            self._stream.flush()

    def close(self) -> None:
        self.clear()
        self._stopped.set()
        if self._ticker is not None:
            self._ticker.join()
            self._ticker = None

    def __enter__(self) -> "StatusLine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _tick(self) -> None:
        while not self._stopped.wait(_TICK_S):
            with self._lock:
                if self._since is not None:
                    self._draw()

    def _draw(self) -> None:
        if not self.live or not self._text:
            return
        text = self._text
        if self._since is not None:
            text += f" {time.monotonic() - self._since:.0f} s"
        columns = shutil.get_terminal_size().columns
        if columns > 1:
            text = text[: columns - 1]
        self._stream.write(f"\r{text}\x1b[K")
        self._stream.flush()
        self._drawn = True

    def _erase(self) -> None:
        if self._drawn:
            self._stream.write("\r\x1b[K")
            self._drawn = False
