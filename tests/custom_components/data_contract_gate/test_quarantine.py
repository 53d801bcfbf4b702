"""The gate on a real bqemulator: counts per rule, copies with reasons, the share threshold."""

import json
import uuid

import pytest
from google.cloud import bigquery

from bandit_core import columns
from bandit_core.bigquery.clients import make_bigquery_client
from bandit_core.bigquery.tables import ensure_table
from bandit_core.data_contract import DataContract
from custom_components.bigquery_ingester.queries import build_examples_query
from custom_components.data_contract_gate import quarantine
from custom_components.data_contract_gate.component import DataContractGate, QuarantineReport
from custom_components.data_contract_gate.executor import Executor
from tfx_pipeline.local.emulator import BigQueryEmulator

CONTRACT = DataContract(observation_dim=2, num_actions=3)
GOOD_ROWS = 8


def _row(event_id: str, **overrides) -> dict:
    row = {
        "event_id": event_id,
        "event_time": "2026-11-25T08:00:00+00:00",
        "user_id": 5,
        "observation": [0.25, -0.5],
        "action": 1,
        "reward": 2.0,
        "propensity": 0.5,
        "source": "test",
    }
    return {**row, **overrides}


@pytest.fixture(scope="module")
def emulator():
    with BigQueryEmulator() as running:
        yield running


@pytest.fixture()
def logged(emulator) -> tuple:
    """(client, dataset, source query) over 8 good rows and 2 bad ones (one breaks two rules)."""
    client = make_bigquery_client(emulator.endpoints)
    dataset = f"gate_{uuid.uuid4().hex[:8]}"
    table = ensure_table(client, dataset, "logged_interactions")
    rows = [_row(f"good-{i}") for i in range(GOOD_ROWS)]
    rows += [_row("bad-user", user_id=0), _row("bad-two", reward=1e300, action=7)]
    assert client.insert_rows_json(table, rows) == []
    return client, dataset, build_examples_query(table)


def _quarantined(client: bigquery.Client, table_id: str) -> dict:
    return {row["event_id"]: dict(row) for row in client.query(f"SELECT * FROM `{table_id}`")}


def test_counts_each_rule_and_the_rows_breaking_any(logged):
    client, _, source = logged
    counts = quarantine.count_broken_rows(client, source, CONTRACT)
    assert (counts.rows_read, counts.rows_quarantined, counts.rows_accepted) == (10, 2, 8)
    assert {rule: n for rule, n in counts.broken.items() if n} == {
        columns.USER_ID: 1,
        columns.ACTION: 1,
        columns.REWARD: 1,
    }
    assert set(counts.broken) == {rule.name for rule in CONTRACT.rules}
    assert counts.share == 0.2
    assert counts.describe() == "2 of 10 rows (20.00%): user_id 1, action 1, reward 1"


def test_broken_rows_are_copied_once_with_their_rules_reasons_and_values(logged):
    client, dataset, source = logged
    table_id = ensure_table(client, dataset, "quarantine", quarantine.QUARANTINE_SCHEMA)
    for run_id, copied in (("run-1", 2), ("run-2", 0)):
        assert quarantine.copy_broken_rows(
            client, table_id, source, CONTRACT, "p-retrain", run_id
        ) == copied
    rows = _quarantined(client, table_id)
    assert set(rows) == {"bad-user", "bad-two"}
    assert rows["bad-two"]["rules"] == [columns.ACTION, columns.REWARD]
    assert rows["bad-two"]["reason"] == (
        "action: action must be an integer in [0, 2]; reward: reward must be a number in "
        "[-5.0, 10.0]"
    )
    assert json.loads(rows["bad-two"]["row_json"])[columns.REWARD] == 1e300
    assert json.loads(rows["bad-user"]["row_json"])[columns.USER_ID] == 0
    assert {(r["pipeline"], r["run_id"]) for r in rows.values()} == {("p-retrain", "run-1")}
    assert all(r["quarantined_time"] is not None for r in rows.values())


@pytest.mark.parametrize(
    "max_share, stops", [(0.2, False), (0.19, True), (0.0, True), (1.0, False)]
)
def test_the_run_stops_only_above_the_configured_share(max_share, stops):
    counts = quarantine.QuarantineCounts(10, 2, {columns.REWARD: 2})
    if not stops:
        quarantine.require_share_within(counts, max_share, "p.d.quarantine")
        return
    with pytest.raises(quarantine.QuarantineLimitExceeded) as raised:
        quarantine.require_share_within(counts, max_share, "p.d.quarantine")
    assert str(raised.value).startswith(
        f"2 of 10 rows (20.00%): reward 2 break the data contract, more than "
        f"ingestion.max_quarantined_share={max_share:g} allows; they are in p.d.quarantine"
    )


def test_nothing_read_is_nothing_quarantined():
    assert quarantine.QuarantineCounts(0, 0, {}).share == 0.0


def _run_executor(emulator, dataset: str, source: str, max_share: float) -> QuarantineReport:
    gate = DataContractGate(source, CONTRACT, max_share, emulator.endpoints, dataset, "quarantine")
    report = QuarantineReport()
    report.uri = "unused"
    exec_properties = {
        name: value for name, value in gate.exec_properties.items() if value is not None
    }
    Executor().Do({}, {"report": [report]}, exec_properties)
    return report


def test_the_executor_records_counts_as_properties_and_copies_the_rows(emulator, logged):
    client, dataset, source = logged
    report = _run_executor(emulator, dataset, source, max_share=0.2)
    properties = {
        name: report.get_custom_property(name)
        for name in ("rows_read", "rows_quarantined", "rows_accepted", "rows_copied")
    }
    assert properties == {
        "rows_read": 10, "rows_quarantined": 2, "rows_accepted": 8, "rows_copied": 2
    }
    assert report.get_custom_property("quarantined_share") == pytest.approx(0.2)
    assert report.get_custom_property("broken_reward") == 1
    assert report.get_custom_property("broken_propensity") == 0
    table_id = report.get_custom_property("quarantine_table")
    assert table_id == f"{client.project}.{dataset}.quarantine"
    assert set(_quarantined(client, table_id)) == {"bad-user", "bad-two"}


def test_the_executor_copies_before_it_stops_the_run(emulator, logged):
    client, dataset, source = logged
    with pytest.raises(quarantine.QuarantineLimitExceeded, match="max_quarantined_share=0.1 "):
        _run_executor(emulator, dataset, source, max_share=0.1)
    assert set(_quarantined(client, f"{client.project}.{dataset}.quarantine")) == {
        "bad-user",
        "bad-two",
    }
