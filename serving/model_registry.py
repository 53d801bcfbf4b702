"""Finds the newest pushed policy, loads it, and hot-swaps it in.

`storage_uri` is either one policy directory or a push base directory whose
numeric subdirectories are versions, as TFX's filesystem Pusher writes them
(Vertex AI's AIP_STORAGE_URI may be either). All file access goes through
`tf.io.gfile`, so gs:// works as well as local paths.

The swap is one reference assignment: a request reads `registry.current`
once and keeps that model to the end, so in-flight requests never see a
half-updated policy. Pusher copies a version file by file, so a directory
may be incomplete when polled; it is retried when its contents change and
skipped otherwise, while the previous model keeps serving.
"""

import dataclasses
import logging
import os
import threading
from typing import Callable, Dict, Generic, List, Optional, Tuple, TypeVar

import tensorflow as tf

from bandit_core.policy_metadata import POLICY_METADATA_FILE
from bandit_core.whole_numbers import is_whole_number

_LOG = logging.getLogger(__name__)
# A version is only tried once these exist; the load itself catches the rest.
REQUIRED_FILES = ("saved_model.pb", "variables/variables.index", POLICY_METADATA_FILE)

Scorer = TypeVar("Scorer")


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
    ) -> None:
        self._storage_uri = storage_uri.rstrip("/")
        self._loader = loader
        self._poll_interval_s = poll_interval_s
        self._current: Optional[ServingModel[Scorer]] = None
        # version -> contents signature at the failed attempt; retried when it changes.
        self._failed: Dict[str, Tuple] = {}
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
            if self._failed.get(version) == signature:
                continue
            try:
                scorer = self._loader(path)
            except Exception:  # any broken version is skipped, never fatal
                _LOG.exception("policy version %s at %s failed to load; skipping it", version, path)
                self._failed[version] = signature
                continue
            self._failed.pop(version, None)
            previous = self._current
            self._current = ServingModel(version=version, path=path, scorer=scorer)
            _LOG.info(
                "serving policy version %s (was %s)",
                version,
                previous.version if previous else "none",
            )
            break
        return self._current

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
            return [(os.path.basename(self._storage_uri), self._storage_uri)]
        if not tf.io.gfile.isdir(self._storage_uri):
            _LOG.warning("model storage %s does not exist (yet)", self._storage_uri)
            return []
        versions = sorted(
            (name.rstrip("/") for name in tf.io.gfile.listdir(self._storage_uri)),
            key=lambda name: int(name) if is_whole_number(name) else -1,
            reverse=True,
        )
        newer_than = int(self._current.version) if self._current is not None else -1
        candidates = []
        for version in versions:
            if not is_whole_number(version) or int(version) <= newer_than:
                break
            path = f"{self._storage_uri}/{version}"
            if _is_complete(path):
                candidates.append((version, path))
        return candidates


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
