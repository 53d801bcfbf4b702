"""The data contract in Python: each rule is broken by its own bad row and by nothing else.

The same rules' SQL is held to these answers against the emulator in
tests/custom_components/bigquery_ingester/test_contract_sql.py.
"""

import math

import numpy as np
import pytest

from bandit_core import columns
from bandit_core.data_contract import (
    FLOAT32_MAX,
    INT64_MAX,
    MAX_EVENT_ID_LENGTH,
    ContractViolation,
    DataContract,
)
from simulation.movielens_data import NUM_ITEMS

CLASSIC = DataContract(observation_dim=3, num_actions=4)
PER_ARM = DataContract(observation_dim=2, num_actions=3, arm_dim=2)


def classic_row(**overrides) -> dict:
    row = {
        "event_id": "e-1",
        columns.USER_ID: 7,
        columns.OBSERVATION: [0.1, -0.2, 0.3],
        columns.ACTION: 2,
        columns.REWARD: 3.0,
        columns.PROPENSITY: 0.25,
    }
    return {**row, **overrides}


def per_arm_row(**overrides) -> dict:
    row = {
        **classic_row(observation=[0.5, 1.0], action=1),
        columns.CANDIDATE_MOVIE_IDS: [10, 20, 30],
        columns.MOVIE_ID: 20,
        columns.ARM_FEATURES: [0.5, -0.5],
    }
    return {**row, **overrides}


def _broken(contract: DataContract, row: dict) -> set:
    return {rule.name for rule in contract.broken_rules(row)}


@pytest.mark.parametrize(
    "row",
    [
        classic_row(),
        classic_row(user_id=None),
        classic_row(user_id=1),
        classic_row(user_id=INT64_MAX),
        classic_row(action=0, reward=-5.0, propensity=1e-6),
        classic_row(action=3, reward=10, propensity=1),
        classic_row(observation=[FLOAT32_MAX, -FLOAT32_MAX, 0]),
        classic_row(event_id="e" * MAX_EVENT_ID_LENGTH),
    ],
)
def test_rows_within_the_bounds_keep_the_classic_contract(row):
    assert _broken(CLASSIC, row) == set()


@pytest.mark.parametrize(
    "overrides, rule",
    [
        (dict(event_id=""), "event_id"),
        (dict(event_id="e" * (MAX_EVENT_ID_LENGTH + 1)), "event_id"),
        (dict(event_id=None), "event_id"),
        (dict(user_id=0), columns.USER_ID),
        (dict(user_id=-7), columns.USER_ID),
        (dict(user_id=INT64_MAX + 1), columns.USER_ID),
        (dict(user_id=True), columns.USER_ID),
        (dict(observation=[0.1, 0.2]), "observation_length"),
        (dict(observation=None), "observation_length"),
        (dict(observation=[0.1, math.nan, 0.3]), "observation_finite"),
        (dict(observation=[0.1, math.inf, 0.3]), "observation_finite"),
        (dict(observation=[0.1, 1e39, 0.3]), "observation_finite"),
        (dict(action=-1), columns.ACTION),
        (dict(action=4), columns.ACTION),
        (dict(action=None), columns.ACTION),
        (dict(action=1.0), columns.ACTION),
        (dict(reward=1e300), columns.REWARD),
        (dict(reward=-5.000001), columns.REWARD),
        (dict(reward=math.nan), columns.REWARD),
        (dict(reward=None), columns.REWARD),
        (dict(propensity=0.0), columns.PROPENSITY),
        (dict(propensity=1e-7), columns.PROPENSITY),
        (dict(propensity=1.5), columns.PROPENSITY),
        (dict(propensity=math.nan), columns.PROPENSITY),
    ],
)
def test_each_bad_classic_value_breaks_exactly_its_rule(overrides, rule):
    assert _broken(CLASSIC, classic_row(**overrides)) == {rule}


