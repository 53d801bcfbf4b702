"""The trainer's TensorBoard summaries: read back as TensorBoard reads them, checked by number.

The executor runs on real artifacts (a train split written as ExampleGen
writes it, ExampleValidator's empty report) and writes into its ModelRun;
the per-arm summaries are checked on the trainer's own per-arm training.
"""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tensorflow_metadata.proto.v0 import anomalies_pb2
from tfx.components.example_validator.executor import DEFAULT_FILE_NAME
from tfx.types import artifact_utils, standard_artifacts

from bandit_core import agent_names, columns, per_arm_features
from custom_components.bandit_trainer import executor, per_arm_training, training
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bandit_trainer.statistics_pipeline import SAMPLE_ROWS, per_arm_batch_sums
from custom_components.bandit_trainer.training_summaries import (
    SUMMARY_DIR,
    epoch_mean_losses,
    write_classic_summaries,
    write_per_arm_summaries,
)
from tests.helpers.summary_events import read_histograms, read_scalars

D, K, N = 4, 3, 1200
TINY_NEURAL = dict(hidden_layers="16", encoding_dim=4, batch_size=200, learning_rate=0.02)


def _logged(seed: int = 0):
    """Uniformly logged rows of an easy linear bandit: little noise, a few arms."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(N, D)).astype(np.float32)
    a = rng.integers(0, K, size=N)
    theta = rng.normal(size=(K, D))
    r = (np.einsum("nd,nd->n", x, theta[a]) + rng.normal(scale=0.1, size=N)).astype(np.float32)
    return x, a, r


def _feature(kind: str, values) -> tf.train.Feature:
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _train_inputs(root, x, a, r):
    """An Examples artifact with a train split of the rows, and a clean ExampleAnomalies."""
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = artifact_utils.encode_split_names(["train"])
    os.makedirs(os.path.join(examples.uri, "Split-train"))
    path = os.path.join(examples.uri, "Split-train", "data.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for i in range(len(a)):
            feature = {
                columns.USER_ID: _feature("int", [1]),
                columns.EVENT_TIME_US: _feature("int", [1]),
                columns.OBSERVATION: _feature("float", x[i]),
                columns.ACTION: _feature("int", [a[i]]),
                columns.REWARD: _feature("float", [r[i]]),
                columns.PROPENSITY: _feature("float", [1.0 / K]),
            }
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())
    anomalies = standard_artifacts.ExampleAnomalies()
    anomalies.uri = str(root / "anomalies")
    anomalies.split_names = artifact_utils.encode_split_names(["train"])
    os.makedirs(os.path.join(anomalies.uri, "Split-train"))
    with open(os.path.join(anomalies.uri, "Split-train", DEFAULT_FILE_NAME), "wb") as f:
        f.write(anomalies_pb2.Anomalies().SerializeToString())
    return examples, anomalies


def _run_trainer(root, settings: TrainerSettings, x, a, r) -> str:
    """Runs the executor; returns the ModelRun's directory."""
    examples, anomalies = _train_inputs(root, x, a, r)
    model, model_run = standard_artifacts.Model(), standard_artifacts.ModelRun()
    model.uri, model_run.uri = str(root / "model"), str(root / "model_run")
    os.makedirs(model_run.uri)
    executor.Executor().Do(
        {"examples": [examples], "example_anomalies": [anomalies]},
        {"model": [model], "model_run": [model_run]},
        {
            "observation_dim": D,
            "num_actions": K,
            "problem": "classic",
            **dataclasses.asdict(settings),
        },
    )
    return model_run.uri


