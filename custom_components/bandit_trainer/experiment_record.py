"""What a training run tells Vertex AI Experiments: the agent, its settings and how it went.

Parameters: the agent, the problem, the hyper-parameters the agent uses and the
rows it learned from. Metrics: the rows, the seconds, the logged rewards' mean
and, for neural agents, the final training loss (the last epoch's mean batch
loss, the last point of the `loss/epoch` chart). The ModelRun's TensorBoard
scalars become the run's time series when a TensorBoard backs the experiment.

Recording happens after the policy, the metrics file and the summaries are
written. When the step was asked to record (its `vertex_experiment` property is
set) and Vertex AI keeps refusing or stays unreachable past the retries, the step
fails, naming the cause and where the trained policy lies; a run that silently
skips the record it was asked for would leave a gap in the experiment nobody
notices.
"""

import math
import os
from typing import Any, Dict, Mapping

import numpy as np
from absl import logging

from custom_components import vertex_experiments
from custom_components.bandit_trainer import training_summaries


def training_params(metrics: Mapping[str, Any]) -> Dict[str, vertex_experiments.Value]:
    """The run's parameters from the ModelRun's metrics: lists become "64,64"-style text."""
    params: Dict[str, vertex_experiments.Value] = {
        "agent": metrics["agent"],
        "problem": metrics.get("problem", "classic"),
        "train_rows": metrics["train_rows"],
    }
    if "feature_version" in metrics:
        params["feature_version"] = metrics["feature_version"]
    for name, value in metrics["hyperparameters"].items():
        params[name] = ",".join(map(str, value)) if isinstance(value, (list, tuple)) else value
    return params


def training_metrics(
    metrics: Mapping[str, Any], losses: np.ndarray, batch_size: int
) -> Dict[str, vertex_experiments.Value]:
    """The run's summary metrics; `losses` are the neural agents' batch losses (else empty)."""
    values: Dict[str, vertex_experiments.Value] = {
        "train_rows": metrics["train_rows"],
        "training_seconds": metrics["training_seconds"],
        "mean_logged_reward": metrics["mean_logged_reward"],
    }
    if len(losses):
        final = training_summaries.epoch_mean_losses(losses, metrics["train_rows"], batch_size)[-1]
        if math.isfinite(final):
            values["final_training_loss"] = float(final)
    return values


def record_training(
    exec_properties: Mapping[str, Any],
    metrics: Mapping[str, Any],
    losses: np.ndarray,
    batch_size: int,
    model_run_dir: str,
    model_dir: str,
) -> None:
    """Records the run in Vertex AI Experiments when the step's properties ask for it."""
    console_url = vertex_experiments.log_pipeline_run(
        exec_properties,
        training_params(metrics),
        training_metrics(metrics, losses, batch_size),
        vertex_experiments.RUNNING,
        os.path.join(model_run_dir, training_summaries.SUMMARY_DIR),
        saved=f"The trained policy is saved in {model_dir}",
    )
    if console_url:
        logging.info("BanditTrainer: recorded in Vertex AI Experiments: %s", console_url)