@pytest.mark.parametrize(
    "overrides, rules",
    [
        ({}, set()),
        (dict(candidate_movie_ids=[10, 20]), {"candidate_count"}),
        (dict(candidate_movie_ids=[10, 20, 30, 40]), {"candidate_count"}),
        (dict(candidate_movie_ids=[0, 20, 30]), {"candidate_ids"}),
        (dict(candidate_movie_ids=[10, 20, NUM_ITEMS + 1]), {"candidate_ids"}),
        (dict(candidate_movie_ids=[10, 20, 20]), {"candidates_distinct"}),
        (dict(movie_id=30), {"served_movie"}),
        (dict(movie_id=99), {"served_movie"}),
        (dict(action=3), {columns.ACTION, "served_movie"}),
        (dict(arm_features=[0.5]), {columns.ARM_FEATURES}),
        (dict(arm_features=[0.5, math.nan]), {columns.ARM_FEATURES}),
        (dict(observation=[0.5, 1.0, 2.0]), {"observation_length"}),
    ],
)
def test_each_bad_per_arm_value_breaks_exactly_its_rules(overrides, rules):
    assert _broken(PER_ARM, per_arm_row(**overrides)) == rules


def test_a_logged_per_arm_row_without_features_is_judged_on_the_rest():
    """The Generator's and the server's rows carry movie ids; ingestion joins the features."""
    row = per_arm_row()
    del row[columns.ARM_FEATURES]
    assert _broken(PER_ARM, row) == set()


def test_the_contract_follows_its_bounds():
    wide = DataContract(3, 4, reward_min=0.0, reward_max=20.0, min_propensity=0.5)
    assert _broken(wide, classic_row(reward=15.0, propensity=0.5)) == set()
    assert _broken(wide, classic_row(reward=-1.0, propensity=0.25)) == {
        columns.REWARD,
        columns.PROPENSITY,
    }


def test_checked_passes_good_rows_and_names_the_event_and_rules_of_the_first_bad_one():
    rows = [classic_row(event_id="ok"), classic_row(event_id="bad", user_id=0, reward=11.0)]
    checked = CLASSIC.checked(rows)
    assert next(checked)["event_id"] == "ok"
    with pytest.raises(ContractViolation) as raised:
        next(checked)
    message = str(raised.value)
    assert message.startswith("event 'bad' breaks the data contract: ")
    assert "user_id: user_id, when given, must be an integer in [1, 9223372036854775807]" in message
    assert "reward: reward must be a number in [-5.0, 10.0]" in message


@pytest.mark.parametrize(
    "fields, named",
    [
        (dict(observation_dim=0, num_actions=4), "observation_dim must be >= 1"),
        (dict(observation_dim=3, num_actions=0), "num_actions must be >= 1"),
        (dict(observation_dim=3, num_actions=4, reward_min=5.0, reward_max=5.0), "reward_min/"),
        (dict(observation_dim=3, num_actions=4, reward_max=math.inf), "reward_min/reward_max"),
        (dict(observation_dim=3, num_actions=4, min_propensity=0.0), "min_propensity must be"),
        (dict(observation_dim=3, num_actions=4, arm_dim=-1), "arm_dim must be 0"),
    ],
)
def test_an_impossible_contract_is_refused_by_name(fields, named):
    with pytest.raises(ValueError, match=f"^data contract {named}"):
        DataContract(**fields)


def test_parameters_round_trip_and_none_takes_the_default():
    assert DataContract.from_parameters(PER_ARM.parameters) == PER_ARM
    exec_properties = {**CLASSIC.parameters, "arm_dim": None, "unrelated": "x"}
    assert DataContract.from_parameters(exec_properties) == CLASSIC


def test_every_rule_sql_reads_null_as_broken():
    for rule in PER_ARM.rules:
        assert rule.sql == f"COALESCE(({rule.condition}), TRUE)"
    assert PER_ARM.any_broken_sql().count("COALESCE") == len(PER_ARM.rules)


def test_constants_match_what_they_stand_for():
    assert FLOAT32_MAX == float(np.finfo(np.float32).max)
    assert INT64_MAX == np.iinfo(np.int64).max
    assert NUM_ITEMS == 1682
