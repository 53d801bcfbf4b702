"""Finds the newest pushed policy, loads it, and hot-swaps it in.

`storage_uri` is either one policy directory or a push base directory whose
numeric subdirectories are versions, as TFX's filesystem Pusher writes them
(Vertex AI's AIP_STORAGE_URI may be either). All file access goes through
`tf.io.gfile`, so gs:// works as well as local paths.

The swap is one reference assignment: a request reads `registry.current`
once and keeps that model to the end, so in-flight requests never see a
half-updated policy. Pusher copies a version file by file, so a directory
may be incomplete when polled. A version that fails to load is retried at
once when its contents change, and otherwise after a capped exponential
back-off (a storage read error is no reason to give a version up for good),
while the previous model keeps serving. Entries whose names are not ASCII
version numbers are skipped, with one log line each.
"""

import dataclasses
import logging
import os
import threading
import time
from typing import Callable, Dict, Generic, List, Optional, Set, Tuple, TypeVar

import tensorflow as tf

from bandit_core.policy_metadata import POLICY_METADATA_FILE
from bandit_core.whole_numbers import is_whole_number

_LOG = logging.getLogger(__name__)
# A version is only tried once these exist; the load itself catches the rest.
REQUIRED_FILES = ("saved_model.pb", "variables/variables.index", POLICY_METADATA_FILE)

Scorer = TypeVar("Scorer")


@dataclasses.dataclass(frozen=True)
class _FailedLoad:
    """A version that failed: its contents then, how often in a row, and when to try again."""

    signature: Tuple
    failures: int
    retry_at: float


@dataclasses.dataclass(frozen=True)
class ServingModel(Generic[Scorer]):
    """A loaded policy: its version directory's name, its path and its scorer."""

    version: str
    path: str
    scorer: Scorer


class ModelRegistry(Generic[Scorer]):
    """Polls `storage_uri` and serves the newest version that loads."""

    def __init__(
        self,
        storage_uri: str,
        loader: Callable[[str], Scorer],
        poll_interval_s: float = 10.0,
        on_swap: Callable[[], None] = lambda: None,
        retry_initial_s: float = 10.0,
        retry_max_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
        single_version_name: Optional[str] = None,
    ) -> None:
        """`on_swap` runs after each swap, once the previous model is no longer referenced here.
        A failed version is retried `retry_initial_s` later, doubling per failure up to
        `retry_max_s`; `clock` tells the time for those retries. A `storage_uri` that is one
        policy is served as version `single_version_name`, else as its directory's name:
        on Vertex AI the DeployedModel's id, which ties every logged row to a Vertex resource."""
        if not 0 < retry_initial_s <= retry_max_s:
            raise ValueError(
                f"need 0 < retry_initial_s <= retry_max_s, got {retry_initial_s}, {retry_max_s}"
            )
        self._storage_uri = storage_uri.rstrip("/")
        self._loader = loader
        self._poll_interval_s = poll_interval_s
        self._on_swap = on_swap
        self._retry_initial_s = retry_initial_s
        self._retry_max_s = retry_max_s
        self._clock = clock
        self._single_version_name = single_version_name
        self._current: Optional[ServingModel[Scorer]] = None
        self._failed: Dict[str, _FailedLoad] = {}
        self._ignored: Set[str] = set()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    @property
    def current(self) -> Optional[ServingModel[Scorer]]:
        """The model serving now, or None until one has loaded."""
        return self._current

    def refresh(self) -> Optional[ServingModel[Scorer]]:
        """One poll: loads the newest loadable version newer than the current one."""
        for version, path in self._candidates():
            signature = _signature(path)
            failed = self._failed.get(version)
            if failed and failed.signature == signature and self._clock() < failed.retry_at:
                continue
            try:
                scorer = self._loader(path)
            except Exception:  # any broken version is skipped, never fatal
                self._failed[version] = self._next_retry(failed, signature)
                _LOG.exception(
                    "policy version %s at %s failed to load; retrying in %.0f s or when it changes",
                    version,
                    path,
                    self._failed[version].retry_at - self._clock(),
                )
                continue
            self._failed.pop(version, None)
            previous_version = self._current.version if self._current else "none"
            self._current = ServingModel(version=version, path=path, scorer=scorer)
            _LOG.info("serving policy version %s (was %s)", version, previous_version)
            self._on_swap()
            break
        return self._current

    def _next_retry(self, failed: Optional[_FailedLoad], signature: Tuple) -> _FailedLoad:
        """Back-off doubles per failure of unchanged contents; changed contents start over."""
        failures = failed.failures + 1 if failed and failed.signature == signature else 1
        delay = min(self._retry_max_s, self._retry_initial_s * 2.0 ** min(failures - 1, 32))
        return _FailedLoad(signature, failures, self._clock() + delay)

    def start(self) -> None:
        """Polls in a daemon thread, first right away, so health checks are answered meanwhile."""
        if self._thread is not None:
            raise RuntimeError("ModelRegistry.start() called twice")
        self._thread = threading.Thread(target=self._run, name="model-registry", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 30.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.refresh()
            except Exception:  # e.g. a storage outage; the current model keeps serving
                _LOG.exception("polling %s for policies failed", self._storage_uri)
            self._stop.wait(self._poll_interval_s)

    def _candidates(self) -> List[Tuple[str, str]]:
        """(version, path) of complete versions newer than the current one, newest first."""
        if _is_complete(self._storage_uri):
            if self._current is not None:
                return []
            name = self._single_version_name or os.path.basename(self._storage_uri)
            return [(name, self._storage_uri)]
        if not tf.io.gfile.isdir(self._storage_uri):
            _LOG.warning("model storage %s does not exist (yet)", self._storage_uri)
            return []
        versions = sorted(
            (name for name in self._version_names() if is_whole_number(name)),
            key=int,
            reverse=True,
        )
        newer_than = int(self._current.version) if self._current is not None else -1
        candidates = []
        for version in versions:
            if int(version) <= newer_than:
                break
            path = f"{self._storage_uri}/{version}"
            if _is_complete(path):
                candidates.append((version, path))
        return candidates

    def _version_names(self) -> List[str]:
        """The entries of the push directory; logs each one that is no version, once."""
        names = [name.rstrip("/") for name in tf.io.gfile.listdir(self._storage_uri)]
        for name in names:
            if not is_whole_number(name) and name not in self._ignored:
                self._ignored.add(name)
                _LOG.warning(
                    "ignoring %s/%s: a version directory's name is a number of ASCII digits",
                    self._storage_uri,
                    name,
                )
        return names


def _is_complete(path: str) -> bool:
    return all(tf.io.gfile.exists(f"{path}/{name}") for name in REQUIRED_FILES)


def _signature(path: str) -> Tuple:
    """(relative file, size) pairs: changes while Pusher is still copying the version."""
    entries = []
    for directory, _, files in tf.io.gfile.walk(path):
        for name in files:
            full = os.path.join(directory, name)
            entries.append((os.path.relpath(full, path), tf.io.gfile.stat(full).length))
    return tuple(sorted(entries))
