"""One command at a time per run root: two would interleave writes to one ML Metadata store.

TFX's SQLite store answers a second writer only after about half a minute of
retries, with "Concurrent writes aborted"; two emulators on one data directory
and two servers on one spool fare no better. An flock on `<root>/.mlbandits.lock`
is released by the kernel when its process ends, however it ends, so it can
never go stale; the file names the process that holds it.
"""

import contextlib
import fcntl
import os
import pathlib
import sqlite3
from typing import Iterator

LOCK_FILE_NAME = ".mlbandits.lock"
# How long a run waits for another process's write to the store to end.
_STORE_BUSY_TIMEOUT_S = 5.0


class RunRootBusy(RuntimeError):
    """Another live process runs a command on this root, or holds its store; the message says so."""


@contextlib.contextmanager
def holding_run_root(root: pathlib.Path, command: str) -> Iterator[None]:
    """Holds the root's lock for the block; raises RunRootBusy if another process holds it.

    `command` is what the lock file says runs, for the message another one gets.
    """
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE_NAME
    with open(path, "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            holder = lock.read().strip() or "another process"
            raise RunRootBusy(
                f"{holder} is already running on {root}, and two commands on one run root "
                "would corrupt its ML Metadata store. Wait for it to finish or stop it "
                f"(`fuser {path}` names its process), or pass another --root."
            ) from None
        lock.truncate(0)
        lock.write(f"`{command}` (pid {os.getpid()})")
        lock.flush()
        try:
            yield
        finally:
            lock.truncate(0)


def check_store_writable(metadata_path: pathlib.Path, command: str) -> None:
    """Raises RunRootBusy within seconds if another process keeps the SQLite store locked.

    Something outside `mlbandits` (a `sqlite3` shell, a notebook mid-transaction)
    can hold it; ML Metadata itself would only give up after half a minute.
    """
    if not metadata_path.is_file():
        return
    connection = sqlite3.connect(metadata_path, timeout=_STORE_BUSY_TIMEOUT_S)
    try:
        connection.execute("BEGIN IMMEDIATE")
        connection.rollback()
    except sqlite3.OperationalError as e:
        if "locked" not in str(e):
            raise
        raise RunRootBusy(
            f"{metadata_path} stayed locked by another process for {_STORE_BUSY_TIMEOUT_S:.0f} s "
            f"({e}). Wait for it or stop it (`fuser {metadata_path}` names it), then rerun "
            f"`{command}`."
        ) from None
    finally:
        connection.close()