def test_a_neural_agents_loss_falls_over_the_epochs_in_its_model_run(tmp_path):
    x, a, r = _logged()
    settings = TrainerSettings(agent="NeuralEpsilonGreedy", epochs=5, **TINY_NEURAL)
    model_run = _run_trainer(tmp_path, settings, x, a, r)
    logdir = os.path.join(model_run, SUMMARY_DIR)

    scalars = read_scalars(logdir)
    batches, epochs = scalars["loss/batch"], scalars["loss/epoch"]
    assert [step for step, _ in batches] == list(range(N * 5 // 200))
    assert [step for step, _ in epochs] == list(range(5))
    epoch_losses = [loss for _, loss in epochs]
    assert epoch_losses[-1] < 0.5 * epoch_losses[0], epoch_losses
    assert epoch_losses[1] == pytest.approx(np.mean([loss for _, loss in batches[6:12]]))
    assert [rows for _, rows in (scalars[f"arm_rows/arm_{arm}"][0] for arm in range(K))] == list(
        np.bincount(a, minlength=K)
    )
    assert read_histograms(logdir) == {}
    with open(os.path.join(model_run, executor.METRICS_FILE)) as f:
        assert json.load(f)["train_rows"] == N


def test_a_linear_agent_shows_rows_and_predicted_reward_spread_per_arm(tmp_path):
    x, a, r = _logged()
    settings = TrainerSettings(agent="LinUCB", tikhonov_weight=2.0)
    model_run = _run_trainer(tmp_path, settings, x, a, r)
    logdir = os.path.join(model_run, SUMMARY_DIR)

    scalars = read_scalars(logdir)
    assert set(scalars) == {f"arm_rows/arm_{arm}" for arm in range(K)}
    assert [scalars[f"arm_rows/arm_{arm}"] for arm in range(K)] == [
        [(0, float(count))] for count in np.bincount(a, minlength=K)
    ]
    histograms = read_histograms(logdir)
    assert set(histograms) == {f"predicted_reward/arm_{arm}" for arm in range(K)}
    for arm in range(K):
        rows = a == arm
        xa = x[rows].astype(np.float64)
        theta = np.linalg.solve(xa.T @ xa + 2.0 * np.eye(D), xa.T @ r[rows])
        predicted = x.astype(np.float64) @ theta
        ((step, buckets),) = histograms[f"predicted_reward/arm_{arm}"]
        assert step == 0 and buckets[:, 2].sum() == N
        assert buckets[0, 0] == pytest.approx(predicted.min(), rel=1e-5)
        assert buckets[-1, 1] == pytest.approx(predicted.max(), rel=1e-5)


def _per_arm_logged(seed: int = 0):
    """Users [N, 3], served movies' features [N, 2] and ids [N] out of 40, rewards [N]."""
    rng = np.random.default_rng(seed)
    movie_features = rng.normal(0.5, 1.0, size=(40, 2)).astype(np.float32)
    movie_ids = rng.integers(0, 40, size=N) * 10 + 7
    users = rng.normal(0.5, 1.0, size=(N, 3)).astype(np.float32)
    served = movie_features[(movie_ids - 7) // 10]
    rewards = (users.sum(axis=1) - served.sum(axis=1) + rng.normal(0, 0.1, size=N)).astype(
        np.float32
    )
    return users, served, movie_ids, rewards


def _write_per_arm(root, trained, users, served, movie_ids, rewards, sample_size=SAMPLE_ROWS):
    """The per-arm summaries from the trainer's combinable sums of the rows (one batch here)."""
    batch = {
        columns.OBSERVATION: users,
        columns.ARM_FEATURES: served,
        columns.REWARD: rewards,
        columns.MOVIE_ID: movie_ids,
        columns.USER_ID: np.zeros(len(rewards), np.int64),
        columns.EVENT_TIME_US: np.zeros(len(rewards), np.int64),
    }
    sums = per_arm_batch_sums(batch, linear_agent=None, sample_size=sample_size)
    write_per_arm_summaries(
        str(root), trained, sums.rows, sums.served_movie_rows(), *sums.sample.columns
    )


def test_a_per_arm_linear_agent_shows_movies_served_and_predicted_rewards(tmp_path):
    users, served, movie_ids, rewards = _per_arm_logged()
    settings = TrainerSettings(agent=agent_names.PER_ARM_LINUCB, tikhonov_weight=1.0)
    trained = per_arm_training.train_per_arm_policy(settings, users, served, rewards, 5)
    _write_per_arm(tmp_path, trained, users, served, movie_ids, rewards)
    logdir = str(tmp_path / SUMMARY_DIR)

    distinct, counts = np.unique(movie_ids, return_counts=True)
    assert read_scalars(logdir) == {"movies/distinct_served": [(0, float(len(distinct)))]}
    histograms = read_histograms(logdir)
    ((_, per_movie),) = histograms["movies/rows_per_served_movie"]
    assert per_movie[:, 2].sum() == len(distinct)
    assert per_movie[0, 0] == pytest.approx(counts.min())
    assert per_movie[-1, 1] == pytest.approx(counts.max())
    contexts = per_arm_features.linear_contexts(settings.agent, users, served).astype(np.float64)
    theta = np.linalg.solve(contexts.T @ contexts + np.eye(contexts.shape[1]), contexts.T @ rewards)
    predicted = contexts @ theta
    ((_, buckets),) = histograms["predicted_reward/training_rows"]
    assert buckets[:, 2].sum() == N
    assert buckets[0, 0] == pytest.approx(predicted.min(), rel=1e-5)
    assert buckets[-1, 1] == pytest.approx(predicted.max(), rel=1e-5)


def test_predicted_rewards_of_a_large_split_come_from_a_bounded_sample(tmp_path):
    users, served, movie_ids, rewards = _per_arm_logged()
    settings = TrainerSettings(agent=agent_names.PER_ARM_LINUCB, tikhonov_weight=1.0)
    trained = per_arm_training.train_per_arm_policy(settings, users, served, rewards, 5)
    _write_per_arm(tmp_path, trained, users, served, movie_ids, rewards, sample_size=100)
    histograms = read_histograms(str(tmp_path / SUMMARY_DIR))

    ((_, buckets),) = histograms["predicted_reward/training_rows"]
    assert buckets[:, 2].sum() == 100
    ((_, per_movie),) = histograms["movies/rows_per_served_movie"]
    assert per_movie[:, 2].sum() == len(np.unique(movie_ids))  # counts cover every row


def test_a_per_arm_neural_agent_shows_its_loss_curves(tmp_path):
    users, served, movie_ids, rewards = _per_arm_logged()
    settings = TrainerSettings(
        agent=agent_names.PER_ARM_NEURAL_EPSILON_GREEDY, epochs=2, **TINY_NEURAL
    )
    trained = per_arm_training.train_per_arm_policy(settings, users, served, rewards, 5)
    _write_per_arm(tmp_path, trained, users, served, movie_ids, rewards)
    logdir = str(tmp_path / SUMMARY_DIR)

    scalars = read_scalars(logdir)
    assert set(scalars) == {"movies/distinct_served", "loss/batch", "loss/epoch"}
    assert [loss for _, loss in scalars["loss/batch"]] == pytest.approx(list(trained.losses))
    assert len(scalars["loss/epoch"]) == 2
    assert set(read_histograms(logdir)) == {"movies/rows_per_served_movie"}


def test_epoch_means_count_a_batch_toward_the_epoch_of_its_first_row():
    losses = np.array([1.0, 2.0, 3.0, 4.0, 5.0])
    # 4 rows, batches of 3: batches start at rows 0, 3, 6, 9, 12 -> epochs 0, 0, 1, 2, 3.
    np.testing.assert_allclose(epoch_mean_losses(losses, 4, 3), [1.5, 3.0, 4.0, 5.0])


@pytest.mark.parametrize("num_rows, batch_size", [(0, 3), (4, 0)])
def test_epoch_means_need_rows_and_a_batch_size(num_rows, batch_size):
    with pytest.raises(ValueError, match="must be >= 1 to place batches in epochs"):
        epoch_mean_losses(np.ones(3), num_rows, batch_size)


def test_a_diverged_loss_leaves_a_gap_instead_of_failing_training(tmp_path):
    x, a, r = _logged()
    settings = TrainerSettings(agent="NeuralEpsilonGreedy", epochs=1, **TINY_NEURAL)
    trained = training.train_policy(settings, x, a, r, K)
    diverged = np.array(trained.losses)
    diverged[2:] = np.nan
    write_classic_summaries(
        str(tmp_path), dataclasses.replace(trained, losses=diverged), settings, len(x), x
    )
    scalars = read_scalars(str(tmp_path / SUMMARY_DIR))
    assert [step for step, _ in scalars["loss/batch"]] == [0, 1]
    assert "loss/epoch" not in scalars
