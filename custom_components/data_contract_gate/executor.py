"""Counts the rows that break the contract, copies them to quarantine, records the counts."""

from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from bandit_core.bigquery import clients, tables
from bandit_core.data_contract import DataContract
from custom_components.data_contract_gate import quarantine


class Executor(base_executor.BaseExecutor):
    """Thin: the work is in `quarantine`; this wires exec properties and the report artifact."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        contract = DataContract.from_parameters(exec_properties)
        source_query = exec_properties["source_query"]
        client = clients.make_bigquery_client(
            clients.BigQueryEndpoints.from_settings(
                exec_properties["bigquery_project"],
                exec_properties.get("bigquery_rest_endpoint") or "",
                exec_properties.get("bigquery_grpc_endpoint") or "",
            )
        )
        table_id = tables.ensure_table(
            client,
            exec_properties["bigquery_dataset"],
            exec_properties["quarantine_table"],
            quarantine.QUARANTINE_SCHEMA,
        )
        counts = quarantine.count_broken_rows(client, source_query, contract)
        copied = 0
        if counts.rows_quarantined:
            copied = quarantine.copy_broken_rows(
                client, table_id, source_query, contract, *self._run_names()
            )
            logging.warning("quarantined %s in %s", counts.describe(), table_id)
        report = artifact_utils.get_single_instance(output_dict["report"])
        report.set_int_custom_property("rows_read", counts.rows_read)
        report.set_int_custom_property("rows_quarantined", counts.rows_quarantined)
        report.set_int_custom_property("rows_accepted", counts.rows_accepted)
        report.set_float_custom_property("quarantined_share", counts.share)
        report.set_int_custom_property("rows_copied", copied)
        report.set_string_custom_property("quarantine_table", table_id)
        for rule, count in counts.broken.items():
            report.set_int_custom_property(f"broken_{rule}", count)
        quarantine.require_share_within(
            counts, exec_properties["max_quarantined_share"], table_id
        )

    def _run_names(self) -> tuple:
        """(pipeline name, run id) for the quarantine rows; empty when the runner gives none."""
        context = self._context
        pipeline = context.pipeline_info.id if context and context.pipeline_info else ""
        return pipeline, (context.pipeline_run_id if context else "") or ""
