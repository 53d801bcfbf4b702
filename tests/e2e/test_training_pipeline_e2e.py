"""The training DAG end to end under LocalDagRunner against the real emulator."""

import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from google.cloud import bigquery
from ml_metadata.proto import metadata_store_pb2
from tfx import v1 as tfx

from bandit_core import columns
from bandit_core.bigquery import clients, tables
from bandit_core.saved_policy import load_saved_policy, policy_actions
from custom_components.data_contract_gate.quarantine import QuarantineLimitExceeded
from custom_components.movielens_generator import logged_data
from simulation.bandit_loader import load_movielens_bandit
from simulation.movielens_data import default_data_dir
from tfx_pipeline import pipeline
from tfx_pipeline.config import LocalRunConfig, PipelineConfig
from tfx_pipeline.local import runner as local_runner
from tfx_pipeline.local.emulator import BigQueryEmulator
from tfx_pipeline.reports import run_summary

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not (default_data_dir() / "u.data").exists(),
        reason="MovieLens 100K not found; set MLBANDITS_MOVIELENS_DIR",
    ),
]

NUM_EVENTS = 3000
TRAINING_COMPONENTS = {
    "MovieLensGenerator",
    "DataContractGate",
    "BigQueryExampleGen",
    "StatisticsGen",
    "BanditSchemaGen",
    "ExampleValidator",
    "BanditTrainer",
    "latest_blessed_model_resolver",
    "PolicyEvaluator",
    "Pusher",
}


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with BigQueryEmulator(data_dir=tmp_path_factory.mktemp("bigquery")) as running:
        yield running


def _config(root: pathlib.Path, **sections) -> PipelineConfig:
    base = {
        "local": {"root": str(root), "beam_workers": 1},
        "generator": {"num_events": NUM_EVENTS, "seed": 7},
    }
    return PipelineConfig().replace(**base).replace(**sections).validate()


def _executions_by_node(config: PipelineConfig, retraining: bool = False) -> dict:
    store = run_summary.open_store(str(config.local.metadata_path))
    name = pipeline.pipeline_name(config, retraining)
    result = {}
    for node in TRAINING_COMPONENTS - ({"MovieLensGenerator"} if retraining else set()):
        context = store.get_context_by_type_and_name("node", f"{name}.{node}")
        executions = store.get_executions_by_context(context.id) if context else []
        result[node] = [e.last_known_state for e in executions]
    return result


def _examples(examples_uri: str) -> list:
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*.gz"))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append(
            (
                feature[columns.USER_ID].int64_list.value[0],
                feature[columns.ACTION].int64_list.value[0],
                np.float32(feature[columns.REWARD].float_list.value[0]),
                np.float32(feature[columns.PROPENSITY].float_list.value[0]),
                tuple(np.float32(feature[columns.OBSERVATION].float_list.value)),
            )
        )
    return sorted(rows)


def test_training_dag_runs_every_component_and_pushes_a_working_policy(emulator, tmp_path):
    # The default Beam workers, which the other DAG tests pin to 1 to keep the suite's time.
    config = _config(tmp_path, local={"beam_workers": LocalRunConfig.beam_workers})
    client = clients.make_bigquery_client(emulator.endpoints)
    bystander = tables.ensure_table(client, "bystander", "keep_me")
    client.insert_rows_json(bystander, [_row("bystander-1", propensity=0.5)])

    local_runner.run_pipeline(config, emulator.endpoints)

    states = _executions_by_node(config)
    assert states == {node: [metadata_store_pb2.Execution.COMPLETE] for node in TRAINING_COMPONENTS}

    summary = run_summary.summarize_latest_run(
        run_summary.open_store(str(config.local.metadata_path)), pipeline.pipeline_name(config, False)
    )
    assert summary.rows_generated == NUM_EVENTS
    assert sum(summary.rows_per_split.values()) == NUM_EVENTS
    assert summary.anomalies == []
    bandit = load_movielens_bandit("", config.movielens.rank_k, config.movielens.num_actions)
    actions = policy_actions(load_saved_policy(summary.pushed_destination), bandit.observations)
    assert actions.shape == (bandit.num_users,)
    assert actions.min() >= 0 and actions.max() < config.movielens.num_actions

    datasets = {d.dataset_id for d in client.list_datasets()}
    assert {"bystander", config.bigquery.dataset} <= datasets
    assert _count(client, bystander) == 1
    assert _count(client, config.bigquery.table_ref) == NUM_EVENTS
    assert list(client.list_tables(f"{client.project}.{config.bigquery.scratch_dataset}")) == []


