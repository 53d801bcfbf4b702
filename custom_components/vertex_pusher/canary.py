"""The verdict on a running canary, from the next run's policy evaluation.

While a canary runs, the endpoint serves a mix: the stable model with share
1 - c and the canary with share c, so the logged mean reward is
(1 - c) * stable + c * canary. The next run's evaluator estimates its
baseline, the latest blessed model, which is the canary, on exactly those
logs. The canary is at least as good as the mix if and only if it is at least
as good as the stable model (for 0 < c < 1), so the rule compares the
baseline's estimate under the blessing estimator with the logged mean reward.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Mapping, Optional


@dataclasses.dataclass(frozen=True)
class CanaryVerdict:
    promoted: bool
    reason: str


def judge_canary(report: Optional[Mapping[str, Any]]) -> CanaryVerdict:
    """Promote iff the evaluation's baseline estimate >= the logged mean reward.

    `report` is the PolicyEvaluator's evaluation JSON, or None when the run
    produced none. Anything that leaves the comparison undefined (no
    evaluation, no baseline, an estimate that is null) rolls the canary back:
    a canary that was not shown to be as good does not get all traffic.
    """
    if report is None:
        return CanaryVerdict(False, "rolled back: the run produced no evaluation")
    estimator = (report.get("rule") or {}).get("estimator")
    baseline = report.get("baseline") or {}
    value = ((baseline.get("estimates") or {}).get(estimator) or {}).get("value")
    logged = report.get("logging_policy_value")
    if not _finite(value) or not _finite(logged):
        return CanaryVerdict(
            False,
            f"rolled back: the evaluation has no finite baseline {estimator} estimate "
            f"({value}) or logged mean reward ({logged}) to judge the canary by",
        )
    comparison = f"canary {str(estimator).upper()} {value:.6g} vs logged mean reward {logged:.6g}"
    if value >= logged:
        return CanaryVerdict(True, f"promoted: {comparison}")
    return CanaryVerdict(False, f"rolled back: {comparison}")


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
