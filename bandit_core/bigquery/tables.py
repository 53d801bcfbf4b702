"""The logged-interactions table: its schema, idempotent creation, bulk loads and inserts.

The schema is flat on purpose: TFX's BigQueryExampleGen converts only INTEGER,
FLOAT, STRING and BOOLEAN columns (scalar or REPEATED), so no RECORDs.
"""

import io
import itertools
import json
from typing import Callable, Iterable, List, Optional, Sequence, Set

from google.api_core import exceptions
from google.api_core.retry import Retry
from google.cloud import bigquery
from google.cloud.bigquery.retry import DEFAULT_RETRY

LOGGED_INTERACTIONS_SCHEMA = (
    bigquery.SchemaField("event_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("event_time", "TIMESTAMP", mode="REQUIRED"),
    bigquery.SchemaField("user_id", "INT64"),
    bigquery.SchemaField("observation", "FLOAT64", mode="REPEATED"),
    bigquery.SchemaField("action", "INT64"),
    bigquery.SchemaField("reward", "FLOAT64"),
    bigquery.SchemaField("propensity", "FLOAT64"),
    bigquery.SchemaField("policy_id", "STRING"),
    bigquery.SchemaField("source", "STRING"),
    # Per-arm events only: the movies offered, in order, and the one served
    # (`action` is its position). Movie features live in the items table.
    bigquery.SchemaField("candidate_movie_ids", "INT64", mode="REPEATED"),
    bigquery.SchemaField("movie_id", "INT64"),
)

# The movies a per-arm policy recommends from: features once per movie and
# feature version, joined to logged events at ingestion instead of being
# copied into every event.
ITEMS_SCHEMA = (
    bigquery.SchemaField("movie_id", "INT64", mode="REQUIRED"),
    bigquery.SchemaField("feature_version", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("features", "FLOAT64", mode="REPEATED"),
    bigquery.SchemaField("genres", "STRING", mode="REPEATED"),
    bigquery.SchemaField("year", "INT64"),
)

# What serving logs: one row per served prediction, one per reported reward,
# joined by event_id when the retraining DAG reads them.
PREDICTIONS_SCHEMA = (
    bigquery.SchemaField("event_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("event_time", "TIMESTAMP", mode="REQUIRED"),
    bigquery.SchemaField("user_id", "INT64"),
    bigquery.SchemaField("observation", "FLOAT64", mode="REPEATED"),
    bigquery.SchemaField("action", "INT64"),
    bigquery.SchemaField("propensity", "FLOAT64"),
    bigquery.SchemaField("model_version", "STRING"),
    bigquery.SchemaField("policy_id", "STRING"),
    # Per-arm predictions only: the movies served as candidates and the one chosen.
    bigquery.SchemaField("candidate_movie_ids", "INT64", mode="REPEATED"),
    bigquery.SchemaField("movie_id", "INT64"),
)
REWARDS_SCHEMA = (
    bigquery.SchemaField("event_id", "STRING", mode="REQUIRED"),
    bigquery.SchemaField("reward_time", "TIMESTAMP", mode="REQUIRED"),
    bigquery.SchemaField("reward", "FLOAT64"),
)

_TYPE_ALIASES = {"INTEGER": "INT64", "FLOAT": "FLOAT64", "BOOLEAN": "BOOL"}
INSERT_CHUNK_ROWS = 10_000
# Rows per load job: about 40 MB of NDJSON for logged interactions.
LOAD_CHUNK_ROWS = 100_000


class TableSchemaError(RuntimeError):
    """An existing table does not have the columns this project writes."""


def ensure_table(
    client: bigquery.Client,
    dataset: str,
    table: str,
    schema: Sequence[bigquery.SchemaField] = LOGGED_INTERACTIONS_SCHEMA,
    retry: Optional[Retry] = DEFAULT_RETRY,
    timeout: Optional[float] = None,
) -> str:
    """Creates dataset and table if missing and checks an existing table's columns.

    `retry` and `timeout` go to both API calls: callers that retry on their own
    (the serving logger) pass `retry=None` and a short timeout so an outage
    fails fast instead of being retried by the client for minutes.
    Returns the fully qualified table id.
    """
    client.create_dataset(
        bigquery.Dataset(f"{client.project}.{dataset}"),
        exists_ok=True,
        retry=retry,
        timeout=timeout,
    )
    table_id = f"{client.project}.{dataset}.{table}"
    existing = client.create_table(
        bigquery.Table(table_id, schema=list(schema)), exists_ok=True, retry=retry, timeout=timeout
    )
    want = {f.name: _normalise(f) for f in schema}
    have = {f.name: _normalise(f) for f in existing.schema}
    missing = {name: kind for name, kind in want.items() if have.get(name) != kind}
    if missing:
        raise TableSchemaError(
            f"table {table_id} exists but lacks or mistypes columns {missing} "
            f"(it has {have}); drop it or point bigquery.table at a new table"
        )
    return table_id


def existing_item_ids(client: bigquery.Client, table_id: str, feature_version: str) -> Set[int]:
    """Movie ids that already have features of `feature_version` in the items table."""
    job = client.query(
        f"SELECT movie_id FROM `{table_id}` WHERE feature_version = @version",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("version", "STRING", feature_version)]
        ),
    )
    return {int(row["movie_id"]) for row in job.result()}


def existing_event_ids(client: bigquery.Client, table_id: str, prefix: str) -> Set[str]:
    """Event ids already in the table that start with `prefix`."""
    job = client.query(
        f"SELECT event_id FROM `{table_id}` WHERE STARTS_WITH(event_id, @prefix)",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[bigquery.ScalarQueryParameter("prefix", "STRING", prefix)]
        ),
    )
    return {row["event_id"] for row in job.result()}


