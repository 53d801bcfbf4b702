"""The run root's TensorBoard logs, found through ML Metadata, and the loop's per-round writer.

Every BanditTrainer execution writes its summaries into its ModelRun artifact
and every PolicyEvaluator execution into its ModelEvaluation artifact, so ML
Metadata already knows where each log directory is; nothing searches the run
root, only those artifacts' directories are looked into for event files.
TensorBoard takes many directories as `--logdir_spec name:path,...`; each gets
the name `<pipeline>/<pipeline run>/<node>`, and TensorBoard adds the
subdirectory holding the events, so its run list reads e.g.
`movielens-bandits-train/2026-12-01T10-28-31.185073/BanditTrainer/train`:
which run, which component, sorted in time.
"""

import dataclasses
import fnmatch
import functools
import os
from typing import Dict, List, Optional, Sequence

import tensorflow as tf
from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2

from bandit_core.summary_writer import SummaryWriter, check_scalar
from tfx_pipeline.lineage.store import LineageError, artifact_order, open_store

SUMMARY_ARTIFACT_TYPES = ("ModelRun", "ModelEvaluation")
EVENT_FILES = "events.out.tfevents.*"
LOOP_REWARD = "loop/reward"
LOOP_REGRET = "loop/regret"
_OUTPUT_EVENTS = (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)


@dataclasses.dataclass(frozen=True)
class SummaryDirectory:
    """One TensorBoard run: its name in TensorBoard's run list and its directory."""

    run_name: str
    path: str


def summary_directories(store: metadata_store.MetadataStore) -> List[SummaryDirectory]:
    """Every live ModelRun and ModelEvaluation that holds event files, oldest first.

    Artifacts of runs made before the components wrote summaries hold none and
    are left out, as are outputs of failed executions (not LIVE).
    """
    artifacts = [
        artifact
        for type_name in SUMMARY_ARTIFACT_TYPES
        for artifact in store.get_artifacts_by_type(type_name)
        if artifact.state == metadata_store_pb2.Artifact.LIVE and _has_event_files(artifact.uri)
    ]
    producers = {
        event.artifact_id: event.execution_id
        for event in store.get_events_by_artifact_ids([a.id for a in artifacts])
        if event.type in _OUTPUT_EVENTS
    }
    return [
        SummaryDirectory(_run_name(store, artifact, producers.get(artifact.id)), artifact.uri)
        for artifact in sorted(artifacts, key=artifact_order)
    ]


def tensorboard_logdir_spec(metadata_path: os.PathLike) -> str:
    """TensorBoard's `--logdir_spec` for every summary directory of the store at `metadata_path`.

    Raises:
      LineageError: there is no readable store at `metadata_path`, it records
        no summaries yet, or a directory's path holds a comma, which the spec
        cannot express.
    """
    directories = summary_directories(open_store(metadata_path))
    if not directories:
        raise LineageError(
            f"the ML Metadata store {metadata_path} records no TensorBoard summaries yet: run "
            "`mlbandits train` (or `bash scripts/demo.sh`) so the trainer and the evaluator "
            "write some"
        )
    return logdir_spec(directories)


def logdir_spec(directories: Sequence[SummaryDirectory]) -> str:
    """'name:path,name:path' for TensorBoard's `--logdir_spec`."""
    for directory in directories:
        if "," in directory.path:
            raise LineageError(
                f"TensorBoard's --logdir_spec cannot name {directory.path}: the path holds a "
                "comma, which separates entries; move the run root to a path without commas"
            )
    return ",".join(f"{d.run_name}:{d.path}" for d in directories)


def write_loop_round(logdir: str, round_index: int, reward: float, regret: float) -> None:
    """The feedback loop's mean reward and regret of one round, at step `round_index`.

    Args:
      logdir: the loop's summary directory, one per loop run.
      round_index: the round, from 0.
      reward: the round's mean observed reward.
      regret: the round's mean regret against the best action.

    Raises:
      ValueError: a value is not finite or `round_index` is not a whole number
        >= 0; nothing is written then.
    """
    check_scalar(LOOP_REWARD, reward, round_index)
    check_scalar(LOOP_REGRET, regret, round_index)
    writer = _loop_writer(logdir)
    writer.scalar(LOOP_REWARD, reward, round_index)
    writer.scalar(LOOP_REGRET, regret, round_index)
    writer.flush()


@functools.lru_cache(maxsize=None)
def _loop_writer(logdir: str) -> SummaryWriter:
    """One event file per loop directory and process, appended to round after round.

    TensorBoard reads a directory's event files in name order (the second, then
    a counter compared as text), so with a file per round the rounds written
    within one second would come out of order (10 before 2) and the curve zigzag.
    """
    return SummaryWriter(logdir)


def _has_event_files(uri: str) -> bool:
    """Event files anywhere below `uri`, as TensorBoard finds them (e.g. in `<uri>/train`)."""
    return any(
        fnmatch.filter(files, EVENT_FILES) for _, _, files in tf.io.gfile.walk(uri)
    )


def _run_name(
    store: metadata_store.MetadataStore,
    artifact: metadata_store_pb2.Artifact,
    execution_id: Optional[int],
) -> str:
    """'<pipeline>/<pipeline run>/<node>', or '<type>/<artifact id>' without a producer."""
    names: Dict[str, str] = {}
    if execution_id is not None:
        contexts = store.get_contexts_by_execution(execution_id)
        type_names = {
            t.id: t.name for t in store.get_context_types_by_id({c.type_id for c in contexts})
        }
        names = {type_names[c.type_id]: c.name for c in contexts}
    if not {"pipeline", "pipeline_run", "node"} <= names.keys():
        return f"{artifact.type}/{artifact.id}"
    pipeline = names["pipeline"]
    node = names["node"].removeprefix(f"{pipeline}.")
    parts = (pipeline, names["pipeline_run"], node)
    # TensorBoard splits an entry at its first ':'; run ids are ISO times full of them.
    return "/".join(part.replace(":", "-").replace(",", "-") for part in parts)
