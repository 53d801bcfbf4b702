"""Counts the rows that break the data contract and copies them to the quarantine table.

TFX-free: a BigQuery client and the source query in, counts out, so it is
tested against the emulator alone. Every condition is a rule's `sql` from
`bandit_core.data_contract`, the same that ExampleGen's query excludes by.
"""

import dataclasses
import logging
from typing import Callable, Dict

from google.cloud import bigquery

from bandit_core.data_contract import DataContract, Rule

_LOG = logging.getLogger(__name__)
_COUNT_ATTEMPTS = 2

# One row per quarantined event: which rules it broke, why, and the row as read.
QUARANTINE_SCHEMA = (
    bigquery.SchemaField("event_id", "STRING"),
    bigquery.SchemaField("rules", "STRING", mode="REPEATED"),
    bigquery.SchemaField("reason", "STRING"),
    bigquery.SchemaField("row_json", "STRING"),
    bigquery.SchemaField("pipeline", "STRING"),
    bigquery.SchemaField("run_id", "STRING"),
    bigquery.SchemaField("quarantined_time", "TIMESTAMP", mode="REQUIRED"),
)


class QuarantineLimitExceeded(RuntimeError):
    """More of the rows read break the data contract than the configured share allows."""


@dataclasses.dataclass(frozen=True)
class QuarantineCounts:
    """How many rows of the source query were read and how many break the contract.

    Attributes:
      rows_read: rows of the source query.
      rows_quarantined: rows breaking at least one rule.
      broken: rule name -> rows breaking that rule (a row may break several).
    """

    rows_read: int
    rows_quarantined: int
    broken: Dict[str, int]

    @property
    def rows_accepted(self) -> int:
        return self.rows_read - self.rows_quarantined

    @property
    def share(self) -> float:
        """The quarantined share of the rows read; 0 when none were read."""
        return self.rows_quarantined / self.rows_read if self.rows_read else 0.0

    def describe(self) -> str:
        """`2 of 503 rows (0.40%): action 1, reward 1`, naming only the rules broken."""
        rules = ", ".join(f"{name} {count}" for name, count in self.broken.items() if count)
        return (
            f"{self.rows_quarantined} of {self.rows_read} rows ({self.share:.2%})"
            + (f": {rules}" if rules else "")
        )


def count_broken_rows(
    client: bigquery.Client, source_query: str, contract: DataContract
) -> QuarantineCounts:
    """One pass over the source query counting the rows that break each rule.

    The count is asked again, once, when the answer lacks its columns: in a soak
    the emulator once answered this query, right after it restarted, with a row
    of other fields. A second wrong answer stops the run naming what came back.
    """
    per_rule = ", ".join(
        f"COUNTIF({rule.sql}) AS {_count_column(rule)}" for rule in contract.rules
    )
    query = (
        f"SELECT COUNT(*) AS rows_read, COUNTIF({contract.any_broken_sql()}) "
        f"AS rows_quarantined, {per_rule} FROM ({source_query}) AS s"
    )
    wanted = {"rows_read", "rows_quarantined", *map(_count_column, contract.rules)}
    for attempt in range(_COUNT_ATTEMPTS):
        rows = list(
            client.query(query, job_config=bigquery.QueryJobConfig(use_query_cache=False)).result()
        )
        got = set(rows[0].keys()) if len(rows) == 1 else set()
        if wanted <= got:
            break
        _LOG.warning(
            "the quarantine count came back as %d rows with columns %s; asking again",
            len(rows),
            sorted(got),
        )
    else:
        raise RuntimeError(
            f"BigQuery answered the quarantine count {_COUNT_ATTEMPTS} times without its "
            f"columns (last: {sorted(got)}); rerun the DAG, and if it persists restart BigQuery "
            "(locally: the emulator)"
        )
    row = rows[0]
    return QuarantineCounts(
        rows_read=row["rows_read"],
        rows_quarantined=row["rows_quarantined"],
        broken={rule.name: row[_count_column(rule)] for rule in contract.rules},
    )


def copy_broken_rows(
    client: bigquery.Client,
    quarantine_table_id: str,
    source_query: str,
    contract: DataContract,
    pipeline: str,
    run_id: str,
) -> int:
    """Inserts the source rows that break the contract into the quarantine table.

    Each copy holds the event id, the rules broken, their reasons in words and
    the whole row as JSON. An event the table already holds (quarantined by
    an earlier run over the same window) is not copied again. Returns the
    rows copied.
    """
    rules = _broken_list(contract, lambda rule: rule.name)
    reasons = _broken_list(contract, lambda rule: f"{rule.name}: {rule.reason}")
    job = client.query(
        f"INSERT INTO `{quarantine_table_id}` "
        "(event_id, rules, reason, row_json, pipeline, run_id, quarantined_time) "
        f"SELECT s.event_id, {rules}, ARRAY_TO_STRING({reasons}, '; '), TO_JSON_STRING(s), "
        "@pipeline, @run_id, CURRENT_TIMESTAMP() "
        f"FROM ({source_query}) AS s WHERE ({contract.any_broken_sql()}) "
        f"AND NOT EXISTS (SELECT 1 FROM `{quarantine_table_id}` AS q "
        "WHERE q.event_id = s.event_id)",
        job_config=bigquery.QueryJobConfig(
            query_parameters=[
                bigquery.ScalarQueryParameter("pipeline", "STRING", pipeline),
                bigquery.ScalarQueryParameter("run_id", "STRING", run_id),
            ]
        ),
    )
    job.result()
    return job.num_dml_affected_rows or 0


def require_share_within(counts: QuarantineCounts, max_share: float, table_id: str) -> None:
    """Raises QuarantineLimitExceeded when the quarantined share exceeds `max_share`."""
    if counts.share > max_share:
        raise QuarantineLimitExceeded(
            f"{counts.describe()} break the data contract, more than "
            f"ingestion.max_quarantined_share={max_share:g} allows; they are in {table_id} with "
            "their reasons. Fix what writes them, or raise the setting if training on the rest "
            "is acceptable."
        )


def _count_column(rule: Rule) -> str:
    return f"broken_{rule.name}"


def _broken_list(contract: DataContract, text: Callable[[Rule], str]) -> str:
    """SQL: the array of `text(rule)` for the rules the row breaks, in rule order."""
    items = ", ".join(
        f"IF({rule.sql}, {_string_literal(text(rule))}, NULL)" for rule in contract.rules
    )
    return (
        f"ARRAY(SELECT x FROM UNNEST([{items}]) AS x WITH OFFSET AS o "
        "WHERE x IS NOT NULL ORDER BY o)"
    )


def _string_literal(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"
