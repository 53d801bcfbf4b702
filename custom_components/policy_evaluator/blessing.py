"""The rule that decides whether a candidate policy may replace the baseline.

Pure: estimates in, a decision and its reason out. The default asks that the
candidate's DR lower confidence bound exceed the baseline's DR estimate, so a
candidate that is merely as good as the serving policy, or whose advantage is
within the noise of the evaluation data, is not pushed. Without a baseline
(the first run) the reference is the logging policy's value, i.e. the mean
logged reward: a first policy must at least beat the policy that collected
the data.
"""

import dataclasses
import math
from typing import Mapping, Optional

from custom_components.policy_evaluator.ope import Estimate

COMPARISONS = ("lower_bound", "point_estimate")


@dataclasses.dataclass(frozen=True)
class BlessingRule:
    """Bless iff candidate[estimator] (lower bound or point) > reference + min_improvement.

    Built from validated settings (`settings.EvaluatorSettings.blessing_rule`),
    which hold the defaults and the checks.
    """

    estimator: str
    comparison: str
    min_improvement: float


@dataclasses.dataclass(frozen=True)
class BlessingDecision:
    """Whether to bless, and a sentence saying why."""

    blessed: bool
    reason: str


def refuse(reason: str) -> BlessingDecision:
    """A refusal that is not a comparison, e.g. the data could not be evaluated."""
    return BlessingDecision(False, reason)


def decide(
    rule: BlessingRule,
    candidate: Mapping[str, Estimate],
    baseline: Optional[Mapping[str, Estimate]],
    logging_value: float,
) -> BlessingDecision:
    """Applies `rule` to the candidate's and the baseline's estimates.

    Args:
      rule: the rule of validated settings.
      candidate: the candidate's estimates by estimator name.
      baseline: the baseline's estimates on the same rows, or None when
        nothing has been blessed yet.
      logging_value: the mean logged reward, the reference without a baseline.
    """
    name = rule.estimator.upper()
    estimate = candidate[rule.estimator]
    if rule.comparison == "lower_bound":
        score, score_name = estimate.lower, f"candidate {name} lower bound"
    else:
        score, score_name = estimate.value, f"candidate {name}"
    if baseline is None:
        reference, reference_name = logging_value, "logging policy's mean reward"
    else:
        reference, reference_name = baseline[rule.estimator].value, f"baseline {name}"
    threshold = reference + rule.min_improvement
    if not (math.isfinite(score) and math.isfinite(reference)):
        return refuse(
            f"not blessed: {score_name} ({score}) or {reference_name} ({reference}) is not finite"
        )
    comparison = (
        f"{score_name} {score:.6g} vs {reference_name} {reference:.6g} "
        f"+ min_improvement {rule.min_improvement:g}"
    )
    if score > threshold:
        return BlessingDecision(True, f"blessed: {comparison}")
    return BlessingDecision(False, f"not blessed: {comparison}")
