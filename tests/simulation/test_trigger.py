"""The retraining trigger: its rule, its lock and its decision record."""

import json
import threading

import pytest

from bandit_core.errors import ConfigError
from simulation.trigger import RetrainingTrigger, TriggerConfig, should_retrain


def test_rule_fires_on_enough_new_events():
    run, reason = should_retrain(100.0, 99.0, 500, TriggerConfig(min_new_events=500))
    assert run and "500 new rewarded events" in reason


def test_rule_waits_below_the_threshold_without_schedule():
    run, reason = should_retrain(100.0, 99.0, 499, TriggerConfig(min_new_events=500))
    assert not run and "499" in reason


def test_rule_fires_on_schedule_and_on_first_check():
    config = TriggerConfig(interval_s=60, min_new_events=0)
    assert should_retrain(1000.0, None, 0, config)[0]
    assert should_retrain(1000.0, 940.0, 0, config)[0]
    assert not should_retrain(1000.0, 941.0, 0, config)[0]


@pytest.mark.parametrize(
    "config, message",
    [
        (TriggerConfig(interval_s=-1), "trigger.interval_s: must be >= 0"),
        (TriggerConfig(min_new_events=-5), "trigger.min_new_events: must be >= 0"),
        (
            TriggerConfig(interval_s=0, min_new_events=0),
            "trigger.min_new_events/interval_s: "
            "at least one must be > 0 or retraining never triggers",
        ),
    ],
)
def test_bad_config_is_rejected(config, message):
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert str(error.value) == f"invalid setting {message}"


def test_trigger_runs_once_then_counts_from_the_last_run(tmp_path):
    counted_since = []
    runs = []

    def count(since):
        counted_since.append(since)
        return 10

    trigger = RetrainingTrigger(
        TriggerConfig(min_new_events=10), tmp_path, count, lambda: runs.append(1)
    )
    first = trigger.check(now=1000.0)
    second = trigger.check(now=1001.0)
    assert first.run and first.outcome == "succeeded" and second.run
    assert counted_since[0] is None
    assert counted_since[1].timestamp() == 1000.0
    assert len(runs) == 2
    records = [json.loads(line) for line in trigger.decisions_path.read_text().splitlines()]
    assert [r["run"] for r in records] == [True, True]


def test_failed_retraining_is_recorded_and_does_not_advance_the_state(tmp_path):
    def fail():
        raise RuntimeError("pipeline broke")

    trigger = RetrainingTrigger(TriggerConfig(min_new_events=1), tmp_path, lambda since: 5, fail)
    with pytest.raises(RuntimeError):
        trigger.check(now=50.0)
    assert trigger.last_run_at is None
    record = json.loads(trigger.decisions_path.read_text().splitlines()[-1])
    assert record["outcome"] == "failed: pipeline broke"


def test_never_two_runs_at_once(tmp_path):
    inside = threading.Event()
    release = threading.Event()

    def slow_retrain():
        inside.set()
        release.wait(10)

    first = RetrainingTrigger(TriggerConfig(min_new_events=1), tmp_path, lambda s: 3, slow_retrain)
    second = RetrainingTrigger(TriggerConfig(min_new_events=1), tmp_path, lambda s: 3, slow_retrain)
    worker = threading.Thread(target=first.check)
    worker.start()
    assert inside.wait(10)
    concurrent = second.check()
    release.set()
    worker.join(10)
    assert not concurrent.run
    assert "already in progress" in concurrent.reason
