"""What the latest run of a pipeline produced, read back from ML Metadata."""

import dataclasses
import os
from typing import Dict, List, Optional

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tensorflow_data_validation.utils import stats_util
from tfx.components.statistics_gen.executor import DEFAULT_FILE_NAME as STATS_FILE_NAME
from tfx.types import artifact_utils

from custom_components.bandit_trainer import anomalies_gate
from custom_components.data_contract_gate.component import QuarantineReport
from custom_components.movielens_generator.component import LoggedInteractions


@dataclasses.dataclass(frozen=True)
class QuarantineSummary:
    """What the data contract gate read and quarantined.

    Attributes:
      rows_read: rows of the run's window.
      rows_quarantined: rows that broke the contract, left out of training.
      broken: rule name -> rows breaking it, only rules some row broke.
      table: the quarantine table holding them with their reasons.
    """

    rows_read: int
    rows_quarantined: int
    broken: Dict[str, int]
    table: str

    def describe(self) -> str:
        """`2 of 503 rows (0.40%) in p.d.quarantine: action 1, propensity 1`."""
        share = self.rows_quarantined / self.rows_read if self.rows_read else 0.0
        rules = ", ".join(f"{rule} {count}" for rule, count in self.broken.items())
        return (
            f"{self.rows_quarantined} of {self.rows_read} rows ({share:.2%}) in {self.table}"
            + (f": {rules}" if rules else "")
        )


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """The facts a user wants after a run, each from its artifact.

    A run that stops early has no artifact of the steps after the stop, so
    "not run" must never read as "nothing found": `validated` says whether
    ExampleValidator wrote its anomalies (`anomalies` is empty either way),
    and `failed_components` names the steps that stopped the run.
    """

    run_id: str
    rows_generated: Optional[int]
    rows_per_split: Dict[str, int]
    anomalies: List[str]
    quarantine: Optional[QuarantineSummary]
    training_seconds: Optional[float]
    pushed_destination: Optional[str]
    validated: bool
    failed_components: List[str]

    @property
    def anomalies_status(self) -> str:
        """`not run` when validation never ran, else `none` or how many anomalies it found."""
        if not self.validated:
            return "not run"
        return str(len(self.anomalies)) if self.anomalies else "none"


# TFX names each component's context `<pipeline>.<node id>`, of this type.
_NODE_CONTEXT_TYPE = "node"
# The gate records one count per data-contract rule under this prefix.
_BROKEN_PREFIX = "broken_"


class MetadataNotFoundError(LookupError):
    """The store holds no run of the requested pipeline."""


def open_store(sqlite_path: str) -> metadata_store.MetadataStore:
    """Opens an existing SQLite MLMD store read-write (MLMD has no read-only mode)."""
    if not os.path.exists(sqlite_path):
        raise MetadataNotFoundError(
            f"no ML Metadata store at {sqlite_path}; run the pipeline first"
        )
    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = sqlite_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READWRITE
    return metadata_store.MetadataStore(config)


