"""The per-arm schema, checked through TFDV as ExampleValidator checks ingested rows.

Statistics come from TFDV's in-memory generators over tf.Examples decoded with
tfx_bsl (the encoding ExampleGen writes), as in test_bandit_schema.py. The
ingestion query computes `chosen_at_slot` and `distinct_candidates`; the
schema is what turns a wrong value of either into a stopped run.
"""

from typing import Dict, List, Sequence

import pytest
import tensorflow as tf
import tensorflow_data_validation as tfdv
from tensorflow_data_validation.statistics import stats_impl
from tensorflow_metadata.proto.v0 import anomalies_pb2, schema_pb2
from tfx_bsl.coders import example_coder

from bandit_core import columns
from bandit_core.data_contract import DataContract
from custom_components.bandit_schema_gen.schema import build_schema

GLOBAL_DIM, ARM_DIM, C = 3, 2, 4
REWARD_MIN, REWARD_MAX = -5.0, 10.0
MIN_PROPENSITY = 1e-3
INTS = (
    columns.USER_ID,
    columns.ACTION,
    columns.EVENT_TIME_US,
    columns.CANDIDATE_MOVIE_IDS,
    columns.MOVIE_ID,
    columns.CHOSEN_AT_SLOT,
    columns.DISTINCT_CANDIDATES,
)

pytestmark = pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")


@pytest.fixture(scope="module")
def schema() -> schema_pb2.Schema:
    return build_schema(
        DataContract(GLOBAL_DIM, C, REWARD_MIN, REWARD_MAX, MIN_PROPENSITY, arm_dim=ARM_DIM)
    )