def _event_id(row: dict) -> str:
    return row["event_id"]


class LoadJobError(RuntimeError):
    """BigQuery refused a load job's rows."""


def load_rows(
    client: bigquery.Client,
    table_id: str,
    rows: Iterable[dict],
    schema: Sequence[bigquery.SchemaField] = LOGGED_INTERACTIONS_SCHEMA,
    chunk_rows: int = LOAD_CHUNK_ROWS,
) -> int:
    """Appends rows with NDJSON load jobs of up to `chunk_rows` rows; returns rows loaded.

    A load job is BigQuery's bulk path: it lands all its rows or none, the
    rows are readable as soon as it is done (streamed rows into a table just
    created may 404 or be dropped for a while), and it is free where
    streaming is billed. Callers stay idempotent by leaving out rows already
    in the table, so a rerun after a failed job loads what is missing.
    """
    loaded = 0
    iterator = iter(rows)
    while chunk := list(itertools.islice(iterator, chunk_rows)):
        loaded += _load_chunk(client, table_id, chunk, schema)
    return loaded


def _load_chunk(
    client: bigquery.Client,
    table_id: str,
    chunk: List[dict],
    schema: Sequence[bigquery.SchemaField],
) -> int:
    ndjson = "".join(json.dumps(row) + "\n" for row in chunk).encode()
    job = client.load_table_from_file(
        io.BytesIO(ndjson),
        table_id,
        job_config=bigquery.LoadJobConfig(
            source_format=bigquery.SourceFormat.NEWLINE_DELIMITED_JSON,
            schema=list(schema),
            write_disposition=bigquery.WriteDisposition.WRITE_APPEND,
        ),
    )
    try:
        job.result()
    except exceptions.GoogleAPICallError as e:
        raise LoadJobError(
            f"BigQuery load job {job.job_id} refused {len(chunk)} rows for {table_id}: "
            f"{job.errors or e}; the job loaded none of them: make them match the table's "
            "schema and load again"
        ) from e
    return len(chunk)


def insert_rows(
    client: bigquery.Client,
    table_id: str,
    rows: Iterable[dict],
    row_id: Callable[[dict], str] = _event_id,
) -> int:
    """Streams rows in chunks, with `row_id(row)` as insertId so retries deduplicate.

    Raises RuntimeError with BigQuery's per-row errors if any row is refused.
    """
    written = 0
    chunk: List[dict] = []
    for row in rows:
        chunk.append(row)
        if len(chunk) == INSERT_CHUNK_ROWS:
            written += _insert_chunk(client, table_id, chunk, row_id)
            chunk = []
    if chunk:
        written += _insert_chunk(client, table_id, chunk, row_id)
    return written


def _insert_chunk(
    client: bigquery.Client, table_id: str, chunk: List[dict], row_id: Callable[[dict], str]
) -> int:
    errors = client.insert_rows_json(table_id, chunk, row_ids=[row_id(row) for row in chunk])
    if errors:
        raise RuntimeError(f"BigQuery refused {len(errors)} rows of {table_id}; first: {errors[0]}")
    return len(chunk)


def _normalise(field: bigquery.SchemaField) -> tuple:
    kind = field.field_type.upper()
    repeated = (field.mode or "").upper() == "REPEATED"
    return (_TYPE_ALIASES.get(kind, kind), "REPEATED" if repeated else "SCALAR")
