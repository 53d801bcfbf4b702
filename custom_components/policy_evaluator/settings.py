"""The evaluator's settings: the config's `evaluator` section and PolicyEvaluator's parameters.

One definition of every field, default and check, so the JSON config, the
component's execution parameters and the evaluation code cannot disagree.
The reward bounds are not here: they are the `validation` section's.
"""

import dataclasses
import math

from bandit_core.errors import require
from custom_components.policy_evaluator.blessing import COMPARISONS, BlessingRule
from custom_components.policy_evaluator.ope import ESTIMATORS


@dataclasses.dataclass(frozen=True)
class EvaluatorSettings:
    """How PolicyEvaluator estimates policy values and when it blesses a policy.

    Attributes:
      blessing_estimator: the estimate the blessing rule compares.
      blessing_comparison: compare the candidate's lower bound or its point estimate.
      min_improvement: how much the candidate must beat the reference by.
      bootstrap_samples: bootstrap replicates per interval.
      confidence: mass of each interval.
      seed: seeds the bootstrap and the reward model's folds.
      reward_model_folds: cross-fitting folds of the DM/DR reward model.
      ridge: L2 penalty of the reward model.
      policy_samples: policy calls averaged into pi for stochastic policies.
      use_simulator: report the MovieLens simulator's true values when MovieLens is available.
    """

    blessing_estimator: str = "dr"
    blessing_comparison: str = "lower_bound"
    min_improvement: float = 0.0
    bootstrap_samples: int = 1000
    confidence: float = 0.95
    seed: int = 0
    reward_model_folds: int = 5
    ridge: float = 1.0
    policy_samples: int = 64
    use_simulator: bool = True

    def validate(self) -> "EvaluatorSettings":
        """Raises ConfigError naming the first bad setting as `evaluator.<field>`."""
        require(
            self.blessing_estimator in ESTIMATORS,
            "evaluator.blessing_estimator",
            f"must be one of {', '.join(ESTIMATORS)}",
        )
        require(
            self.blessing_comparison in COMPARISONS,
            "evaluator.blessing_comparison",
            f"must be {' or '.join(COMPARISONS)}",
        )
        require(
            math.isfinite(self.min_improvement) and self.min_improvement >= 0.0,
            "evaluator.min_improvement",
            "must be finite and >= 0",
        )
        require(self.bootstrap_samples >= 1, "evaluator.bootstrap_samples", "must be >= 1")
        require(0.0 < self.confidence < 1.0, "evaluator.confidence", "must be in (0, 1)")
        require(self.seed >= 0, "evaluator.seed", "must be >= 0")
        require(self.reward_model_folds >= 2, "evaluator.reward_model_folds", "must be >= 2")
        require(self.ridge > 0.0, "evaluator.ridge", "must be > 0")
        require(self.policy_samples >= 1, "evaluator.policy_samples", "must be >= 1")
        return self

    @property
    def blessing_rule(self) -> BlessingRule:
        """The blessing settings as the rule `blessing.decide` applies."""
        return BlessingRule(self.blessing_estimator, self.blessing_comparison, self.min_improvement)