def _example(
    action: int = 1,
    candidate_movie_ids: Sequence[int] = (10, 20, 30, 40),
    movie_id: int = 20,
    arm_features: Sequence[float] = (0.5, -0.5),
    chosen_at_slot: int = 1,
    distinct_candidates: int = C,
    propensity: float = 1.0 / C,
    observation: Sequence[float] = (0.1, -0.2, 0.3),
    reward: float = 3.0,
) -> bytes:
    """A consistent per-arm row by default: movie 20 served from slot 1 of 4."""
    values = {
        columns.USER_ID: [7],
        columns.OBSERVATION: list(observation),
        columns.ACTION: [action],
        columns.REWARD: [reward],
        columns.PROPENSITY: [propensity],
        columns.EVENT_TIME_US: [1_700_000_000_000_000],
        columns.CANDIDATE_MOVIE_IDS: list(candidate_movie_ids),
        columns.MOVIE_ID: [movie_id],
        columns.ARM_FEATURES: list(arm_features),
        columns.CHOSEN_AT_SLOT: [chosen_at_slot],
        columns.DISTINCT_CANDIDATES: [distinct_candidates],
    }
    feature = {
        name: (
            tf.train.Feature(int64_list=tf.train.Int64List(value=value))
            if name in INTS
            else tf.train.Feature(float_list=tf.train.FloatList(value=value))
        )
        for name, value in values.items()
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _clean_rows() -> List[bytes]:
    # Every slot, both reward bounds, propensity at its minimum and at 1.
    return [
        _example(action=0, candidate_movie_ids=(5, 6, 7, 8), movie_id=5, reward=REWARD_MIN),
        _example(action=1, reward=REWARD_MAX),
        _example(action=2, candidate_movie_ids=(1, 2, 3, 1682), movie_id=3, propensity=1.0),
        _example(action=3, candidate_movie_ids=(9, 8, 7, 6), movie_id=6, propensity=MIN_PROPENSITY),
    ]


def _kinds(schema: schema_pb2.Schema, rows: List[bytes]) -> Dict[str, set]:
    record_batch = example_coder.ExamplesToRecordBatchDecoder().DecodeBatch(rows)
    statistics = stats_impl.generate_statistics_in_memory(record_batch, tfdv.StatsOptions())
    anomalies = tfdv.validate_statistics(statistics, schema)
    assert not anomalies.HasField("dataset_anomaly_info")
    return {
        name: {anomalies_pb2.AnomalyInfo.Type.Name(r.type) for r in info.reason}
        for name, info in anomalies.anomaly_info.items()
    }


def test_schema_requires_every_per_arm_feature_except_user_id(schema):
    by_name = {f.name: f for f in schema.feature}
    assert set(by_name) == set(columns.PER_ARM_EXAMPLE_FEATURES)
    required = set(columns.PER_ARM_EXAMPLE_FEATURES) - {columns.USER_ID}
    assert {n for n, f in by_name.items() if f.presence.min_fraction == 1.0} == required
    lengths = {
        columns.OBSERVATION: GLOBAL_DIM,
        columns.CANDIDATE_MOVIE_IDS: C,
        columns.ARM_FEATURES: ARM_DIM,
        columns.MOVIE_ID: 1,
    }
    for name, length in lengths.items():
        assert (by_name[name].value_count.min, by_name[name].value_count.max) == (length, length)


def test_consistent_rows_have_no_anomalies(schema):
    assert _kinds(schema, _clean_rows()) == {}


@pytest.mark.parametrize(
    "bad_row, feature, kind",
    [
        # The served movie is not at the logged slot (the query counts 0 matches).
        (dict(chosen_at_slot=0), columns.CHOSEN_AT_SLOT, "INT_TYPE_SMALL_INT"),
        (dict(chosen_at_slot=2), columns.CHOSEN_AT_SLOT, "INT_TYPE_BIG_INT"),
        # A candidate set repeating a movie.
        (dict(distinct_candidates=C - 1), columns.DISTINCT_CANDIDATES, "INT_TYPE_SMALL_INT"),
        (
            dict(candidate_movie_ids=(10, 20, 30)),
            columns.CANDIDATE_MOVIE_IDS,
            "FEATURE_TYPE_LOW_NUMBER_VALUES",
        ),
        (
            dict(candidate_movie_ids=(10, 20, 30, 40, 50)),
            columns.CANDIDATE_MOVIE_IDS,
            "FEATURE_TYPE_HIGH_NUMBER_VALUES",
        ),
        (
            dict(candidate_movie_ids=(0, 20, 30, 40)),
            columns.CANDIDATE_MOVIE_IDS,
            "INT_TYPE_SMALL_INT",
        ),
        (dict(movie_id=0), columns.MOVIE_ID, "INT_TYPE_SMALL_INT"),
        # Beyond MovieLens 100K's catalogue, the data contract's movie id range.
        (
            dict(candidate_movie_ids=(10, 20, 30, 1683)),
            columns.CANDIDATE_MOVIE_IDS,
            "INT_TYPE_BIG_INT",
        ),
        (dict(movie_id=1683), columns.MOVIE_ID, "INT_TYPE_BIG_INT"),
        (dict(propensity=0.0), columns.PROPENSITY, "FLOAT_TYPE_SMALL_FLOAT"),
        (dict(propensity=MIN_PROPENSITY / 2), columns.PROPENSITY, "FLOAT_TYPE_SMALL_FLOAT"),
        (dict(arm_features=(0.5,)), columns.ARM_FEATURES, "FEATURE_TYPE_LOW_NUMBER_VALUES"),
        (
            dict(arm_features=(0.5, 0.5, 0.5)),
            columns.ARM_FEATURES,
            "FEATURE_TYPE_HIGH_NUMBER_VALUES",
        ),
        (dict(arm_features=(0.5, float("nan"))), columns.ARM_FEATURES, "FLOAT_TYPE_HAS_NAN"),
        (dict(arm_features=(float("inf"), 0.5)), columns.ARM_FEATURES, "FLOAT_TYPE_HAS_INF"),
        # Actions are slots among the candidates, not movie ids.
        (dict(action=C), columns.ACTION, "INT_TYPE_BIG_INT"),
        (
            dict(observation=(0.1, 0.2)),
            columns.OBSERVATION,
            "FEATURE_TYPE_LOW_NUMBER_VALUES",
        ),
    ],
)
def test_one_bad_row_is_an_anomaly_on_its_feature(schema, bad_row, feature, kind):
    assert _kinds(schema, _clean_rows() + [_example(**bad_row)]) == {feature: {kind}}


def test_schema_follows_its_arguments():
    """The same row is clean or anomalous depending on the dimensions passed in."""
    row = [_example(action=3)]
    assert _kinds(build_schema(DataContract(3, 4, 0.0, 10.0, 0.25, arm_dim=2)), row) == {}
    narrow = build_schema(DataContract(2, 5, 0.0, 10.0, 0.3, arm_dim=3))
    assert _kinds(narrow, row) == {
        columns.OBSERVATION: {"FEATURE_TYPE_HIGH_NUMBER_VALUES"},
        columns.ARM_FEATURES: {"FEATURE_TYPE_LOW_NUMBER_VALUES"},
        columns.CANDIDATE_MOVIE_IDS: {"FEATURE_TYPE_LOW_NUMBER_VALUES"},
        columns.DISTINCT_CANDIDATES: {"INT_TYPE_SMALL_INT"},
        columns.PROPENSITY: {"FLOAT_TYPE_SMALL_FLOAT"},
    }


def test_classic_schema_flags_the_per_arm_columns_as_unknown():
    """Per-arm rows fed to a classic pipeline are caught, not silently trained on."""
    classic = build_schema(DataContract(GLOBAL_DIM, C, REWARD_MIN, REWARD_MAX, MIN_PROPENSITY))
    kinds = _kinds(classic, _clean_rows())
    per_arm_only = set(columns.PER_ARM_EXAMPLE_FEATURES) - set(columns.EXAMPLE_FEATURES)
    assert set(kinds) == per_arm_only
    assert all(k == {"SCHEMA_NEW_COLUMN"} for k in kinds.values())
