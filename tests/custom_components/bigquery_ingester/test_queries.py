"""Tests for custom_components.bigquery_ingester.queries: the SQL ExampleGen runs."""

import datetime
import re

import pytest

from bandit_core import columns
from custom_components.bigquery_ingester.queries import (
    EVENT_ID,
    QueryConfigError,
    build_examples_query,
    build_serving_logs_query,
    parse_timestamp,
)

TABLE = "local-proj.mlbandits.logged_interactions"
UTC = datetime.timezone.utc
_LITERAL = re.compile(r"TIMESTAMP\('([^']*)'\)")


CLASSIC_ROWS = f"{columns.MOVIE_ID} IS NULL"


def _where(query: str) -> str:
    """The conditions after the one that keeps classic rows (which every classic query has)."""
    where = query.split(" WHERE ", 1)[1]
    assert where.startswith(CLASSIC_ROWS)
    return where[len(CLASSIC_ROWS):].removeprefix(" AND ")


def _literal_instants(query: str):
    return [datetime.datetime.fromisoformat(text) for text in _LITERAL.findall(query)]


def test_selects_the_example_features_and_event_time_in_micros():
    query = build_examples_query(TABLE)
    select = query.split(" FROM ", 1)[0]
    assert select.startswith("SELECT ")
    selected = [c.strip() for c in select[len("SELECT "):].split(",")]
    assert selected == [
        EVENT_ID,
        columns.USER_ID,
        columns.OBSERVATION,
        columns.ACTION,
        columns.REWARD,
        columns.PROPENSITY,
        f"UNIX_MICROS(event_time) AS {columns.EVENT_TIME_US}",
    ]
    # Every feature the trainer reads comes out under its own name, after the event id.
    aliases = [c.split(" AS ")[-1] for c in selected]
    assert tuple(aliases) == (EVENT_ID,) + columns.EXAMPLE_FEATURES
    assert f"FROM `{TABLE}` " in query


def test_open_window_and_no_filter_selects_every_classic_row():
    assert build_examples_query(TABLE).endswith(f" WHERE {CLASSIC_ROWS}")


def test_window_bounds_are_utc_timestamp_literals_half_open():
    query = build_examples_query(
        TABLE, "2026-11-25T00:00:00+00:00", "2026-11-26T12:30:00.250000Z"
    )
    assert _where(query) == (
        "event_time >= TIMESTAMP('2026-11-25T00:00:00+00:00') "
        "AND event_time < TIMESTAMP('2026-11-26T12:30:00.250000+00:00')"
    )


def test_naive_timestamps_are_treated_as_utc():
    query = build_examples_query(TABLE, "2026-11-25T08:00:00", "2026-11-25 09:00:00")
    assert _where(query) == (
        "event_time >= TIMESTAMP('2026-11-25T08:00:00+00:00') "
        "AND event_time < TIMESTAMP('2026-11-25T09:00:00+00:00')"
    )


def test_offset_timestamps_denote_the_same_utc_instant():
    query = build_examples_query(TABLE, "2026-11-25T02:00:00+02:00", "2026-11-24T22:00:00-05:00")
    start, end = _literal_instants(query)
    assert start == datetime.datetime(2026, 11, 25, 0, 0, tzinfo=UTC)
    assert end == datetime.datetime(2026, 11, 25, 3, 0, tzinfo=UTC)
    # Every literal carries an explicit offset, so BigQuery never applies a default zone.
    assert all(t.utcoffset() is not None for t in (start, end))


def test_only_one_bound():
    start_only = build_examples_query(TABLE, window_start="2026-01-01T00:00:00Z")
    assert _where(start_only) == "event_time >= TIMESTAMP('2026-01-01T00:00:00+00:00')"
    end_only = build_examples_query(TABLE, window_end="2026-01-01T00:00:00Z")
    assert _where(end_only) == "event_time < TIMESTAMP('2026-01-01T00:00:00+00:00')"


@pytest.mark.parametrize(
    "start, end",
    [
        ("2026-11-25T00:00:00Z", "2026-11-25T00:00:00Z"),
        ("2026-11-26T00:00:00Z", "2026-11-25T00:00:00Z"),
        # Same wall-clock order, but +01:00 makes the end the earlier instant.
        ("2026-11-25T00:30:00Z", "2026-11-25T01:00:00+01:00"),
    ],
)
def test_start_not_before_end_is_rejected(start, end):
    with pytest.raises(QueryConfigError, match="ingestion.window_start .* must be before"):
        build_examples_query(TABLE, start, end)


