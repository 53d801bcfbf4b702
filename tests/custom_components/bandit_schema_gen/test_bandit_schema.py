"""Tests for the curated bandit schema (through TFDV) and the trainer's anomalies gate.

Statistics are computed by TFDV's in-memory generators (the ones
`tfdv.generate_statistics_from_dataframe` uses) over tf.Examples decoded with
tfx_bsl, i.e. the same encoding ExampleGen writes; a pandas DataFrame cannot
hold the multivalent `observation` feature.
"""

import math
from typing import Dict, List

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.types import artifact_utils, standard_artifacts
from tfx_bsl.coders import example_coder

from bandit_core import columns
from bandit_core.data_contract import DataContract
from custom_components.bandit_schema_gen.schema import build_schema
from custom_components.bandit_trainer.anomalies_gate import (
    AnomaliesFoundError,
    describe_anomalies,
    load_anomalies,
    raise_if_anomalous,
    read_split_anomalies,
)

OBS_DIM = 3
NUM_ACTIONS = 4
REWARD_MIN, REWARD_MAX = -5.0, 10.0
MIN_PROPENSITY = 1e-6

# TFDV's mean/variance of a feature holding inf warns; the anomaly is what matters.
pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@pytest.fixture(scope="module")
def schema() -> schema_pb2.Schema:
    return build_schema(DataContract(OBS_DIM, NUM_ACTIONS, REWARD_MIN, REWARD_MAX, MIN_PROPENSITY))


