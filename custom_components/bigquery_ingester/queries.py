"""The SQL that ExampleGen runs over the logged-interactions or the serving-log tables.

Each `build_*_query` selects the window's rows with their event ids: the rows
the data contract gate judges. ExampleGen reads them through
`build_accepted_query`, which keeps the example columns of the rows that keep
the contract; the gate quarantines the others with the same conditions.
"""

import datetime

from bandit_core import columns
from bandit_core.data_contract import DataContract

EVENT_ID = "event_id"


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
            f"ingestion.window_start ({window_start}) must be before "
            f"ingestion.window_end ({window_end})"
        )
    if start:
        conditions.append(f"{column} >= TIMESTAMP('{start.isoformat()}')")
    if end:
        conditions.append(f"{column} < TIMESTAMP('{end.isoformat()}')")
    return conditions


def _source_condition(column: str, source: str) -> list:
    if not source:
        return []
    if not source.replace("_", "").replace("-", "").isalnum():
        raise QueryConfigError(
            f"ingestion.source={source!r} must be letters, digits, _ or - (e.g. generator)"
        )
    return [f"{column} = '{source}'"]


def build_examples_query(
    table_id: str, window_start: str = "", window_end: str = "", source: str = ""
) -> str:
    """SELECTs the event id and example features of the classic rows in [window_start, window_end).

    TIMESTAMP is not a type TFX converts to tf.Example, so event time travels
    as microseconds since the epoch. Empty bounds leave the window open.
    Per-arm rows (with a `movie_id`) share the table and are left out.
    """
    conditions = [f"{columns.MOVIE_ID} IS NULL"]
    conditions += _window_conditions("event_time", window_start, window_end)
    conditions += _source_condition("source", source)
    where = " AND ".join(conditions)
    return (
        f"SELECT {EVENT_ID}, {columns.USER_ID}, {columns.OBSERVATION}, {columns.ACTION}, "
        f"{columns.REWARD}, {columns.PROPENSITY}, "
        f"UNIX_MICROS(event_time) AS {columns.EVENT_TIME_US} "
        f"FROM `{table_id}` WHERE {where}"
    )


def _check_feature_version(feature_version: str) -> None:
    if not feature_version or not feature_version.replace("-", "").replace("_", "").isalnum():
        raise QueryConfigError(
            f"feature version {feature_version!r} must be non-empty letters, digits, _ or -"
        )


def _per_arm_select(events: str, items_table_id: str, feature_version: str) -> str:
    """Event id and per-arm example columns of alias `events`, with the served movie's features.

    The check columns let the schema verify what a tf.Example cannot relate:
    that the served movie sits at the logged position among the candidates
    (written with UNNEST ... WITH OFFSET, which the emulator evaluates the way
    BigQuery does; its `array[OFFSET(i)]` counts from 1), and how many
    candidates are distinct. Events whose movie has no features of this
    version do not join, so they are not trained on; a movie's row repeated in
    the items table (insert ids deduplicate only best-effort) joins once.
    """
    _check_feature_version(feature_version)
    e = events
    return (
        f"SELECT {e}.{EVENT_ID}, {e}.{columns.USER_ID}, {e}.{columns.OBSERVATION}, "
        f"{e}.{columns.ACTION}, {{reward}}, {e}.{columns.PROPENSITY}, "
        f"UNIX_MICROS({e}.event_time) AS {columns.EVENT_TIME_US}, "
        f"{e}.{columns.CANDIDATE_MOVIE_IDS}, {e}.{columns.MOVIE_ID}, "
        f"i.{columns.FEATURES} AS {columns.ARM_FEATURES}, "
        f"(SELECT COUNT(*) FROM UNNEST({e}.{columns.CANDIDATE_MOVIE_IDS}) AS m WITH OFFSET AS o "
        f"WHERE m = {e}.{columns.MOVIE_ID} AND o = {e}.{columns.ACTION}) "
        f"AS {columns.CHOSEN_AT_SLOT}, "
        f"(SELECT COUNT(DISTINCT m) FROM UNNEST({e}.{columns.CANDIDATE_MOVIE_IDS}) AS m) "
        f"AS {columns.DISTINCT_CANDIDATES} "
        f"FROM {{events}} JOIN ({build_items_query(items_table_id, feature_version)}) AS i "
        f"ON i.{columns.MOVIE_ID} = {e}.{columns.MOVIE_ID}"
    )