def test_examples_hold_exactly_the_generated_values(emulator, tmp_path):
    config = _config(tmp_path, bigquery={"table": "round_trip"}, generator={"seed": 11})
    local_runner.run_pipeline(config, emulator.endpoints)

    _, artifacts = run_summary.latest_run_artifacts(
        run_summary.open_store(str(config.local.metadata_path)), pipeline.pipeline_name(config, False)
    )
    bandit = load_movielens_bandit("", config.movielens.rank_k, config.movielens.num_actions)
    batch = logged_data.simulate_uniform_logging(bandit, NUM_EVENTS, seed=11)
    expected = sorted(
        (
            int(batch.user_ids[i]),
            int(batch.actions[i]),
            np.float32(batch.rewards[i]),
            np.float32(batch.propensities[i]),
            tuple(batch.observations[i].astype(np.float32)),
        )
        for i in range(len(batch))
    )
    assert _examples(artifacts["Examples"][-1].uri) == expected


def _run_generator_only(config: PipelineConfig, endpoints) -> None:
    """The DAG's own MovieLensGenerator, run by LocalDagRunner without the steps after it."""
    local = config.local
    dag = pipeline.create_pipeline(
        config,
        pipeline_root=str(local.pipeline_root),
        push_base_directory=str(local.serving_model_dir),
        endpoints=endpoints,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            str(local.metadata_path)
        ),
    )
    (generator,) = [c for c in dag.components if c.id == "MovieLensGenerator"]
    for step in list(generator.downstream_nodes):
        generator.remove_downstream_node(step)
    tfx.orchestration.LocalDagRunner().run(
        tfx.dsl.Pipeline(
            pipeline_name=dag.pipeline_name,
            pipeline_root=str(local.pipeline_root),
            components=[generator],
            metadata_connection_config=dag.metadata_connection_config,
        )
    )


def test_rerunning_the_generator_with_the_same_seed_adds_no_duplicates(emulator, tmp_path):
    config = _config(tmp_path, bigquery={"table": "rerun"}, generator={"num_events": 200})
    _run_generator_only(config, emulator.endpoints)
    _run_generator_only(config, emulator.endpoints)
    client = clients.make_bigquery_client(emulator.endpoints)
    assert _count(client, config.bigquery.table_ref) == 200
    _run_generator_only(config.replace(generator={"seed": 8}), emulator.endpoints)
    assert _count(client, config.bigquery.table_ref) == 400


