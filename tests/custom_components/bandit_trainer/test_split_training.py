"""The trainer's Beam path: the same policy as the in-memory path, from a split on disk.

Splits are written as ExampleGen writes them (gzipped TFRecords in several
files). The Beam pass runs on Beam's DirectRunner; one test runs the executor
with the DirectRunner's multi-processing mode, where the split's batches are
summed by worker processes and only the sums reach the executor.
"""

import dataclasses
import json
import os

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf
from tf_agents.trajectories import time_step as ts
from tfx.dsl.components.base import base_beam_executor
from tfx.utils import path_utils

from bandit_core import agent_names, logged_examples
from bandit_core.saved_policy import load_saved_policy, policy_actions
from custom_components.bandit_trainer import (
    executor,
    per_arm_training,
    split_stream,
    split_training,
    training,
)
from custom_components.bandit_trainer.settings import TrainerSettings
from tests.custom_components.bandit_trainer import logged_splits

D, K = 6, 5
DG, DA, C = 3, 2, 4
TINY_NEURAL = dict(hidden_layers="16", encoding_dim=4, batch_size=100, learning_rate=0.02)


def _logged(n: int, seed: int = 0):
    """Uniformly logged rows of a linear bandit; also the true per-arm weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, D)).astype(np.float32)
    a = rng.integers(0, K, size=n)
    theta = rng.normal(size=(K, D))
    r = (np.einsum("nd,nd->n", x, theta[a]) + rng.normal(scale=0.3, size=n)).astype(np.float32)
    return x, a, r, theta


def _classic_split(root, x, a, r, files: int = 3) -> str:
    split_dir = os.path.join(str(root), "examples", "Split-train")
    logged_splits.write_split(split_dir, logged_splits.classic_rows(x, a, r, K), files)
    return split_dir


def _per_arm_logged(n: int, seed: int = 0):
    """Users [n, DG], served movies' features [n, DA] and ids [n], bilinear rewards [n]."""
    rng = np.random.default_rng(seed)
    movie_features = rng.normal(0.5, 1.0, size=(30, DA)).astype(np.float32)
    movie_ids = rng.integers(0, 30, size=n)
    users = rng.normal(0.5, 1.0, size=(n, DG)).astype(np.float32)
    served = movie_features[movie_ids]
    weights = rng.normal(size=(DG, DA))
    rewards = np.einsum("ni,ij,nj->n", users, weights, served) + rng.normal(0, 0.1, size=n)
    return users, served, movie_ids * 10 + 7, rewards.astype(np.float32), movie_features


def _per_arm_split(root, users, served, movie_ids, rewards, files: int = 3) -> str:
    split_dir = os.path.join(str(root), "examples", "Split-train")
    rows = logged_splits.per_arm_rows(users, served, movie_ids, rewards, C)
    logged_splits.write_split(split_dir, rows, files)
    return split_dir


def _stack(variables) -> np.ndarray:
    return np.stack([v.numpy() for v in variables]).astype(np.float64)


def _rel(actual, expected) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def test_the_user_table_holds_each_users_latest_features(tmp_path):
    users, served, movie_ids, rewards, _ = _per_arm_logged(n=3_000)
    user_ids = np.random.default_rng(1).integers(0, 40, size=len(rewards))
    split_dir = os.path.join(str(tmp_path), "examples", "Split-train")
    rows = logged_splits.per_arm_rows(users, served, movie_ids, rewards, C, user_ids)
    logged_splits.write_split(split_dir, rows, files=3)
    settings = TrainerSettings(agent=agent_names.PER_ARM_LINUCB)
    _, sums = split_training.train_per_arm(
        beam.Pipeline(), str(tmp_path), split_dir, settings, DG, DA, C
    )
    table = sums.users.table()
    named = sorted(set(user_ids.tolist()) - {0})  # 0 is no user
    assert table.user_ids.tolist() == named
    latest = [np.flatnonzero(user_ids == user)[-1] for user in named]  # row i is at time i
    np.testing.assert_array_equal(table.features_of(named), users[latest])


# --- linear agents: the Beam sums give the in-memory policy -------------------------------------


@pytest.mark.parametrize(
    "settings",
    [TrainerSettings(agent="LinUCB", alpha=0.5), TrainerSettings(agent="LinTS", alpha=0.2)],
    ids=lambda s: s.agent,
)
def test_a_classic_linear_agent_from_the_beam_sums_is_the_in_memory_one(settings, tmp_path):
    x, a, r, _ = _logged(n=20_000)
    split_dir = _classic_split(tmp_path, x, a, r)
    beam_trained, sums = split_training.train_classic(
        beam.Pipeline(), str(tmp_path), split_dir, settings, D, K
    )
    in_memory = training.train_policy(settings, x, a, r, K)

    assert sums.rows == len(a)
    assert sums.reward_sum == pytest.approx(float(r.astype(np.float64).sum()), rel=1e-9)
    np.testing.assert_array_equal(sums.rows_per_arm, np.bincount(a, minlength=K))
    assert sums.sample.columns[0].shape == (10_000, D)
    ours, theirs = beam_trained.agent, in_memory.agent
    for name in ("cov_matrix", "data_vector", "num_samples"):
        assert _rel(_stack(getattr(ours, name)), _stack(getattr(theirs, name))) < 1e-5, name
    assert _rel(ours.theta.numpy(), theirs.theta.numpy()) < 1e-5
    assert beam_trained.metadata == in_memory.metadata
    assert os.listdir(str(tmp_path)) == ["examples"]  # the sums' file is gone


