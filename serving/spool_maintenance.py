"""Keeps the event spool bounded whether or not its rows are shipped to BigQuery.

Two jobs, on a thread of their own so that no request pays for them: copying
the WAL into the database (checkpoint) once a second, without which every
single-row commit leaves about 20 KB of WAL for good; and forgetting served
events older than the reward window, a few hundred rows per transaction.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Optional

from serving.event_spool import PRUNE_CHUNK_ROWS, EventSpool

_LOG = logging.getLogger(__name__)
_MAX_PRUNE_INTERVAL_S = 3600.0


class SpoolMaintenance:
    """Checkpoints the spool's WAL and prunes its served registry in a daemon thread."""

    def __init__(
        self,
        spool: EventSpool,
        reward_window_s: float = 7 * 24 * 3600.0,
        checkpoint_interval_s: float = 1.0,
        prune_chunk_rows: int = PRUNE_CHUNK_ROWS,
    ) -> None:
        """`reward_window_s`: how long a served event accepts its reward; older events are
        pruned (checked every `min(reward_window_s, 1 h)`) and their late rewards refused."""
        if not reward_window_s > 0:
            raise ValueError(f"reward_window_s must be > 0, got {reward_window_s}")
        if not checkpoint_interval_s > 0:
            raise ValueError(f"checkpoint_interval_s must be > 0, got {checkpoint_interval_s}")
        self._spool = spool
        self._reward_window_s = reward_window_s
        self._checkpoint_interval_s = checkpoint_interval_s
        self._prune_chunk_rows = prune_chunk_rows
        self._prune_every_s = min(reward_window_s, _MAX_PRUNE_INTERVAL_S)
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def start(self) -> SpoolMaintenance:
        if self._thread is not None:
            raise RuntimeError("SpoolMaintenance.start() called twice")
        self._thread = threading.Thread(target=self._run, name="spool-maintenance", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        next_prune = 0.0
        while not self._stop.is_set():
            try:
                if time.monotonic() >= next_prune:
                    next_prune = time.monotonic() + self._prune_every_s
                    self._prune()
                self._spool.checkpoint()
            except Exception:  # a busy or failing disk must not end maintenance for good
                _LOG.exception("maintaining the event spool %s failed; retrying", self._spool.path)
            self._stop.wait(self._checkpoint_interval_s)

    def _prune(self) -> None:
        pruned = self._spool.prune_served(self._reward_window_s, self._prune_chunk_rows)
        if pruned:
            _LOG.info("forgot %d served events older than the reward window", pruned)