def test_bad_rows_from_any_writer_are_quarantined_and_training_and_retraining_go_on(
    emulator, tmp_path
):
    """Rows written straight into the tables, past the server: the logged-interactions
    table for training, the predictions and rewards tables for retraining."""
    config = _config(
        tmp_path,
        bigquery={
            "table": "with_bad_rows",
            "predictions_table": "bad_predictions",
            "rewards_table": "bad_rewards",
            "quarantine_table": "bad_quarantine",
        },
        generator={"num_events": 500},
    )
    client = clients.make_bigquery_client(emulator.endpoints)
    table_id = tables.ensure_table(client, config.bigquery.dataset, config.bigquery.table)
    client.insert_rows_json(
        table_id,
        [_row("bad-propensity", propensity=0.0), _row("bad-action", action=57, propensity=0.05)],
    )

    # 2 bad rows of 502 are 0.4%: more than a 0.2% limit, so the gate stops the run.
    strict = config.replace(
        ingestion={"max_quarantined_share": 0.002}, local={"root": str(tmp_path / "strict")}
    )
    with pytest.raises(QuarantineLimitExceeded) as stopped:
        local_runner.run_pipeline(strict, emulator.endpoints)
    assert str(stopped.value).startswith(
        "2 of 502 rows (0.40%): action 1, propensity 1 break the data contract"
    )
    states = _executions_by_node(strict)
    assert metadata_store_pb2.Execution.COMPLETE not in states["DataContractGate"]
    assert states["BigQueryExampleGen"] == [] and states["Pusher"] == []

    # Under the default 1% the run trains on the other 500 and reports the two.
    local_runner.run_pipeline(config, emulator.endpoints)
    assert _executions_by_node(config) == {
        node: [metadata_store_pb2.Execution.COMPLETE] for node in TRAINING_COMPONENTS
    }
    summary = _summary(config, retraining=False)
    assert summary.quarantine == run_summary.QuarantineSummary(
        rows_read=502,
        rows_quarantined=2,
        broken={"action": 1, "propensity": 1},
        table=f"{client.project}.{config.bigquery.dataset}.bad_quarantine",
    )
    assert sum(summary.rows_per_split.values()) == 500 and summary.anomalies == []
    assert _quarantined(client, summary.quarantine.table) == {
        "bad-action": ["action"],
        "bad-propensity": ["propensity"],
    }

    # Serving logs with a bad user id, a reward of 1e300 and one below the range.
    bandit = load_movielens_bandit("", config.movielens.rank_k, config.movielens.num_actions)
    batch = logged_data.simulate_uniform_logging(bandit, 500, seed=3)
    predictions = [
        _prediction(f"served-{i}", int(batch.user_ids[i]), batch.observations[i], batch.actions[i])
        for i in range(len(batch))
    ]
    rewards = [_reward(f"served-{i}", float(batch.rewards[i])) for i in range(len(batch))]
    predictions += [
        _prediction("bad-user", 0, batch.observations[0], 1),
        _prediction("huge-reward", 5, batch.observations[1], 2),
        _prediction("low-reward", 6, batch.observations[2], 3),
    ]
    rewards += [_reward("bad-user", 1.0), _reward("huge-reward", 1e300), _reward("low-reward", -7)]
    for table, schema, rows in (
        (config.bigquery.predictions_table, tables.PREDICTIONS_SCHEMA, predictions),
        (config.bigquery.rewards_table, tables.REWARDS_SCHEMA, rewards),
    ):
        table_id = tables.ensure_table(client, config.bigquery.dataset, table, schema)
        assert client.insert_rows_json(table_id, rows) == []

    local_runner.run_pipeline(config, emulator.endpoints, retraining=True)
    assert _executions_by_node(config, retraining=True) == {
        node: [metadata_store_pb2.Execution.COMPLETE]
        for node in TRAINING_COMPONENTS - {"MovieLensGenerator"}
    }
    summary = _summary(config, retraining=True)
    assert (summary.quarantine.rows_read, summary.quarantine.rows_quarantined) == (503, 3)
    assert summary.quarantine.broken == {"reward": 2, "user_id": 1}
    assert sum(summary.rows_per_split.values()) == 500 and summary.anomalies == []
    quarantined = _quarantined(client, summary.quarantine.table)
    assert {event: quarantined[event] for event in ("bad-user", "huge-reward", "low-reward")} == {
        "bad-user": ["user_id"],
        "huge-reward": ["reward"],
        "low-reward": ["reward"],
    }


def _summary(config: PipelineConfig, retraining: bool) -> run_summary.RunSummary:
    return run_summary.summarize_latest_run(
        run_summary.open_store(str(config.local.metadata_path)),
        pipeline.pipeline_name(config, retraining),
    )


def _quarantined(client: bigquery.Client, table_id: str) -> dict:
    """event id -> the rules it broke, with a reason naming each."""
    rows = list(client.query(f"SELECT event_id, rules, reason FROM `{table_id}`").result())
    for row in rows:
        assert all(f"{rule}: " in row["reason"] for rule in row["rules"]), row
    return {row["event_id"]: list(row["rules"]) for row in rows}


def _prediction(event_id: str, user_id: int, observation: np.ndarray, action: int) -> dict:
    return {
        "event_id": event_id,
        "event_time": "2026-11-26T00:00:00+00:00",
        "user_id": user_id,
        "observation": observation.tolist(),
        "action": int(action),
        "propensity": 0.05,
        "model_version": "1",
        "policy_id": "test",
    }


def _reward(event_id: str, reward: float) -> dict:
    return {"event_id": event_id, "reward_time": "2026-11-26T00:01:00+00:00", "reward": reward}


def _row(event_id: str, action: int = 3, propensity: float = 0.05) -> dict:
    return {
        "event_id": event_id,
        "event_time": "2026-11-25T00:00:00+00:00",
        "user_id": 1,
        "observation": [0.1] * 20,
        "action": action,
        "reward": 3.0,
        "propensity": propensity,
        "policy_id": "test",
        "source": "test",
    }


def _count(client: bigquery.Client, table_id: str) -> int:
    return next(iter(client.query(f"SELECT COUNT(*) AS n FROM `{table_id}`").result()))["n"]