def _latest_run(
    store: metadata_store.MetadataStore, pipeline_name: str
) -> metadata_store_pb2.Context:
    pipeline = store.get_context_by_type_and_name("pipeline", pipeline_name)
    if pipeline is None:
        raise MetadataNotFoundError(f"pipeline {pipeline_name!r} has never run in this store")
    runs = store.get_children_contexts_by_context(pipeline.id)
    if not runs:
        raise MetadataNotFoundError(f"pipeline {pipeline_name!r} has no recorded runs")
    return max(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def latest_run_artifacts(
    store: metadata_store.MetadataStore, pipeline_name: str
) -> tuple[str, Dict[str, List[metadata_store_pb2.Artifact]]]:
    """(run id, artifacts of the latest run grouped by type name)."""
    run = _latest_run(store, pipeline_name)
    artifacts = store.get_artifacts_by_context(run.id)
    type_ids = {a.type_id for a in artifacts}
    type_names = {t.id: t.name for t in store.get_artifact_types_by_id(type_ids)}
    grouped: Dict[str, List[metadata_store_pb2.Artifact]] = {}
    for artifact in sorted(artifacts, key=lambda a: a.id):
        grouped.setdefault(type_names[artifact.type_id], []).append(artifact)
    return run.name, grouped


def summarize_latest_run(store: metadata_store.MetadataStore, pipeline_name: str) -> RunSummary:
    """Reads rows, quarantine, splits, anomalies, training time and push target of the last run."""
    run_id, artifacts = latest_run_artifacts(store, pipeline_name)
    generated = _last(artifacts, LoggedInteractions.TYPE_NAME)
    statistics = _last(artifacts, "ExampleStatistics")
    anomalies = _last(artifacts, "ExampleAnomalies")
    report = _last(artifacts, QuarantineReport.TYPE_NAME)
    model = _last(artifacts, "Model")
    pushed = _last(artifacts, "PushedModel")
    return RunSummary(
        run_id=run_id,
        rows_generated=(
            generated.custom_properties["rows_written"].int_value if generated else None
        ),
        rows_per_split=rows_per_split(statistics) if statistics else {},
        anomalies=_anomaly_lines(anomalies) if anomalies else [],
        quarantine=_quarantine(report) if report else None,
        training_seconds=(
            model.custom_properties["training_seconds"].double_value
            if model and "training_seconds" in model.custom_properties
            else None
        ),
        pushed_destination=(
            pushed.custom_properties["pushed_destination"].string_value
            if pushed and pushed.custom_properties["pushed"].int_value
            else None
        ),
        validated=anomalies is not None,
        failed_components=failed_components(store, pipeline_name),
    )


def failed_components(store: metadata_store.MetadataStore, pipeline_name: str) -> List[str]:
    """Node ids of the latest run's executions that failed, in the order they ran."""
    run = _latest_run(store, pipeline_name)
    node_type = store.get_context_type(_NODE_CONTEXT_TYPE)
    failed = []
    for execution in sorted(store.get_executions_by_context(run.id), key=lambda e: e.id):
        if execution.last_known_state != metadata_store_pb2.Execution.FAILED:
            continue
        failed += [
            context.name[len(pipeline_name) + 1 :]
            for context in store.get_contexts_by_execution(execution.id)
            if context.type_id == node_type.id
        ]
    return failed


def _last(artifacts: Dict[str, List[metadata_store_pb2.Artifact]], type_name: str):
    found = artifacts.get(type_name)
    return found[-1] if found else None


def _quarantine(report: metadata_store_pb2.Artifact) -> QuarantineSummary:
    properties = report.custom_properties
    broken = {
        name[len(_BROKEN_PREFIX):]: value.int_value
        for name, value in sorted(properties.items())
        if name.startswith(_BROKEN_PREFIX) and value.int_value
    }
    return QuarantineSummary(
        rows_read=properties["rows_read"].int_value,
        rows_quarantined=properties["rows_quarantined"].int_value,
        broken=broken,
        table=properties["quarantine_table"].string_value,
    )


def _split_names(artifact: metadata_store_pb2.Artifact) -> List[str]:
    return artifact_utils.decode_split_names(artifact.properties["split_names"].string_value)


def rows_per_split(statistics: metadata_store_pb2.Artifact) -> Dict[str, int]:
    rows = {}
    for split in _split_names(statistics):
        stats = stats_util.load_stats_binary(
            os.path.join(statistics.uri, f"Split-{split}", STATS_FILE_NAME)
        )
        rows[split] = sum(dataset.num_examples for dataset in stats.datasets)
    return rows


def _anomaly_lines(anomalies: metadata_store_pb2.Artifact) -> List[str]:
    lines = []
    for split in _split_names(anomalies):
        proto = anomalies_gate.load_anomalies(anomalies.uri, split)
        lines += [f"[{split}] {line}" for line in anomalies_gate.describe_anomalies(proto)]
    return lines
