"""The per-arm training DAG end to end under LocalDagRunner against the real emulator."""

import json
import os
import pathlib

import numpy as np
import pytest
import tensorflow as tf
from ml_metadata.proto import metadata_store_pb2

from bandit_core import columns
from bandit_core.bigquery import clients, tables
from bandit_core.item_catalogue import CATALOGUE_DIR, ItemCatalogue
from bandit_core.policy_evaluation_file import EVALUATION_FILE
from bandit_core.saved_policy import load_saved_policy, per_arm_policy_actions
from bandit_core.user_table import USER_TABLE_DIR, UserTable
from simulation import movielens_per_arm
from simulation.movielens_data import NUM_ITEMS, default_data_dir
from tfx_pipeline import pipeline
from tfx_pipeline.config import PipelineConfig
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
NUM_CANDIDATES = 20
PER_ARM_COMPONENTS = (
    "MovieLensGenerator",
    "BigQueryExampleGen",
    "ItemsExampleGen",
    "StatisticsGen",
    "BanditSchemaGen",
    "ExampleValidator",
    "BanditTrainer",
    "PolicyEvaluator",
    "Pusher",
)


@pytest.fixture(scope="module")
def emulator(tmp_path_factory):
    with BigQueryEmulator(data_dir=tmp_path_factory.mktemp("bigquery")) as running:
        yield running


@pytest.fixture(scope="module")
def bandit():
    return movielens_per_arm.load_per_arm_bandit("", 20)


def _config(root: pathlib.Path, **sections) -> PipelineConfig:
    base = {
        "local": {"root": str(root), "beam_workers": 1},
        "movielens": {"problem": "per_arm", "num_candidates": NUM_CANDIDATES},
        "trainer": {"agent": "InteractionLinUCB"},
        "generator": {"num_events": NUM_EVENTS, "seed": 5},
        "evaluator": {"bootstrap_samples": 50, "blessing_comparison": "point_estimate"},
    }
    return PipelineConfig().replace(**base).replace(**sections).validate()


def _states(config: PipelineConfig) -> dict:
    store = run_summary.open_store(str(config.local.metadata_path))
    name = pipeline.pipeline_name(config, False)
    states = {}
    for node in PER_ARM_COMPONENTS:
        context = store.get_context_by_type_and_name("node", f"{name}.{node}")
        executions = store.get_executions_by_context(context.id) if context else []
        states[node] = [e.last_known_state for e in executions]
    return states


def _store(config: PipelineConfig):
    return run_summary.open_store(str(config.local.metadata_path))


def _per_arm_examples(examples_uri: str) -> list:
    files = tf.io.gfile.glob(os.path.join(examples_uri, "Split-*", "*.gz"))
    rows = []
    for record in tf.data.TFRecordDataset(files, compression_type="GZIP"):
        feature = tf.train.Example.FromString(record.numpy()).features.feature
        rows.append({name: feature[name] for name in columns.PER_ARM_EXAMPLE_FEATURES})
    return rows


def test_per_arm_dag_joins_item_features_and_pushes_a_policy_with_its_catalogue(
    emulator, bandit, tmp_path
):
    config = _config(tmp_path)
    local_runner.run_pipeline(config, emulator.endpoints)

    assert _states(config) == {
        node: [metadata_store_pb2.Execution.COMPLETE] for node in PER_ARM_COMPONENTS
    }
    client = clients.make_bigquery_client(emulator.endpoints)
    items_table = f"{emulator.project}.{config.bigquery.dataset}.{config.bigquery.items_table}"
    version = config.movielens.feature_version
    assert len(tables.existing_item_ids(client, items_table, version)) == NUM_ITEMS

    _, artifacts = run_summary.latest_run_artifacts(
        _store(config), pipeline.pipeline_name(config, False)
    )
    examples = next(a for a in artifacts["Examples"] if "/BigQueryExampleGen/" in a.uri)
    rows = _per_arm_examples(examples.uri)
    assert len(rows) == NUM_EVENTS
    for row in rows[:200]:
        movie = row[columns.MOVIE_ID].int64_list.value[0]
        candidates = list(row[columns.CANDIDATE_MOVIE_IDS].int64_list.value)
        assert candidates[row[columns.ACTION].int64_list.value[0]] == movie
        assert row[columns.CHOSEN_AT_SLOT].int64_list.value[0] == 1
        assert row[columns.DISTINCT_CANDIDATES].int64_list.value[0] == NUM_CANDIDATES
        np.testing.assert_allclose(
            row[columns.ARM_FEATURES].float_list.value,
            movielens_per_arm.arm_features(bandit, np.array([movie]))[0],
            rtol=1e-6,
            atol=1e-7,
        )

    summary = run_summary.summarize_latest_run(
        _store(config), pipeline.pipeline_name(config, False)
    )
    catalogue = ItemCatalogue.load(os.path.join(summary.pushed_destination, CATALOGUE_DIR))
    assert len(catalogue) == NUM_ITEMS and catalogue.feature_version == version
    # The users the training rows named, with the features they were logged with.
    known = UserTable.load(os.path.join(summary.pushed_destination, USER_TABLE_DIR))
    assert len(known) > 100 and known.user_ids.min() >= 1
    np.testing.assert_allclose(
        known.features, movielens_per_arm.global_features(bandit, known.user_ids), atol=1e-6
    )
    users = np.array([1, 2, 3])
    offered = np.tile(np.arange(1, NUM_CANDIDATES + 1), (3, 1))
    slots = per_arm_policy_actions(
        load_saved_policy(summary.pushed_destination),
        "InteractionLinUCB",
        movielens_per_arm.global_features(bandit, users),
        catalogue.features_of(offered.ravel()).reshape(3, NUM_CANDIDATES, -1),
    )
    assert slots.shape == (3,) and np.all((slots >= 0) & (slots < NUM_CANDIDATES))

    evaluation = next(a for a in artifacts["ModelEvaluation"])
    report = json.loads(
        pathlib.Path(evaluation.uri, EVALUATION_FILE).read_text()
    )
    simulator = report["simulator"]
    candidate = report["candidate"]
    assert simulator["uniform_random_value"] < candidate["true_value"] <= simulator["oracle_value"]
    assert set(candidate["estimates"]) == {"ips", "snips", "dm", "dr"}

    local_runner.run_pipeline(config, emulator.endpoints)
    _, rerun = run_summary.latest_run_artifacts(
        _store(config), pipeline.pipeline_name(config, False)
    )
    generated = rerun["mlbandits.LoggedInteractions"][-1].custom_properties
    assert generated["items_written"].int_value == 0
    assert generated["rows_written"].int_value == 0
