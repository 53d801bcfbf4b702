"""Simulates a batch of logged interactions and loads the new ones into BigQuery."""

import datetime
from typing import Any, Callable, Dict, Iterable, List, Tuple

from absl import logging
from google.cloud import bigquery
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from bandit_core.bigquery import clients, tables
from bandit_core.data_contract import DataContract
from bandit_core.policy_metadata import CLASSIC, PER_ARM
from custom_components.movielens_generator import logged_data, per_arm_logged_data
from simulation import movielens_data, movielens_per_arm
from simulation.bandit_loader import load_movielens_bandit


class Executor(base_executor.BaseExecutor):
    """Idempotent: events (and item features) already in their table are not written again.

    Rows go in with load jobs, BigQuery's bulk path (on the emulator too):
    each lands whole or not at all and is readable at once, where rows
    streamed into a table just created may 404 or be dropped for a while.
    Rows are checked against the data contract as they are written: rewards
    beyond its range are clipped and counted; any other broken rule raises
    ContractViolation before the row is sent.
    """

    def Do(
        self,
        input_dict: Dict[str, List[types.Artifact]],
        output_dict: Dict[str, List[types.Artifact]],
        exec_properties: Dict[str, Any],
    ) -> None:
        problem = exec_properties.get("problem") or CLASSIC
        if problem not in (CLASSIC, PER_ARM):
            raise ValueError(f"problem={problem!r} is not {CLASSIC} or {PER_ARM}")
        client = clients.make_bigquery_client(
            clients.BigQueryEndpoints.from_settings(
                exec_properties["bigquery_project"],
                exec_properties.get("bigquery_rest_endpoint", ""),
                exec_properties.get("bigquery_grpc_endpoint", ""),
            )
        )
        output = artifact_utils.get_single_instance(output_dict["logged_interactions"])
        table_id = tables.ensure_table(
            client, exec_properties["bigquery_dataset"], exec_properties["bigquery_table"]
        )
        now = datetime.datetime.now(datetime.timezone.utc)

        def known_events(prefix: str) -> frozenset:
            return frozenset(tables.existing_event_ids(client, table_id, prefix))

        if problem == PER_ARM:
            prefix, batch_size, clipped, rows = _per_arm_rows(
                client, exec_properties, output, now, known_events
            )
        else:
            prefix, batch_size, clipped, rows = _classic_rows(exec_properties, now, known_events)
        written = tables.load_rows(client, table_id, rows)
        logging.info("Generator wrote %d new of %d events to %s", written, batch_size, table_id)
        if clipped:
            logging.warning(
                "Generator clipped %d of %d rewards to the data contract's range",
                clipped,
                batch_size,
            )
        output.set_string_custom_property("problem", problem)
        output.set_string_custom_property("table", table_id)
        output.set_string_custom_property("event_id_prefix", prefix)
        output.set_int_custom_property("rows_in_batch", batch_size)
        output.set_int_custom_property("rows_written", written)
        output.set_int_custom_property("rewards_clipped", clipped)


def _contract(exec_properties: Dict[str, Any], **problem: int) -> DataContract:
    """The data contract of the simulated problem, with the configured bounds."""
    return DataContract.from_parameters({**exec_properties, "arm_dim": 0, **problem})


def _classic_rows(
    exec_properties: Dict[str, Any],
    now: datetime.datetime,
    known_events: Callable[[str], frozenset],
) -> Tuple[str, int, int, Iterable[dict]]:
    """(event id prefix, events simulated, rewards clipped, checked rows of the new events)."""
    bandit = load_movielens_bandit(
        exec_properties["movielens_dir"],
        rank_k=exec_properties["rank_k"],
        num_actions=exec_properties["num_actions"],
    )
    seed = exec_properties["seed"]
    contract = _contract(
        exec_properties, observation_dim=bandit.observation_dim, num_actions=bandit.num_actions
    )
    batch, clipped = logged_data.clip_rewards(
        logged_data.simulate_uniform_logging(bandit, exec_properties["num_events"], seed),
        contract.reward_min,
        contract.reward_max,
    )
    prefix = logged_data.event_id_prefix(seed, bandit.num_actions, bandit.observation_dim)
    rows = logged_data.to_bigquery_rows(batch, now, known_events(prefix))
    return prefix, len(batch), clipped, contract.checked(rows)


def _per_arm_rows(
    client: bigquery.Client,
    exec_properties: Dict[str, Any],
    output: types.Artifact,
    now: datetime.datetime,
    known_events: Callable[[str], frozenset],
) -> Tuple[str, int, int, Iterable[dict]]:
    """Writes the missing item features first, so every event's movie can be joined.

    Returns (event id prefix, events simulated, rewards clipped, checked rows
    of the new events).
    """
    rank_k = exec_properties["rank_k"]
    movie_metadata = bool(exec_properties["movie_metadata"])
    bandit = movielens_per_arm.load_per_arm_bandit(
        exec_properties["movielens_dir"],
        rank_k,
        user_demographics=bool(exec_properties["user_demographics"]),
        movie_metadata=movie_metadata,
    )
    version = movielens_per_arm.item_feature_version(rank_k, movie_metadata)
    items_id = tables.ensure_table(
        client,
        exec_properties["bigquery_dataset"],
        exec_properties["bigquery_items_table"],
        tables.ITEMS_SCHEMA,
    )
    known_items = frozenset(tables.existing_item_ids(client, items_id, version))
    movielens_dir = movielens_data.find_movielens(exec_properties["movielens_dir"])
    items = movielens_data.load_items(movielens_dir)
    items_written = tables.load_rows(
        client,
        items_id,
        per_arm_logged_data.item_rows(bandit, items, version, known_items),
        tables.ITEMS_SCHEMA,
    )
    logging.info(
        "Generator wrote %d new movies of version %s to %s", items_written, version, items_id
    )
    output.set_string_custom_property("items_table", items_id)
    output.set_string_custom_property("feature_version", version)
    output.set_int_custom_property("items_written", items_written)

    num_events, num_candidates, seed = (
        exec_properties["num_events"],
        exec_properties["num_candidates"],
        exec_properties["seed"],
    )
    contract = _contract(
        exec_properties,
        observation_dim=bandit.global_dim,
        num_actions=num_candidates,
        arm_dim=bandit.arm_dim,
    )
    batch, clipped = logged_data.clip_rewards(
        per_arm_logged_data.simulate_uniform_per_arm_logging(
            bandit, num_events, num_candidates, exec_properties["noise_sd"], seed
        ),
        contract.reward_min,
        contract.reward_max,
    )
    prefix = per_arm_logged_data.per_arm_event_id_prefix(
        bandit, num_events, num_candidates, exec_properties["noise_sd"], seed
    )
    rows = per_arm_logged_data.to_per_arm_bigquery_rows(batch, now, known_events(prefix))
    return prefix, len(batch), clipped, contract.checked(rows)
