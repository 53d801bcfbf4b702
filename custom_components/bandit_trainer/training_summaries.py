"""What the trainer shows in TensorBoard, written into its ModelRun artifact.

TFX's Trainer gives model code `fn_args.model_run_dir` as its TensorBoard log
directory and records that directory as the ModelRun artifact, where Keras'
TensorBoard callback writes a `train` run. BanditTrainer keeps the convention:
its summaries go to `<ModelRun>/train` (`SUMMARY_DIR`), so `tensorboard
--logdir <ModelRun uri>` shows a run named `train`.

Neural agents are trained batch by batch and get loss curves. Linear agents
are fitted in one pass and have no curve: a snapshot at step `SNAPSHOT_STEP`
shows how the logged rows cover the arms and how far the fitted model's
predicted rewards spread, which tells an under-explored or flat model apart
from a confident one.

No summary needs the split in memory. The rows per arm and per served movie
are combinable counts over every row; the predicted-reward histograms are
computed on a bounded uniform sample of the training rows
(`statistics_pipeline.SAMPLE_ROWS` at most, all rows of a smaller split),
which shows the spread without keeping every row.
"""

import os

import numpy as np

from bandit_core import linear_policy, per_arm_features
from bandit_core.summary_writer import SummaryWriter
from custom_components.bandit_trainer.per_arm_training import PerArmTrainedPolicy
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bandit_trainer.training import TrainedPolicy

SUMMARY_DIR = "train"
LOSS_PER_BATCH = "loss/batch"
LOSS_PER_EPOCH = "loss/epoch"
ARM_ROWS = "arm_rows"
PREDICTED_REWARD = "predicted_reward"
PREDICTED_REWARD_OF_TRAINING_ROWS = "predicted_reward/training_rows"
DISTINCT_MOVIES_SERVED = "movies/distinct_served"
ROWS_PER_SERVED_MOVIE = "movies/rows_per_served_movie"
SNAPSHOT_STEP = 0


def arm_tag(prefix: str, arm: int, num_actions: int) -> str:
    """'arm_rows/arm_07': zero-padded so that TensorBoard lists the arms in order."""
    return f"{prefix}/arm_{arm:0{len(str(num_actions - 1))}d}"


def epoch_mean_losses(losses: np.ndarray, num_rows: int, batch_size: int) -> np.ndarray:
    """[epochs] the mean loss of the batches that start in each epoch.

    `neural_training.shuffled_batches` and `split_stream.shuffled_batches`
    cut one stream of per-epoch shuffles into batches, so a batch can straddle
    two epochs; it counts toward the epoch of its first row.
    """
    if num_rows < 1 or batch_size < 1:
        raise ValueError(
            f"num_rows {num_rows} and batch_size {batch_size} must be >= 1 to place batches "
            "in epochs"
        )
    epoch_of_batch = (np.arange(len(losses)) * batch_size) // num_rows
    return np.bincount(epoch_of_batch, weights=losses) / np.bincount(epoch_of_batch)


def write_classic_summaries(
    model_run_dir: str,
    trained: TrainedPolicy,
    settings: TrainerSettings,
    num_rows: int,
    observation_sample: np.ndarray,
) -> None:
    """Rows per arm for every agent; loss curves or the predicted-reward spread per arm.

    Args:
      model_run_dir: the ModelRun artifact's directory.
      trained: the trained policy (`training`).
      settings: the settings it was trained with.
      num_rows: N, the training rows, which places the batch losses in epochs.
      observation_sample: [m, d] a uniform sample of the training contexts.
    """
    num_actions = len(trained.rows_per_arm)
    with SummaryWriter(os.path.join(model_run_dir, SUMMARY_DIR)) as writer:
        for arm, rows in enumerate(trained.rows_per_arm):
            writer.scalar(arm_tag(ARM_ROWS, arm, num_actions), float(rows), SNAPSHOT_STEP)
        if trained.statistics is None:
            _write_losses(writer, trained.losses, num_rows, settings.batch_size)
            return
        theta, _ = linear_policy.posterior_factors(
            trained.statistics.cov_matrices,
            trained.statistics.data_vectors,
            settings.tikhonov_weight,
        )
        predicted = np.asarray(observation_sample, np.float64) @ theta.T
        for arm in range(num_actions):
            writer.histogram(
                arm_tag(PREDICTED_REWARD, arm, num_actions), predicted[:, arm], SNAPSHOT_STEP
            )


def write_per_arm_summaries(
    model_run_dir: str,
    trained: PerArmTrainedPolicy,
    num_rows: int,
    rows_per_served_movie: np.ndarray,
    global_sample: np.ndarray,
    arm_sample: np.ndarray,
) -> None:
    """How many movies the log served and how often; loss curves or predicted rewards.

    Args:
      model_run_dir: the ModelRun artifact's directory.
      trained: the trained per-arm policy (`per_arm_training`).
      num_rows: N, the training rows, which places the batch losses in epochs.
      rows_per_served_movie: [M] the training rows of each movie served at least once.
      global_sample: [m, dg] the users of a uniform sample of the training rows.
      arm_sample: [m, da] the same rows' served movies' features.
    """
    with SummaryWriter(os.path.join(model_run_dir, SUMMARY_DIR)) as writer:
        writer.scalar(DISTINCT_MOVIES_SERVED, len(rows_per_served_movie), SNAPSHOT_STEP)
        writer.histogram(ROWS_PER_SERVED_MOVIE, rows_per_served_movie, SNAPSHOT_STEP)
        if trained.statistics is None:
            _write_losses(writer, trained.losses, num_rows, trained.settings.batch_size)
            return
        predicted = _per_arm_predictions(trained, global_sample, arm_sample)
        writer.histogram(PREDICTED_REWARD_OF_TRAINING_ROWS, predicted, SNAPSHOT_STEP)


def _per_arm_predictions(
    trained: PerArmTrainedPolicy, global_features: np.ndarray, chosen_arm_features: np.ndarray
) -> np.ndarray:
    """The shared linear model's mean reward of each row's served movie."""
    statistics = trained.statistics
    theta, _ = linear_policy.posterior_factors(
        statistics.cov_matrix[None],
        statistics.data_vector[None],
        trained.settings.tikhonov_weight,
    )
    contexts = per_arm_features.linear_contexts(
        trained.settings.agent, global_features, chosen_arm_features
    )
    return np.asarray(contexts, np.float64) @ theta[0]


def _write_losses(
    writer: SummaryWriter, losses: np.ndarray, num_rows: int, batch_size: int
) -> None:
    """Both loss curves; a diverged (non-finite) loss leaves a gap at its step."""
    curves = (
        (LOSS_PER_BATCH, losses),
        (LOSS_PER_EPOCH, epoch_mean_losses(losses, num_rows, batch_size)),
    )
    for tag, values in curves:
        for step in np.flatnonzero(np.isfinite(values)):
            writer.scalar(tag, float(values[step]), int(step))