def _example(
    user_id=1,
    observation=(0.1, -0.2, 0.3),
    action=0,
    reward=1.0,
    propensity=0.25,
    event_time_us=1_700_000_000_000_000,
    drop=(),
) -> bytes:
    values = {
        columns.USER_ID: list(user_id) if isinstance(user_id, list) else [user_id],
        columns.OBSERVATION: list(observation),
        columns.ACTION: [action],
        columns.REWARD: [reward],
        columns.PROPENSITY: [propensity],
        columns.EVENT_TIME_US: [event_time_us],
    }
    ints = (columns.USER_ID, columns.ACTION, columns.EVENT_TIME_US)
    feature = {}
    for name, value in values.items():
        if name in drop:
            continue
        if name in ints:
            feature[name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
        else:
            feature[name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _clean_rows() -> List[bytes]:
    # Spans the whole legal range: every action, both reward bounds, propensity 1.
    return [
        _example(user_id=u, action=u % NUM_ACTIONS, reward=r, propensity=p, event_time_us=u)
        for u, r, p in [
            (1, REWARD_MIN, 0.25),
            (2, REWARD_MAX, 0.25),
            (3, 0.0, 1.0),
            (4, 3.5, MIN_PROPENSITY),
            (5, -1.25, 0.5),
        ]
    ]


def _validate(schema, rows: List[bytes]) -> anomalies_pb2.Anomalies:
    record_batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(rows)
    statistics = stats_impl.generate_statistics_in_memory(record_batch, tfdv.StatsOptions())
    return tfdv.validate_statistics(statistics, schema)


def _kinds(anomalies: anomalies_pb2.Anomalies) -> Dict[str, set]:
    return {
        name: {anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason}
        for name, info in anomalies.anomaly_info.items()
    }


def test_schema_constrains_every_example_feature(schema):
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == set(columns.EXAMPLE_FEATURES)
    for feature in schema.feature:
        # user_id is optional: serving logs carry it only when the caller sent it.
        expected = 0.0 if feature.name == columns.USER_ID else 1.0
        assert feature.presence.min_fraction == expected
    assert by_name[columns.OBSERVATION].value_count.min == OBS_DIM
    assert by_name[columns.OBSERVATION].value_count.max == OBS_DIM
    assert by_name[columns.ACTION].int_domain.max == NUM_ACTIONS - 1
    assert by_name[columns.PROPENSITY].float_domain.max == 1.0


def test_clean_data_has_no_anomalies(schema):
    anomalies = _validate(schema, _clean_rows())
    assert dict(anomalies.anomaly_info) == {}
    assert not anomalies.HasField("dataset_anomaly_info")


@pytest.mark.parametrize(
    "bad_row, feature, kind",
    [
        (dict(action=NUM_ACTIONS), columns.ACTION, "INT_TYPE_BIG_INT"),
        (dict(action=-1), columns.ACTION, "INT_TYPE_SMALL_INT"),
        (dict(propensity=0.0), columns.PROPENSITY, "FLOAT_TYPE_SMALL_FLOAT"),
        (dict(propensity=1.5), columns.PROPENSITY, "FLOAT_TYPE_BIG_FLOAT"),
        (dict(propensity=math.nan), columns.PROPENSITY, "FLOAT_TYPE_HAS_NAN"),
        (dict(reward=REWARD_MAX + 0.5), columns.REWARD, "FLOAT_TYPE_BIG_FLOAT"),
        (dict(reward=REWARD_MIN - 0.5), columns.REWARD, "FLOAT_TYPE_SMALL_FLOAT"),
        (dict(reward=math.nan), columns.REWARD, "FLOAT_TYPE_HAS_NAN"),
        (dict(observation=(0.1, 0.2)), columns.OBSERVATION, "FEATURE_TYPE_LOW_NUMBER_VALUES"),
        (
            dict(observation=(0.1, 0.2, 0.3, 0.4)),
            columns.OBSERVATION,
            "FEATURE_TYPE_HIGH_NUMBER_VALUES",
        ),
        (dict(observation=(0.1, math.nan, 0.3)), columns.OBSERVATION, "FLOAT_TYPE_HAS_NAN"),
        (dict(observation=(0.1, math.inf, 0.3)), columns.OBSERVATION, "FLOAT_TYPE_HAS_INF"),
        (dict(drop=(columns.REWARD,)), columns.REWARD, "FEATURE_TYPE_LOW_FRACTION_PRESENT"),
        (
            dict(drop=(columns.PROPENSITY,)),
            columns.PROPENSITY,
            "FEATURE_TYPE_LOW_FRACTION_PRESENT",
        ),
        (
            dict(drop=(columns.EVENT_TIME_US,)),
            columns.EVENT_TIME_US,
            "FEATURE_TYPE_LOW_FRACTION_PRESENT",
        ),
        (dict(user_id=0), columns.USER_ID, "INT_TYPE_SMALL_INT"),
    ],
)
def test_one_bad_row_is_an_anomaly_on_its_feature(schema, bad_row, feature, kind):
    anomalies = _validate(schema, _clean_rows() + [_example(**bad_row)])
    assert _kinds(anomalies) == {feature: {kind}}


def test_user_id_is_optional_but_single_and_positive(schema):
    rows = _clean_rows() + [_example(drop=(columns.USER_ID,))]
    assert _kinds(_validate(schema, rows)) == {}
    rows = _clean_rows() + [_example(user_id=[1, 2])]
    assert _kinds(_validate(schema, rows)) == {
        columns.USER_ID: {"FEATURE_TYPE_HIGH_NUMBER_VALUES"}
    }


def test_schema_follows_its_arguments():
    # The same row is clean or anomalous depending on the bounds passed in.
    row = [_example(action=7, reward=20.0, propensity=0.01, observation=(1.0,) * 5)]
    wide = build_schema(DataContract(5, 8, 0.0, 20.0, 0.01))
    assert _kinds(_validate(wide, row)) == {}
    narrow = build_schema(DataContract(5, 7, 0.0, 19.5, 0.02))
    assert _kinds(_validate(narrow, row)) == {
        columns.ACTION: {"INT_TYPE_BIG_INT"},
        columns.REWARD: {"FLOAT_TYPE_BIG_FLOAT"},
        columns.PROPENSITY: {"FLOAT_TYPE_SMALL_FLOAT"},
    }


# --- anomalies_gate ---------------------------------------------------------


@pytest.fixture(scope="module")
def bad_anomalies(schema) -> anomalies_pb2.Anomalies:
    rows = _clean_rows() + [_example(action=NUM_ACTIONS), _example(propensity=0.0)]
    anomalies = _validate(schema, rows)
    assert set(anomalies.anomaly_info) == {columns.ACTION, columns.PROPENSITY}
    return anomalies


@pytest.fixture(scope="module")
def clean_anomalies(schema) -> anomalies_pb2.Anomalies:
    return _validate(schema, _clean_rows())


def test_describe_anomalies_one_line_per_feature(bad_anomalies):
    lines = describe_anomalies(bad_anomalies)
    assert len(lines) == 2
    assert lines[0].startswith(f"{columns.ACTION}: INT_TYPE_BIG_INT: ")
    assert lines[1].startswith(f"{columns.PROPENSITY}: FLOAT_TYPE_SMALL_FLOAT: ")
    for line, name in zip(lines, (columns.ACTION, columns.PROPENSITY)):
        description = bad_anomalies.anomaly_info[name].description
        assert description and line.endswith(description)


def test_describe_anomalies_falls_back_to_short_description_and_dataset_info():
    anomalies = anomalies_pb2.Anomalies()
    info = anomalies.anomaly_info["reward"]
    info.short_description = "Out-of-range values"
    info.reason.add(type=anomalies_pb2.AnomalyInfo.FLOAT_TYPE_BIG_FLOAT)
    info.reason.add(type=anomalies_pb2.AnomalyInfo.FLOAT_TYPE_HAS_NAN)
    anomalies.dataset_anomaly_info.description = "Too few examples"
    assert describe_anomalies(anomalies) == [
        "reward: FLOAT_TYPE_BIG_FLOAT, FLOAT_TYPE_HAS_NAN: Out-of-range values",
        "(dataset): Too few examples",
    ]


def test_describe_anomalies_of_clean_data_is_empty(clean_anomalies):
    assert describe_anomalies(clean_anomalies) == []
    assert describe_anomalies(anomalies_pb2.Anomalies()) == []


def test_raise_if_anomalous_lists_every_split_and_feature(schema, bad_anomalies, clean_anomalies):
    eval_anomalies = _validate(schema, _clean_rows() + [_example(drop=(columns.REWARD,))])
    with pytest.raises(AnomaliesFoundError) as excinfo:
        raise_if_anomalous(
            {"train": bad_anomalies, "eval": eval_anomalies, "extra": clean_anomalies}
        )
    message = str(excinfo.value)
    problem_lines = [line.strip() for line in message.splitlines() if line.startswith("  [")]
    assert [line.split(":")[0] for line in problem_lines] == [
        f"[eval] {columns.REWARD}",
        f"[train] {columns.ACTION}",
        f"[train] {columns.PROPENSITY}",
    ]
    assert "[extra]" not in message
    assert issubclass(AnomaliesFoundError, RuntimeError)


def test_raise_if_anomalous_is_silent_on_clean_protos(clean_anomalies):
    raise_if_anomalous({"train": clean_anomalies, "eval": anomalies_pb2.Anomalies()})
    raise_if_anomalous({})


def test_read_split_anomalies_from_an_example_anomalies_artifact(
    tmp_path, bad_anomalies, clean_anomalies
):
    artifact = standard_artifacts.ExampleAnomalies()
    artifact.uri = str(tmp_path)
    artifact.split_names = artifact_utils.encode_split_names(["train", "eval"])
    for split, anomalies in (("train", bad_anomalies), ("eval", clean_anomalies)):
        split_dir = tmp_path / f"Split-{split}"
        split_dir.mkdir()
        (split_dir / DEFAULT_FILE_NAME).write_bytes(anomalies.SerializeToString())
    assert load_anomalies(str(tmp_path), "train") == bad_anomalies
    read = read_split_anomalies(artifact)
    assert read == {"train": bad_anomalies, "eval": clean_anomalies}
    with pytest.raises(AnomaliesFoundError, match=r"\[train\] action"):
        raise_if_anomalous(read)
