"""Simulates a batch of logged interactions and appends the new ones to BigQuery."""

import datetime
from typing import Any, Dict, List

from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from bandit_core.bigquery import clients, tables
from custom_components.movielens_generator import logged_data
from simulation.bandit_loader import load_movielens_bandit


class Executor(base_executor.BaseExecutor):
    """Idempotent: events already in the table (same event id) are not written again."""

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        bandit = load_movielens_bandit(
            exec_properties["movielens_dir"],
            rank_k=exec_properties["rank_k"],
            num_actions=exec_properties["num_actions"],
        )
        seed = exec_properties["seed"]
        batch = logged_data.simulate_uniform_logging(bandit, exec_properties["num_events"], seed)
        client = clients.make_bigquery_client(
            clients.BigQueryEndpoints.from_settings(
                exec_properties["bigquery_project"],
                exec_properties.get("bigquery_rest_endpoint", ""),
                exec_properties.get("bigquery_grpc_endpoint", ""),
            )
        )
        table_id = tables.ensure_table(
            client, exec_properties["bigquery_dataset"], exec_properties["bigquery_table"]
        )
        prefix = logged_data.event_id_prefix(seed, bandit.num_actions, bandit.observation_dim)
        known = frozenset(tables.existing_event_ids(client, table_id, prefix))
        rows = logged_data.to_bigquery_rows(
            batch, datetime.datetime.now(datetime.timezone.utc), skip_event_ids=known
        )
        written = tables.insert_rows(client, table_id, rows)
        logging.info("Generator wrote %d new of %d events to %s", written, len(batch), table_id)

        output = artifact_utils.get_single_instance(output_dict["logged_interactions"])
        output.set_string_custom_property("table", table_id)
        output.set_string_custom_property("event_id_prefix", prefix)
        output.set_int_custom_property("rows_in_batch", len(batch))
        output.set_int_custom_property("rows_written", written)

