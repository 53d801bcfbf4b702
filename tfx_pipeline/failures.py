"""What went wrong, said so a user can act: what happened and what to run next.

Commands fail through many libraries, and a traceback tells a user where the
code was, not what to do. `explain` recognises the failures a user can fix
(missing data, a busy port or run root, an emulator that will not start, a
locked or full disk) and words them; anything else is a bug, reported in one
line with the traceback left in the log file.
"""

import errno
import pathlib
from typing import Iterator, Optional

from bandit_core.errors import ConfigError
from simulation.movielens_data import MovieLensDataError
from tfx_pipeline.demo_loop.serving_process import ServingProcessError
from tfx_pipeline.lineage.store import LineageError
from tfx_pipeline.local.emulator import EmulatorError
from tfx_pipeline.local.ports import PortInUse
from tfx_pipeline.local.run_lock import RunRootBusy

INTERRUPTED_EXIT_CODE = 130
# Failures whose own message already says what happened and what to do.
_SELF_EXPLAINING = (
    ConfigError,
    EmulatorError,
    LineageError,
    MovieLensDataError,
    PortInUse,
    RunRootBusy,
    ServingProcessError,
)
# How a full disk reads in errors that are not OSErrors: SQLite (ML Metadata,
# the spool) and children's logs.
_DISK_FULL_TEXTS = ("database or disk is full", "No space left on device", "Disk quota exceeded")
# ML Metadata's SQLite answer, after half a minute of retries, to a writer it cannot lock.
_STORE_LOCKED_TEXTS = ("Concurrent writes aborted", "database is locked")


def explain(error: BaseException, root: Optional[pathlib.Path], command: str) -> Optional[str]:
    """The message for a failure a user can fix; None for anything else.

    Args:
      error: what the command raised; its causes are looked through too, as
        TFX and Beam wrap the errors of the components they run.
      root: the command's run root, if it has one.
      command: the command line, to say what to rerun.
    """
    for cause in _causes(error):
        if _disk_full(cause):
            where = f"the disk holding {root}" if root else "the disk"
            return (
                f"{where} is full ({_one_line(cause)}). Free some space (`df -h {root or '.'}` "
                "shows how much is left; old runs' outputs under <root>/pipeline_root can go) "
                f"or pass --root on a disk with room, then rerun `{command}`."
            )
        if any(text in str(cause) for text in _STORE_LOCKED_TEXTS):
            store = root / "metadata.sqlite" if root else "the ML Metadata store"
            return (
                f"{store} stayed locked by another process ({_one_line(cause)}). Wait for it or "
                f"stop it (`fuser {store}` names it), then rerun `{command}`."
            )
    for cause in _causes(error):
        if isinstance(cause, _SELF_EXPLAINING):
            return str(cause)
    return None


def unexpected(error: BaseException, log_path: Optional[pathlib.Path]) -> str:
    """One line for a failure nobody foresaw: what it says, and where its traceback is."""
    where = f"its traceback is in {log_path}; " if log_path else ""
    return (
        f"{type(error).__name__}: {_one_line(error)}\n"
        f"This looks like a bug: {where}rerun with --verbose to see it on the terminal."
    )


def interrupted(error: BaseException) -> bool:
    """Whether Ctrl-C caused `error`.

    Beam re-raises a KeyboardInterrupt that reaches a DoFn as
    `RuntimeError: KeyboardInterrupt [while running '...']`, so an interrupt
    during a Beam step (ExampleGen, StatisticsGen, the trainer, the evaluator)
    arrives as an Exception.
    """
    return any(
        isinstance(cause, KeyboardInterrupt) or str(cause).startswith("KeyboardInterrupt")
        for cause in _causes(error)
    )


def _causes(error: BaseException) -> Iterator[BaseException]:
    """`error`, then what it was raised from or while handling, outermost first."""
    seen = set()
    current: Optional[BaseException] = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _disk_full(error: BaseException) -> bool:
    if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    return any(text in str(error) for text in _DISK_FULL_TEXTS)


def _one_line(error: BaseException, limit: int = 300) -> str:
    """The error's text on one line, cut short: SQL and log tails can be long."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."
