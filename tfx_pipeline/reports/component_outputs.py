"""One short phrase per finished component: the key fact of each artifact it wrote.

Read from ML Metadata by execution id, so the phrase is what the run
recorded, whichever node produced the artifact.
"""

from typing import Callable, Dict, List

from ml_metadata import metadata_store
from ml_metadata.proto import metadata_store_pb2
from tfx.types import artifact_utils

from custom_components.bandit_trainer import anomalies_gate
from custom_components.movielens_generator.component import LoggedInteractions
from tfx_pipeline.reports import run_summary

_Artifact = metadata_store_pb2.Artifact


def describe_execution_outputs(store: metadata_store.MetadataStore, execution_id: int) -> str:
    """'rows 20000', 'anomalies none', 'DR 3.71 [3.65, 3.78], blessed', ... joined by '; '."""
    output_ids = [
        event.artifact_id
        for event in store.get_events_by_execution_ids([execution_id])
        if event.type in (metadata_store_pb2.Event.OUTPUT, metadata_store_pb2.Event.DECLARED_OUTPUT)
    ]
    artifacts = sorted(store.get_artifacts_by_id(output_ids), key=lambda a: a.id)
    type_names = {
        t.id: t.name for t in store.get_artifact_types_by_id({a.type_id for a in artifacts})
    }
    phrases: List[str] = []
    for artifact in artifacts:
        describe = _DESCRIBERS.get(type_names[artifact.type_id])
        if describe is not None:
            phrases.append(describe(artifact))
    return "; ".join(phrase for phrase in phrases if phrase)


def _logged_rows(artifact: _Artifact) -> str:
    return f"rows {_int(artifact, 'rows_written')}"


def _split_names(artifact: _Artifact) -> List[str]:
    return artifact_utils.decode_split_names(artifact.properties["split_names"].string_value)


def _examples(artifact: _Artifact) -> str:
    return f"splits {', '.join(_split_names(artifact))}"


def _statistics(artifact: _Artifact) -> str:
    rows = run_summary.rows_per_split(artifact)
    return "rows " + ", ".join(f"{split} {count}" for split, count in rows.items())


def _anomalies(artifact: _Artifact) -> str:
    found = sum(
        len(anomalies_gate.describe_anomalies(anomalies_gate.load_anomalies(artifact.uri, split)))
        for split in _split_names(artifact)
    )
    return f"anomalies {found or 'none'}"


def _model(artifact: _Artifact) -> str:
    agent = artifact.custom_properties["agent"].string_value
    return f"{agent}, train rows {_int(artifact, 'train_rows')}"


def _evaluation(artifact: _Artifact) -> str:
    properties = artifact.custom_properties
    verdict = "blessed" if properties["blessed"].int_value else "not blessed"
    if "candidate_dr" not in properties:
        return verdict
    value, lower, upper = (
        properties[f"candidate_dr{suffix}"].double_value for suffix in ("", "_lower", "_upper")
    )
    return f"DR {value:.3f} [{lower:.3f}, {upper:.3f}], {verdict}"


def _pushed(artifact: _Artifact) -> str:
    properties = artifact.custom_properties
    if not properties["pushed"].int_value:
        return "not pushed"
    return f"pushed version {properties['pushed_version'].string_value}"


def _int(artifact: _Artifact, name: str) -> int:
    return artifact.custom_properties[name].int_value


_DESCRIBERS: Dict[str, Callable[[_Artifact], str]] = {
    LoggedInteractions.TYPE_NAME: _logged_rows,
    "Examples": _examples,
    "ExampleStatistics": _statistics,
    "ExampleAnomalies": _anomalies,
    "Model": _model,
    "ModelEvaluation": _evaluation,
    "PushedModel": _pushed,
}
