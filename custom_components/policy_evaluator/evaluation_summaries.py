"""The evaluation's numbers as TensorBoard scalars, in the ModelEvaluation artifact.

The evaluator owns one output that already holds these numbers (the JSON
report and MLMD properties), so its summaries live there too, in
`<ModelEvaluation>/eval` (`SUMMARY_DIR`), the counterpart of the trainer's
`<ModelRun>/train`: the ModelRun is the trainer's output, and an artifact is
never written to after its producer finished.

Each policy's estimates become `<role>/<estimator>` with `_lower`/`_upper` for
the interval (e.g. `candidate/dr`, `candidate/dr_lower`), the simulator's true
value `<role>/true_value`, and the rest `logging_policy/value`,
`simulator/<name>` and `blessing/blessed` (1 or 0). An evaluation is one point
in time, written at step `SNAPSHOT_STEP`; the TensorBoard run tells the
evaluations apart. Undefined numbers (e.g. SNIPS with no overlap, null in the
report) are left out.
"""

import os
from typing import Any, Dict, Iterator, Tuple

from bandit_core.summary_writer import SummaryWriter

SUMMARY_DIR = "eval"
ROLES = ("candidate", "baseline")
SNAPSHOT_STEP = 0


def policy_numbers(report: Dict[str, Any]) -> Iterator[Tuple[str, str, float]]:
    """(role, name, value) of each policy's defined estimates, bounds and true value.

    Names are `dr`, `dr_lower`, `dr_upper`, ..., `true_value`: the MLMD
    properties `<role>_<name>` and the scalars `<role>/<name>` are the same numbers.
    """
    for role in ROLES:
        policy = report[role]
        if policy is None:
            continue
        for estimator, estimate in policy["estimates"].items():
            for field in ("value", "lower", "upper"):
                if estimate[field] is not None:
                    suffix = "" if field == "value" else f"_{field}"
                    yield role, f"{estimator}{suffix}", estimate[field]
        if policy["true_value"] is not None:
            yield role, "true_value", policy["true_value"]


def evaluation_scalars(report: Dict[str, Any]) -> Iterator[Tuple[str, float]]:
    """(tag, value) for every defined number of an `Evaluation.to_json()` report."""
    yield "blessing/blessed", float(report["blessed"])
    if report["logging_policy_value"] is not None:
        yield "logging_policy/value", report["logging_policy_value"]
    for role, name, value in policy_numbers(report):
        yield f"{role}/{name}", value
    for name, value in report["simulator"].items():
        if isinstance(value, float):
            yield f"simulator/{name}", value


def write_evaluation_summaries(evaluation_dir: str, report: Dict[str, Any]) -> None:
    """Writes `evaluation_scalars(report)` below `evaluation_dir`, the ModelEvaluation's."""
    with SummaryWriter(os.path.join(evaluation_dir, SUMMARY_DIR)) as writer:
        for tag, value in evaluation_scalars(report):
            writer.scalar(tag, value, SNAPSHOT_STEP)
