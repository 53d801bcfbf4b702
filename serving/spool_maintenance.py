"""Keeps the event spool bounded whether or not its rows are shipped to BigQuery.

Two jobs, on a thread of their own so that no request pays for them: copying
the WAL into the database (checkpoint) once a second, without which every
single-row commit leaves about 20 KB of WAL for good; and forgetting served
events older than the reward window, a few hundred rows per transaction.

The served registry grows with the serving rate times the reward window:
about 106 bytes per event, so 500 req/s for the default 7 days would need
32 GB, far past the spool's default 1 GB cap, and a full spool refuses
predictions. So a capped spool's registry gets a budget, a share of the cap:
past it the oldest events are forgotten early (their late rewards are refused
as unknown, and the log says so) and predictions go on being served.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from typing import Optional

from serving.event_spool import PRUNE_CHUNK_ROWS, EventSpool

_LOG = logging.getLogger(__name__)
_MAX_PRUNE_INTERVAL_S = 3600.0
# What the budget counts per served event: 106-108 bytes were measured (its row and its
# time index entry, in spools of 5,728 and 200,000 events), plus headroom.
SERVED_EVENT_BYTES = 128
# The registry's share of a capped spool; the rest holds the outbox while BigQuery is away.
SERVED_SHARE_OF_CAP = 0.5
# Past this share of the cap, prune now rather than at the next scheduled prune, but
# not more often than this: the budget's cutoff walks up to the whole budget's index.
_NEARLY_FULL_SHARE = 0.75
_NEARLY_FULL_PRUNE_INTERVAL_S = 60.0


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
        self.served_budget = (
            None
            if spool.max_bytes is None
            else int(spool.max_bytes * SERVED_SHARE_OF_CAP // SERVED_EVENT_BYTES)
        )
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
        last_prune = -math.inf
        while not self._stop.is_set():
            try:
                since = time.monotonic() - last_prune
                if since >= self._prune_every_s or (
                    since >= _NEARLY_FULL_PRUNE_INTERVAL_S and self._nearly_full()
                ):
                    last_prune = time.monotonic()
                    self.prune()
                self._spool.checkpoint()
            except Exception:  # a busy or failing disk must not end maintenance for good
                _LOG.exception("maintaining the event spool %s failed; retrying", self._spool.path)
            self._stop.wait(self._checkpoint_interval_s)

    def _nearly_full(self) -> bool:
        cap = self._spool.max_bytes
        return cap is not None and self._spool.used_bytes() > _NEARLY_FULL_SHARE * cap

    def prune(self) -> int:
        """Forgets events past the reward window, then the oldest over budget; returns the count."""
        cutoff = time.time() - self._reward_window_s
        if self.served_budget is not None:
            budget_cutoff = self._spool.served_cutoff(keep_newest=self.served_budget)
            if budget_cutoff is not None and budget_cutoff > cutoff:
                _LOG.warning(
                    "the served registry reached its budget of %d events (half of "
                    "MLBANDITS_SPOOL_MAX_MB at %d bytes each): events served more than %.0f s "
                    "ago, inside the %.0f s reward window, are forgotten and their rewards "
                    "refused as unknown; raise MLBANDITS_SPOOL_MAX_MB or lower "
                    "MLBANDITS_REWARD_WINDOW_S",
                    self.served_budget,
                    SERVED_EVENT_BYTES,
                    time.time() - budget_cutoff,
                    self._reward_window_s,
                )
                cutoff = budget_cutoff
        pruned = self._spool.prune_served(cutoff, self._prune_chunk_rows)
        if pruned:
            _LOG.info("forgot %d served events", pruned)
        return pruned
