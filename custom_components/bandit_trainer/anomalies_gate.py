"""Stops training when ExampleValidator found anomalies.

TFX 1.15's ExampleValidator records anomalies but does not fail the run; this
gate is what turns a bad batch into a stopped pipeline with a readable reason.
"""

import os
from typing import Dict, List

from tensorflow_data_validation.utils import anomalies_util
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.types import artifact, artifact_utils


class AnomaliesFoundError(RuntimeError):
    """The logged data violates the schema; nothing may be trained on it."""


def describe_anomalies(anomalies: anomalies_pb2.Anomalies) -> List[str]:
    """One line per anomalous feature: its name, kind and TFDV's description."""
    lines = []
    for feature, info in sorted(anomalies.anomaly_info.items()):
        kinds = ", ".join(anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason)
        lines.append(f"{feature}: {kinds}: {info.description or info.short_description}")
    if anomalies.HasField("dataset_anomaly_info"):
        info = anomalies.dataset_anomaly_info
        lines.append(f"(dataset): {info.description or info.short_description}")
    return lines


def load_anomalies(anomalies_uri: str, split: str) -> anomalies_pb2.Anomalies:
    """The Anomalies proto ExampleValidator wrote for one split."""
    return anomalies_util.load_anomalies_binary(
        os.path.join(anomalies_uri, f"Split-{split}", DEFAULT_FILE_NAME)
    )


def read_split_anomalies(example_anomalies: artifact.Artifact) -> Dict[str, anomalies_pb2.Anomalies]:
    """The Anomalies proto of each split an ExampleAnomalies artifact holds."""
    return {
        split: load_anomalies(example_anomalies.uri, split)
        for split in artifact_utils.decode_split_names(example_anomalies.split_names)
    }


def raise_if_anomalous(split_anomalies: Dict[str, anomalies_pb2.Anomalies]) -> None:
    """Raises AnomaliesFoundError listing every anomaly of every split."""
    problems = [
        f"[{split}] {line}"
        for split, anomalies in sorted(split_anomalies.items())
        for line in describe_anomalies(anomalies)
    ]
    if problems:
        raise AnomaliesFoundError(
            "ExampleValidator found anomalies in the logged data, so nothing is trained "
            "or pushed. Fix or exclude the offending rows (or widen the bounds in the "
            "`validation` config if they are legitimate):\n  " + "\n  ".join(problems)
        )