def test_a_per_arm_linear_agent_from_the_beam_sums_is_the_in_memory_one(tmp_path):
    users, served, movie_ids, rewards, _ = _per_arm_logged(n=12_000)
    split_dir = _per_arm_split(tmp_path, users, served, movie_ids, rewards)
    settings = TrainerSettings(agent=agent_names.INTERACTION_LINUCB, alpha=0.3)
    beam_trained, sums = split_training.train_per_arm(
        beam.Pipeline(), str(tmp_path), split_dir, settings, DG, DA, C
    )
    in_memory = per_arm_training.train_per_arm_policy(settings, users, served, rewards, C)

    _, counts = np.unique(movie_ids, return_counts=True)
    np.testing.assert_array_equal(sums.served_movie_rows(), np.sort(counts))
    assert (sums.rows, sums.statistics.num_samples) == (len(rewards), len(rewards))
    ours, theirs = beam_trained.agent, in_memory.agent
    assert _rel(ours.cov_matrix[0].numpy(), theirs.cov_matrix[0].numpy()) < 1e-5
    assert _rel(ours.data_vector[0].numpy(), theirs.data_vector[0].numpy()) < 1e-5
    assert _rel(ours.theta.numpy(), theirs.theta.numpy()) < 1e-5


def test_the_executor_sums_the_split_on_worker_processes(tmp_path):
    """DirectRunner multi-processing: workers sum the batches; the policy is the in-memory one."""
    x, a, r, _ = _logged(n=20_000, seed=3)
    root = str(tmp_path)
    examples = logged_splits.examples_artifact(root, "examples", "train")
    logged_splits.write_split(
        os.path.join(examples.uri, "Split-train"), logged_splits.classic_rows(x, a, r, K), 4
    )
    outputs = logged_splits.trainer_outputs(root)
    settings = TrainerSettings(agent="LinUCB", alpha=0.0)
    beam_args = ["--direct_running_mode=multi_processing", "--direct_num_workers=2"]
    # As an orchestrator makes the executor: a context with the pipeline's Beam arguments.
    context = base_beam_executor.BaseBeamExecutor.Context(beam_pipeline_args=beam_args)
    executor.Executor(context).Do(
        {"examples": [examples], "example_anomalies": [logged_splits.clean_anomalies(root)]},
        outputs,
        {
            "observation_dim": D,
            "num_actions": K,
            "problem": "classic",
            **dataclasses.asdict(settings),
        },
    )

    model_run = outputs["model_run"][0].uri
    assert not [name for name in os.listdir(model_run) if name.endswith(".pickle")]
    with open(os.path.join(model_run, executor.METRICS_FILE)) as f:
        metrics = json.load(f)
    assert metrics["train_rows"] == len(a)
    assert metrics["rows_per_arm"] == np.bincount(a, minlength=K).tolist()
    assert metrics["mean_logged_reward"] == pytest.approx(float(r.mean()), rel=1e-6)
    queries = np.random.default_rng(1).normal(size=(500, D)).astype(np.float32)
    saved = load_saved_policy(path_utils.serving_model_dir(outputs["model"][0].uri))
    in_memory = training.train_policy(settings, x, a, r, K).policy
    expected = in_memory.action(ts.restart(tf.constant(queries), batch_size=500)).action
    np.testing.assert_array_equal(policy_actions(saved, queries), expected.numpy())


# --- neural agents: trained from a stream through a bounded shuffle buffer ----------------------


def test_the_stream_shuffles_every_row_once_per_epoch_within_its_buffer(tmp_path):
    n, buffer = 1200, 100
    x = np.zeros((n, D), np.float32)
    a = np.zeros(n, np.int64)
    r = np.arange(n, dtype=np.float32)  # the reward names the row
    split_dir = _classic_split(tmp_path, x, a, r, files=2)
    batches = split_stream.shuffled_batches(
        split_dir,
        logged_examples.classic_spec(D),
        split_training.CLASSIC_COLUMNS,
        batch_size=64,
        epochs=3,
        seed=1,
        shuffle_buffer_rows=buffer,
    )
    rows = np.concatenate([rewards.numpy() for _, _, rewards in batches]).astype(int)
    assert len(rows) == 3 * n
    for epoch in range(3):
        assert sorted(rows[n * epoch : n * (epoch + 1)]) == list(range(n))
    assert not np.array_equal(rows[:n], rows[n : 2 * n])
    # Two files alternate; row i is the (i // 2)-th of its file. The k-th row out of
    # a buffer of B can only be among the first k + B rows read.
    rank_in_file = rows[:n] // 2
    assert np.all(2 * rank_in_file <= np.arange(n) + buffer), "a row came from beyond the buffer"


