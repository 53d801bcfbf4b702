"""Reads a query's result from the BigQuery emulator without Beam's BigQuery IO.

Beam's BigQuery IO cannot be pointed at an emulator (it hangs on an OAuth
prompt) and its DIRECT_READ clean-up deletes every dataset the emulator lists.
This reader materialises the query into one uniquely named scratch table,
reads it through the Storage Read API and drops only that table: it never
lists or deletes datasets.
"""

import uuid
from typing import Any, Dict, List, Tuple

from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import types as storage_types

from bandit_core.bigquery import clients

# The emulator sends up to 65,536 rows per message and caps a message at about
# 11 MB; spreading a table over its maximum of ten streams keeps each message
# small enough for the logged-interaction rows of a local run.
MAX_READ_STREAMS = 10
_EXAMPLE_TYPES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


def query_field_types(client: bigquery.Client, query: str) -> Dict[str, str]:
    """Column name -> the type name TFX's row_to_example expects."""
    result = client.query(f"SELECT * FROM ({query}) LIMIT 0").result()
    return {f.name: _EXAMPLE_TYPES.get(f.field_type, f.field_type) for f in result.schema}


def read_query_rows(
    endpoints: clients.BigQueryEndpoints, query: str, scratch_dataset: str
) -> Tuple[Dict[str, str], List[Dict[str, Any]]]:
    """Runs `query` and returns (column types, rows as dicts)."""
    client = clients.make_bigquery_client(endpoints)
    field_types = query_field_types(client, query)
    client.create_dataset(
        bigquery.Dataset(f"{endpoints.project}.{scratch_dataset}"), exists_ok=True
    )
    table_id = f"{endpoints.project}.{scratch_dataset}.examplegen_{uuid.uuid4().hex}"
    try:
        client.query(f"CREATE TABLE `{table_id}` AS {query}").result()
        rows = _read_table(endpoints, table_id)
    finally:
        client.delete_table(table_id, not_found_ok=True)
    return field_types, rows


def _read_table(endpoints: clients.BigQueryEndpoints, table_id: str) -> List[Dict[str, Any]]:
    project, dataset, table = table_id.split(".")
    read_client = clients.make_read_client(endpoints)
    session = read_client.create_read_session(
        parent=f"projects/{project}",
        read_session=storage_types.ReadSession(
            table=f"projects/{project}/datasets/{dataset}/tables/{table}",
            data_format=storage_types.DataFormat.ARROW,
        ),
        max_stream_count=MAX_READ_STREAMS,
    )
    rows: List[Dict[str, Any]] = []
    for stream in session.streams:
        arrow_table = read_client.read_rows(stream.name).to_arrow(session)
        rows.extend(arrow_table.to_pylist())
    return rows