@pytest.mark.parametrize(
    "start, end, setting, bad",
    [
        ("yesterday", "", "ingestion.window_start", "yesterday"),
        ("2026-13-01T00:00:00Z", "", "ingestion.window_start", "2026-13-01T00:00:00Z"),
        (
            "2026-11-25T00:00:00Z",
            "2026-11-25T25:00:00Z",
            "ingestion.window_end",
            "2026-11-25T25:00:00Z",
        ),
        ("", "25/11/2026", "ingestion.window_end", "25/11/2026"),
    ],
)
def test_malformed_timestamp_names_the_setting(start, end, setting, bad):
    with pytest.raises(QueryConfigError) as excinfo:
        build_examples_query(TABLE, start, end)
    assert f"{setting}={bad!r}" in str(excinfo.value)
    assert "ISO-8601" in str(excinfo.value)


def test_parse_timestamp_returns_utc_datetimes():
    assert parse_timestamp("2026-11-25T00:00:00", "s") == datetime.datetime(
        2026, 11, 25, tzinfo=UTC
    )
    parsed = parse_timestamp("2026-11-25T00:00:00+05:30", "s")
    assert parsed.utcoffset() == datetime.timedelta(0)
    assert parsed == datetime.datetime(2026, 11, 24, 18, 30, tzinfo=UTC)
    with pytest.raises(QueryConfigError, match="my.setting='x'"):
        parse_timestamp("x", "my.setting")


def test_query_config_error_is_a_value_error():
    assert issubclass(QueryConfigError, ValueError)


@pytest.mark.parametrize("source", ["generator", "serving", "serving-v2", "a_b-1"])
def test_source_filter(source):
    query = build_examples_query(TABLE, source=source)
    assert _where(query) == f"source = '{source}'"


def test_source_filter_combines_with_window():
    query = build_examples_query(
        TABLE, "2026-01-01T00:00:00Z", "2026-02-01T00:00:00Z", source="generator"
    )
    assert _where(query) == (
        "event_time >= TIMESTAMP('2026-01-01T00:00:00+00:00') "
        "AND event_time < TIMESTAMP('2026-02-01T00:00:00+00:00') "
        "AND source = 'generator'"
    )


@pytest.mark.parametrize(
    "source",
    [
        "x' OR '1'='1",
        "generator'--",
        "gen erator",
        'gen"erator',
        "gen\\'",
        "a;DROP TABLE t",
        "_",
        "-",
        "gen\nerator",
    ],
)
def test_source_injection_is_rejected(source):
    with pytest.raises(QueryConfigError) as excinfo:
        build_examples_query(TABLE, source=source)
    assert f"ingestion.source={source!r}" in str(excinfo.value)


# --- build_serving_logs_query ---------------------------------------------------

PREDICTIONS = "local-proj.mlbandits.predictions"
REWARDS = "local-proj.mlbandits.rewards"


def test_serving_logs_query_selects_the_example_features():
    query = build_serving_logs_query(PREDICTIONS, REWARDS)
    select = query.split(" FROM ", 1)[0][len("SELECT "):]
    aliases = [c.strip().split(" AS ")[-1].split(".")[-1] for c in select.split(",")]
    assert tuple(aliases) == (EVENT_ID,) + columns.EXAMPLE_FEATURES
    # The reward comes from the rewards table, everything else from the prediction.
    assert f"r.{columns.REWARD}" in select
    assert f"UNIX_MICROS(p.event_time) AS {columns.EVENT_TIME_US}" in select
    assert f"`{PREDICTIONS}`" in query and f"`{REWARDS}`" in query
    assert "ON p.event_id = r.event_id" in query
    assert query.count("PARTITION BY event_id") == 2
    assert query.endswith(f"WHERE p.{CLASSIC_ROWS}")


def test_serving_logs_window_applies_to_the_prediction_time():
    query = build_serving_logs_query(
        PREDICTIONS, REWARDS, "2026-11-25T00:00:00", "2026-11-25T01:00:00Z"
    )
    assert query.endswith(
        f"WHERE p.{CLASSIC_ROWS} AND p.event_time >= TIMESTAMP('2026-11-25T00:00:00+00:00') "
        "AND p.event_time < TIMESTAMP('2026-11-25T01:00:00+00:00')"
    )


def test_serving_logs_window_is_checked():
    with pytest.raises(QueryConfigError, match="must be before"):
        build_serving_logs_query(PREDICTIONS, REWARDS, "2026-11-25T01:00:00Z", "2026-11-25")
    with pytest.raises(QueryConfigError, match="ingestion.window_end='soon'"):
        build_serving_logs_query(PREDICTIONS, REWARDS, window_end="soon")
