"""serving.model_registry against real pushed policies: which version serves, and retries."""

import logging
import shutil
from pathlib import Path
from typing import List

import pytest

from serving.model_registry import ModelRegistry
from serving.policy_scorer import load_policy_scorer
from tests.helpers.policy_factory import save_linucb_policy


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> List[Path]:
    root = tmp_path_factory.mktemp("trained")
    dirs = [root / "first", root / "second"]
    for seed, policy_dir in enumerate(dirs):
        save_linucb_policy(policy_dir, seed)
    return dirs


def push(policy: Path, base: Path, version: str) -> Path:
    """Copies a policy into the push directory file by file, as TFX's Pusher does."""
    return Path(shutil.copytree(policy, base / version))


class Clock:
    """The registry's notion of time for retries, moved by the test."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_stray_directory_with_a_unicode_digit_is_skipped_with_one_log_line(
    tmp_path, policies, caplog
):
    base = tmp_path / "push"
    (base / "²").mkdir(parents=True)
    (base / "latest").mkdir()
    push(policies[0], base, "7")
    registry = ModelRegistry(str(base), load_policy_scorer)
    with caplog.at_level(logging.WARNING, logger="serving.model_registry"):
        for _ in range(3):
            registry.refresh()
    assert registry.current.version == "7"
    ignored = [r.getMessage() for r in caplog.records if "ignoring" in r.getMessage()]
    assert len(ignored) == 2
    assert any("/²:" in m for m in ignored) and any("/latest:" in m for m in ignored)


def test_a_version_that_failed_to_load_is_retried_with_capped_back_off(tmp_path, policies):
    """A read error leaves the files unchanged; the version must still be tried again."""
    base = tmp_path / "push"
    version = push(policies[0], base, "1")
    index = version / "variables" / "variables.index"
    good = index.read_bytes()
    index.write_bytes(b"\0" * len(good))  # same size: the contents signature does not change
    clock = Clock()
    attempts = []

    def load(path: str):
        attempts.append(clock.now)
        return load_policy_scorer(path)

    registry = ModelRegistry(str(base), load, retry_initial_s=10, retry_max_s=40, clock=clock)
    while clock.now <= 120:
        assert registry.refresh() is None
        clock.now += 1
    assert attempts == [0, 10, 30, 70, 110], "back-off doubles from 10 s and stops at 40 s"

    index.write_bytes(good)
    while registry.refresh() is None:
        assert clock.now <= 150, "the repaired version was never retried"
        clock.now += 1
    assert registry.current.version == "1" and clock.now == 150


def test_broken_and_incomplete_versions_are_skipped_and_a_changed_one_retried_at_once(
    tmp_path, policies
):
    base = tmp_path / "push"
    push(policies[0], base, "100")
    incomplete = base / "300"
    incomplete.mkdir()
    shutil.copy(policies[1] / "saved_model.pb", incomplete)
    loads = []
    registry = ModelRegistry(
        str(base), lambda path: loads.append(path) or load_policy_scorer(path), clock=Clock()
    )
    assert registry.refresh().version == "100"

    broken = push(policies[1], base, "200")
    (broken / "variables" / "variables.index").write_bytes(b"truncated")
    assert registry.refresh().version == "100", "a broken version must not replace a good one"
    assert registry.refresh().version == "100"
    assert [Path(path).name for path in loads] == ["100", "200"], (
        "the incomplete version is not tried, the unchanged broken one not before its back-off"
    )

    shutil.copy(policies[1] / "variables" / "variables.index", broken / "variables")
    assert registry.refresh().version == "200", "a repaired version is retried"
    shutil.rmtree(incomplete)
    push(policies[0], base, "300")
    assert registry.refresh().version == "300"


def test_storage_uri_may_be_a_single_policy_dir(tmp_path, policies):
    registry = ModelRegistry(str(push(policies[0], tmp_path, "1795633363")), load_policy_scorer)
    registry.refresh()
    assert registry.current.version == "1795633363"
    assert registry.refresh() is registry.current


def test_a_single_policy_dir_on_vertex_is_served_as_its_deployed_model_id(tmp_path, policies):
    """The logged model_version then names the Vertex DeployedModel lineage can trace."""
    policy_dir = push(policies[0], tmp_path, "model")
    registry = ModelRegistry(str(policy_dir), load_policy_scorer, single_version_name="4781")
    assert registry.refresh().version == "4781"


def test_each_swap_runs_the_hook_once_the_new_model_serves(tmp_path, policies):
    base = tmp_path / "push"
    swaps = []
    registry = ModelRegistry(
        str(base), load_policy_scorer, on_swap=lambda: swaps.append(registry.current.version)
    )
    push(policies[0], base, "1")
    registry.refresh()
    registry.refresh()
    push(policies[1], base, "2")
    registry.refresh()
    assert swaps == ["1", "2"]


@pytest.mark.parametrize("initial, maximum", [(0, 10), (-1, 10), (20, 10)])
def test_bad_retry_settings_are_refused_by_name(initial, maximum):
    with pytest.raises(ValueError, match="retry_initial_s <= retry_max_s"):
        ModelRegistry("/models", load_policy_scorer, retry_initial_s=initial, retry_max_s=maximum)
