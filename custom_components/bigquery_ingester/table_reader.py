"""Reads a query's result from the BigQuery emulator as Arrow, without Beam's BigQuery IO.

Beam's BigQuery IO cannot be pointed at an emulator (it hangs on an OAuth
prompt) and its DIRECT_READ clean-up deletes every dataset the emulator lists.
This reader materialises the query into one uniquely named scratch table with
a row number, reads it through the Storage Read API in row ranges, and drops
only that table: it never lists or deletes datasets.

The emulator puts up to 65,536 rows in one Storage Read message and refuses to
send a message over 11,534,336 bytes, so one session over a large table fails
(`429 ... Sent message larger than max`). Each session here covers a row range
sized from a sample of the rows to a fraction of that cap, and a range the
server still refuses is read in halves, so any row count can be read.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, Dict, List, Tuple

import pyarrow as pa
from google.api_core import exceptions
from google.cloud import bigquery
from google.cloud.bigquery_storage_v1 import BigQueryReadClient
from google.cloud.bigquery_storage_v1 import types as storage_types

from bandit_core.bigquery import clients

ROW_NUMBER_COLUMN = "_mlbandits_row"
# A third of the emulator's message cap: rows longer than the sample's
# average still fit, and a range that does not is split.
RANGE_BYTES = 11_534_336 // 3
SAMPLE_ROWS = 1_000
_EXAMPLE_TYPES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN"}


class RowTooLargeError(RuntimeError):
    """One row is larger than the emulator will send in a Storage Read message."""


@dataclasses.dataclass(frozen=True)
class RowRange:
    """Rows `first`..`last` (1-based, inclusive) of a scratch table."""

    first: int
    last: int

    def halves(self) -> Tuple["RowRange", "RowRange"]:
        middle = (self.first + self.last) // 2
        return RowRange(self.first, middle), RowRange(middle + 1, self.last)


@dataclasses.dataclass(frozen=True)
class ScratchTable:
    """A query's result materialised with a row number, and the query's own columns."""

    table_id: str
    num_rows: int
    columns: Tuple[str, ...]
    field_types: Dict[str, str]

    @property
    def storage_path(self) -> str:
        project, dataset, table = self.table_id.split(".")
        return f"projects/{project}/datasets/{dataset}/tables/{table}"


def materialise(client: bigquery.Client, query: str, scratch_dataset: str) -> ScratchTable:
    """CREATE TABLE AS the query with a row number (the emulator cannot query into a table)."""
    client.create_dataset(bigquery.Dataset(f"{client.project}.{scratch_dataset}"), exists_ok=True)
    table_id = f"{client.project}.{scratch_dataset}.examplegen_{uuid.uuid4().hex}"
    client.query(
        f"CREATE TABLE `{table_id}` AS SELECT q.*, ROW_NUMBER() OVER () AS {ROW_NUMBER_COLUMN} "
        f"FROM ({query}) AS q"
    ).result()
    table = client.get_table(table_id)
    fields = [f for f in table.schema if f.name != ROW_NUMBER_COLUMN]
    return ScratchTable(
        table_id=table_id,
        num_rows=table.num_rows or 0,
        columns=tuple(f.name for f in fields),
        field_types={f.name: _EXAMPLE_TYPES.get(f.field_type, f.field_type) for f in fields},
    )


def read_range(
    read_client: BigQueryReadClient, table: ScratchTable, rows: RowRange
) -> pa.Table:
    """The query columns of `rows`, read in halves where the server refuses the message size."""
    try:
        return _read_session(read_client, table, rows)
    except exceptions.ResourceExhausted as refused:
        if rows.first == rows.last:
            raise RowTooLargeError(
                f"row {rows.first} of {table.table_id} is larger than the emulator sends in one "
                f"Storage Read message ({refused.message}); select fewer or shorter columns"
            ) from refused
        return pa.concat_tables([read_range(read_client, table, half) for half in rows.halves()])


def _read_session(
    read_client: BigQueryReadClient, table: ScratchTable, rows: RowRange
) -> pa.Table:
    project = table.table_id.split(".")[0]
    session = read_client.create_read_session(
        parent=f"projects/{project}",
        read_session=storage_types.ReadSession(
            table=table.storage_path,
            data_format=storage_types.DataFormat.ARROW,
            read_options=storage_types.ReadSession.TableReadOptions(
                selected_fields=list(table.columns),
                row_restriction=f"{ROW_NUMBER_COLUMN} BETWEEN {rows.first} AND {rows.last}",
            ),
        ),
        max_stream_count=1,
    )
    return pa.concat_tables(
        [read_client.read_rows(stream.name).to_arrow(session) for stream in session.streams]
    )


def plan_ranges(read_client: BigQueryReadClient, table: ScratchTable) -> List[RowRange]:
    """Row ranges covering the table, each about RANGE_BYTES of Arrow data."""
    if table.num_rows == 0:
        return []
    sample = read_range(read_client, table, RowRange(1, min(SAMPLE_ROWS, table.num_rows)))
    bytes_per_row = max(sample.nbytes / max(sample.num_rows, 1), 1.0)
    step = max(int(RANGE_BYTES // bytes_per_row), 1)
    return [
        RowRange(first, min(first + step - 1, table.num_rows))
        for first in range(1, table.num_rows + 1, step)
    ]


def read_query_rows(
    endpoints: clients.BigQueryEndpoints, query: str, scratch_dataset: str
) -> Tuple[Dict[str, str], List[Dict[str, Any]]]:
    """Runs `query`: (column -> type name TFX's row_to_example expects, rows as dicts)."""
    client = clients.make_bigquery_client(endpoints)
    table = materialise(client, query, scratch_dataset)
    rows: List[Dict[str, Any]] = []
    try:
        with clients.closing_read_client(endpoints) as read_client:
            for row_range in plan_ranges(read_client, table):
                rows.extend(read_range(read_client, table, row_range).to_pylist())
    finally:
        client.delete_table(table.table_id, not_found_ok=True)
    return table.field_types, rows