def build_per_arm_examples_query(
    table_id: str,
    items_table_id: str,
    feature_version: str,
    window_start: str = "",
    window_end: str = "",
    source: str = "",
) -> str:
    """SELECTs the per-arm rows in the window with their served movie's features.

    Only the served movie's features are joined: training needs no other, and
    the evaluator scores the other candidates with the catalogue bundled with
    the policy it evaluates.
    """
    conditions = [f"e.{columns.MOVIE_ID} IS NOT NULL"]
    conditions += _window_conditions("e.event_time", window_start, window_end)
    conditions += _source_condition("e.source", source)
    select = _per_arm_select("e", items_table_id, feature_version).format(
        reward=f"e.{columns.REWARD}", events=f"`{table_id}` AS e"
    )
    return f"{select} WHERE {' AND '.join(conditions)}"


def build_items_query(items_table_id: str, feature_version: str) -> str:
    """SELECTs every movie's features of one version: the catalogue a policy ships with."""
    _check_feature_version(feature_version)
    return (
        f"SELECT {columns.MOVIE_ID}, {columns.FEATURES} FROM `{items_table_id}` "
        f"WHERE {columns.FEATURE_VERSION} = '{feature_version}' QUALIFY ROW_NUMBER() OVER "
        f"(PARTITION BY {columns.MOVIE_ID} ORDER BY {columns.MOVIE_ID}) = 1"
    )


def _deduplicated(table_id: str, time_column: str) -> str:
    """The table with one row per event_id: the logger may resend a batch."""
    return (
        f"(SELECT * FROM `{table_id}` WHERE TRUE QUALIFY "
        f"ROW_NUMBER() OVER (PARTITION BY event_id ORDER BY {time_column}) = 1)"
    )


def build_serving_logs_query(
    predictions_table_id: str, rewards_table_id: str, window_start: str = "", window_end: str = ""
) -> str:
    """Joins served classic predictions to their rewards, one row per event_id.

    The logger may resend a batch after an ambiguous failure, so each side is
    deduplicated by event_id before the join; unrewarded predictions drop out.
    The window applies to the prediction's event time.
    """
    conditions = [f"p.{columns.MOVIE_ID} IS NULL"]
    conditions += _window_conditions("p.event_time", window_start, window_end)
    where = " AND ".join(conditions)
    return (
        f"SELECT p.{EVENT_ID}, p.{columns.USER_ID}, p.{columns.OBSERVATION}, "
        f"p.{columns.ACTION}, r.{columns.REWARD}, p.{columns.PROPENSITY}, "
        f"UNIX_MICROS(p.event_time) AS {columns.EVENT_TIME_US} "
        f"FROM {_deduplicated(predictions_table_id, 'event_time')} AS p "
        f"JOIN {_deduplicated(rewards_table_id, 'reward_time')} AS r "
        f"ON p.event_id = r.event_id WHERE {where}"
    )


def build_per_arm_serving_logs_query(
    predictions_table_id: str,
    rewards_table_id: str,
    items_table_id: str,
    feature_version: str,
    window_start: str = "",
    window_end: str = "",
) -> str:
    """Served per-arm predictions joined to their rewards and the served movie's features."""
    conditions = [f"p.{columns.MOVIE_ID} IS NOT NULL"]
    conditions += _window_conditions("p.event_time", window_start, window_end)
    select = _per_arm_select("p", items_table_id, feature_version).format(
        reward=f"r.{columns.REWARD}",
        events=(
            f"{_deduplicated(predictions_table_id, 'event_time')} AS p "
            f"JOIN {_deduplicated(rewards_table_id, 'reward_time')} AS r "
            f"ON p.event_id = r.event_id"
        ),
    )
    return f"{select} WHERE {' AND '.join(conditions)}"


def build_accepted_query(source_query: str, contract: DataContract) -> str:
    """ExampleGen's query: the example columns of the source rows that keep the data contract.

    `source_query` is one of the `build_*_query` results. The data contract
    gate quarantines the rows this query leaves out, with the same SQL
    conditions, so every row read is either trained on or quarantined.
    """
    features = columns.PER_ARM_EXAMPLE_FEATURES if contract.per_arm else columns.EXAMPLE_FEATURES
    return (
        f"SELECT {', '.join(features)} FROM ({source_query}) AS s "
        f"WHERE NOT ({contract.any_broken_sql()})"
    )
