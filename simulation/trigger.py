"""Decides when to retrain: on a schedule or once enough new rewarded events exist.

The decision rule is a pure function; the trigger around it adds what makes it
safe to run from cron or a loop: a file lock so two retraining runs never
overlap (even across processes), persisted state, and a JSON-lines record of
every decision and its outcome.
"""

import dataclasses
import datetime
import fcntl
import json
import pathlib
import time
from typing import Callable, ClassVar, Optional, Tuple

from bandit_core.errors import require


@dataclasses.dataclass(frozen=True)
class TriggerConfig:
    """Retrain every `interval_s` seconds or at `min_new_events`; 0 turns either rule off."""

    # Names the settings in errors; a section that includes these fields overrides it.
    SECTION: ClassVar[str] = "trigger"

    interval_s: float = 0.0
    min_new_events: int = 500

    def validate(self) -> "TriggerConfig":
        """Raises ConfigError naming the first bad setting as `<SECTION>.<field>`."""
        require(self.min_new_events >= 0, f"{self.SECTION}.min_new_events", "must be >= 0")
        require(self.interval_s >= 0.0, f"{self.SECTION}.interval_s", "must be >= 0")
        require(
            self.min_new_events > 0 or self.interval_s > 0,
            f"{self.SECTION}.min_new_events/interval_s",
            "at least one must be > 0 or retraining never triggers",
        )
        return self


@dataclasses.dataclass(frozen=True)
class TriggerDecision:
    """One check of the trigger, as recorded in decisions.jsonl."""

    checked_at: str
    run: bool
    reason: str
    new_events: int
    outcome: str = ""


def should_retrain(
    now: float, last_run_at: Optional[float], new_events: int, config: TriggerConfig
) -> Tuple[bool, str]:
    """(run?, why) for the given moment, last run time and new-event count."""
    if config.min_new_events and new_events >= config.min_new_events:
        return True, f"{new_events} new rewarded events >= {config.min_new_events}"
    if config.interval_s and (last_run_at is None or now - last_run_at >= config.interval_s):
        since = "never ran" if last_run_at is None else f"{now - last_run_at:.0f} s since last run"
        return True, f"schedule: {since} (interval {config.interval_s:.0f} s)"
    waiting = f"{new_events} new rewarded events < {config.min_new_events}"
    return False, waiting if config.min_new_events else "schedule not yet due"


class RetrainingTrigger:
    """Checks the rule and, when it fires, runs `retrain` under an exclusive lock."""

    def __init__(
        self,
        config: TriggerConfig,
        state_dir: pathlib.Path,
        count_new_events: Callable[[Optional[datetime.datetime]], int],
        retrain: Callable[[], None],
    ):
        self._config = config.validate()
        self._state_dir = pathlib.Path(state_dir)
        self._state_dir.mkdir(parents=True, exist_ok=True)
        self._count_new_events = count_new_events
        self._retrain = retrain

    @property
    def decisions_path(self) -> pathlib.Path:
        return self._state_dir / "decisions.jsonl"

    @property
    def last_run_at(self) -> Optional[float]:
        state = self._state_dir / "state.json"
        return json.loads(state.read_text())["last_run_at"] if state.exists() else None

    def check(self, now: Optional[float] = None) -> TriggerDecision:
        """Decides once; runs the retraining synchronously if the rule fires."""
        now = time.time() if now is None else now
        with open(self._state_dir / "trigger.lock", "w") as lock:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return self._record(now, False, "a retraining run is already in progress", -1)
            last = self.last_run_at
            since = None if last is None else datetime.datetime.fromtimestamp(last, datetime.timezone.utc)
            new_events = self._count_new_events(since)
            run, reason = should_retrain(now, last, new_events, self._config)
            if not run:
                return self._record(now, False, reason, new_events)
            try:
                self._retrain()
            except Exception as e:
                self._record(now, True, reason, new_events, outcome=f"failed: {e}")
                raise
            (self._state_dir / "state.json").write_text(json.dumps({"last_run_at": now}))
            return self._record(now, True, reason, new_events, outcome="succeeded")

    def _record(
        self, now: float, run: bool, reason: str, new_events: int, outcome: str = ""
    ) -> TriggerDecision:
        decision = TriggerDecision(
            checked_at=datetime.datetime.fromtimestamp(now, datetime.timezone.utc).isoformat(),
            run=run,
            reason=reason,
            new_events=new_events,
            outcome=outcome,
        )
        with open(self.decisions_path, "a") as f:
            f.write(json.dumps(dataclasses.asdict(decision)) + "\n")
        return decision
