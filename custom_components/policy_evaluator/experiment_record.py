"""What an evaluation tells Vertex AI Experiments: each estimate with its interval, the blessing.

The run the trainer opened gets the blessing rule as parameters and, as metrics,
the numbers the ModelEvaluation's ML Metadata properties hold under the same
names (`candidate_dr`, `candidate_dr_lower`, ..., `blessed`, `eval_rows`); the
evaluation's TensorBoard scalars become time series when a TensorBoard backs
the experiment. The evaluation is the run's last record, so it marks the run
COMPLETE. Like the trainer, the step fails when it was asked to record and
cannot, after the blessing and the evaluation are written.
"""

import os
from typing import Any, Dict, Mapping

from absl import logging

from custom_components import vertex_experiments
from custom_components.policy_evaluator import evaluation_summaries


def evaluation_params(report: Mapping[str, Any]) -> Dict[str, vertex_experiments.Value]:
    """The blessing rule, as `blessing_estimator`, `blessing_comparison`, ..."""
    return {f"blessing_{name}": value for name, value in report["rule"].items()}


def evaluation_metrics(report: Mapping[str, Any]) -> Dict[str, vertex_experiments.Value]:
    """Every defined number of an `Evaluation.to_json()` report, named as in ML Metadata."""
    metrics: Dict[str, vertex_experiments.Value] = {
        "blessed": int(report["blessed"]),
        "eval_rows": report["eval_rows"],
    }
    if report["logging_policy_value"] is not None:
        metrics["logging_policy_value"] = report["logging_policy_value"]
    for role, name, value in evaluation_summaries.policy_numbers(report):
        metrics[f"{role}_{name}"] = value
    for name, value in report["simulator"].items():
        if isinstance(value, float):
            metrics[name] = value
    return metrics


def record_evaluation(
    exec_properties: Mapping[str, Any], report: Mapping[str, Any], evaluation_dir: str
) -> None:
    """Records the evaluation in Vertex AI Experiments when the step's properties ask for it."""
    console_url = vertex_experiments.log_pipeline_run(
        exec_properties,
        evaluation_params(report),
        evaluation_metrics(report),
        vertex_experiments.COMPLETE,
        os.path.join(evaluation_dir, evaluation_summaries.SUMMARY_DIR),
        saved=f"The evaluation and the blessing are written ({evaluation_dir})",
    )
    if console_url:
        logging.info("PolicyEvaluator: recorded in Vertex AI Experiments: %s", console_url)