@pytest.mark.parametrize("agent", ["NeuralEpsilonGreedy", "NeuralLinUCB"])
def test_a_neural_agent_trains_from_a_split_larger_than_its_shuffle_buffer(agent, tmp_path):
    n, epochs = 1500, 4
    x, a, r, theta = _logged(n=n, seed=2)
    split_dir = _classic_split(tmp_path, x, a, r)
    settings = TrainerSettings(agent=agent, epochs=epochs, epsilon=0.0, **TINY_NEURAL)
    trained, sums = split_training.train_classic(
        beam.Pipeline(), str(tmp_path), split_dir, settings, D, K, shuffle_buffer_rows=200
    )

    assert trained.losses.shape == (n * epochs // TINY_NEURAL["batch_size"],)
    assert trained.losses[-5:].mean() < 0.5 * trained.losses[:5].mean(), trained.losses
    np.testing.assert_array_equal(trained.rows_per_arm, np.bincount(a, minlength=K))
    assert sums.statistics is None and sums.rows == n
    if agent == "NeuralLinUCB":  # the head summed the encodings of every row once
        np.testing.assert_array_equal(
            _stack(trained.agent.num_samples), np.bincount(a, minlength=K)
        )
    queries = np.random.default_rng(9).normal(size=(300, D)).astype(np.float32)
    actions = trained.policy.action(ts.restart(tf.constant(queries), batch_size=300)).action
    values = queries @ theta.T
    assert values[np.arange(300), actions.numpy()].mean() > values.mean() + 0.5


def test_a_per_arm_neural_agent_trains_from_the_stream(tmp_path):
    users, served, movie_ids, rewards, _ = _per_arm_logged(n=1500, seed=4)
    split_dir = _per_arm_split(tmp_path, users, served, movie_ids, rewards)
    settings = TrainerSettings(
        agent=agent_names.PER_ARM_NEURAL_LINUCB, epochs=3, **TINY_NEURAL
    )
    trained, _ = split_training.train_per_arm(
        beam.Pipeline(), str(tmp_path), split_dir, settings, DG, DA, C, shuffle_buffer_rows=200
    )
    assert trained.losses.shape == (1500 * 3 // TINY_NEURAL["batch_size"],)
    assert trained.losses[-5:].mean() < trained.losses[:5].mean(), trained.losses
    assert trained.agent.num_samples[0].numpy() == 1500
    assert not bool(trained.agent.actions_from_reward_layer.numpy())


# --- bad inputs --------------------------------------------------------------------------------


def test_logged_actions_beyond_num_actions_fail_by_name(tmp_path):
    x, a, r, _ = _logged(n=300)
    split_dir = _classic_split(tmp_path, x, a, r, files=1)
    with pytest.raises(Exception, match=r"logged actions must lie in \[0, 3\), the trainer's "
                       r"num_actions; got 0\.\.4: set num_actions"):
        split_training.train_classic(
            beam.Pipeline(), str(tmp_path), split_dir, TrainerSettings(), D, 3
        )


def test_an_empty_split_fails_by_name(tmp_path):
    split_dir = os.path.join(str(tmp_path), "Split-train")
    logged_splits.write_split(split_dir, [], files=1)
    with pytest.raises(ValueError, match="holds no examples; the trainer needs at least one"):
        split_training.train_classic(
            beam.Pipeline(), str(tmp_path), split_dir, TrainerSettings(), D, K
        )


@pytest.mark.parametrize(
    "train, agent, problem",
    [
        (split_training.train_classic, agent_names.PER_ARM_LINUCB, "classic"),
        (split_training.train_per_arm, agent_names.LINUCB, "per-arm"),
    ],
)
def test_an_agent_of_the_other_problem_fails_by_name(train, agent, problem, tmp_path):
    with pytest.raises(ValueError, match=f"'{agent}' is not an agent of the {problem} problem"):
        train(beam.Pipeline(), str(tmp_path), str(tmp_path), TrainerSettings(agent=agent), 3, 2, 4)


def test_stream_training_is_for_neural_agents_only():
    with pytest.raises(ValueError, match="'LinUCB' is not a neural agent; stream training is"):
        training.train_policy_on_stream(TrainerSettings(), None, [], D, np.ones(K))
    with pytest.raises(ValueError, match="'PerArmLinUCB' is not a per-arm neural agent"):
        per_arm_training.train_per_arm_policy_on_stream(
            TrainerSettings(agent=agent_names.PER_ARM_LINUCB), None, [], DG, DA, C
        )
