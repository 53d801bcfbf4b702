"""The SQL that ExampleGen runs over the logged-interactions table."""

import datetime

from bandit_core import columns


class QueryConfigError(ValueError):
    """A query setting (window or filter) is malformed."""


def parse_timestamp(value: str, setting: str) -> datetime.datetime:
    """Parses an ISO-8601 timestamp, naming the setting when it cannot."""
    try:
        parsed = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as e:
        raise QueryConfigError(
            f"{setting}={value!r} is not an ISO-8601 timestamp such as 2026-11-25T00:00:00+00:00"
        ) from e
    if not parsed.tzinfo:
        parsed = parsed.replace(tzinfo=datetime.timezone.utc)
    return parsed.astimezone(datetime.timezone.utc)


def _window_conditions(column: str, window_start: str, window_end: str) -> list:
    conditions = []
    start = parse_timestamp(window_start, "ingestion.window_start") if window_start else None
    end = parse_timestamp(window_end, "ingestion.window_end") if window_end else None
    if start and end and start >= end:
        raise QueryConfigError(
            f"ingestion.window_start ({window_start}) must be before ingestion.window_end ({window_end})"
        )
    if start:
        conditions.append(f"{column} >= TIMESTAMP('{start.isoformat()}')")
    if end:
        conditions.append(f"{column} < TIMESTAMP('{end.isoformat()}')")
    return conditions


def build_examples_query(
    table_id: str, window_start: str = "", window_end: str = "", source: str = ""
) -> str:
    """SELECTs the example features of the rows in [window_start, window_end).

    TIMESTAMP is not a type TFX converts to tf.Example, so event time travels
    as microseconds since the epoch. Empty bounds leave the window open.
    """
    conditions = _window_conditions("event_time", window_start, window_end)
    if source:
        if not source.replace("_", "").replace("-", "").isalnum():
            raise QueryConfigError(
                f"ingestion.source={source!r} must be letters, digits, _ or - (e.g. generator)"
            )
        conditions.append(f"source = '{source}'")
    where = " AND ".join(conditions) or "TRUE"
    return (
        f"SELECT {columns.USER_ID}, {columns.OBSERVATION}, {columns.ACTION}, "
        f"{columns.REWARD}, {columns.PROPENSITY}, "
        f"UNIX_MICROS(event_time) AS {columns.EVENT_TIME_US} "
        f"FROM `{table_id}` WHERE {where}"
    )


def build_serving_logs_query(
    predictions_table_id: str, rewards_table_id: str, window_start: str = "", window_end: str = ""
) -> str:
    """Joins served predictions to their rewards, one row per event_id.

    The logger may resend a batch after an ambiguous failure, so each side is
    deduplicated by event_id before the join; unrewarded predictions drop out.
    The window applies to the prediction's event time.
    """
    conditions = _window_conditions("p.event_time", window_start, window_end)
    where = " AND ".join(conditions) or "TRUE"
    return (
        f"SELECT p.{columns.USER_ID}, p.{columns.OBSERVATION}, p.{columns.ACTION}, "
        f"r.{columns.REWARD}, p.{columns.PROPENSITY}, "
        f"UNIX_MICROS(p.event_time) AS {columns.EVENT_TIME_US} "
        f"FROM (SELECT * FROM `{predictions_table_id}` WHERE TRUE QUALIFY "
        f"ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY event_time) = 1) AS p "
        f"JOIN (SELECT * FROM `{rewards_table_id}` WHERE TRUE QUALIFY "
        f"ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY reward_time) = 1) AS r "
        f"ON p.event_id = r.event_id WHERE {where}"
    )
