"""Evaluates a candidate (and the baseline) policy and decides the blessing.

Independent of TFX so the executor, the agent report and the benchmarks run
the same evaluation. Bad evaluation data never raises here: it becomes a
refusal to bless whose reason names the problem.
"""

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from bandit_core.logged_examples import LoggedColumns
from custom_components.policy_evaluator import blessing, ope, reward_model
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy
from simulation import movielens_environment
from simulation.movielens_environment import MovieLensBandit


@dataclasses.dataclass(frozen=True)
class PolicyReport:
    """One policy's estimates on the evaluation rows, and its true value if known."""

    policy_dir: str
    agent: str
    estimates: Dict[str, ope.Estimate]
    true_value: Optional[float]

    def to_json(self) -> Dict[str, Any]:
        return {
            "policy_dir": self.policy_dir,
            "agent": self.agent,
            "estimates": {k: dataclasses.asdict(v) for k, v in self.estimates.items()},
            "true_value": self.true_value,
        }


@dataclasses.dataclass(frozen=True)
class Evaluation:
    """Everything the evaluator found, as stored in the ModelEvaluation artifact."""

    decision: blessing.BlessingDecision
    settings: EvaluatorSettings
    reward_range: Optional[Tuple[float, float]]
    eval_rows: int
    logging_value: Optional[float]
    candidate: Optional[PolicyReport]
    baseline: Optional[PolicyReport]
    simulator: Dict[str, Any]
    notes: Tuple[str, ...] = ()

    @property
    def blessed(self) -> bool:
        return self.decision.blessed

    def to_json(self) -> Dict[str, Any]:
        return _finite_or_none(
            {
                "blessed": self.decision.blessed,
                "reason": self.decision.reason,
                "rule": dataclasses.asdict(self.settings.blessing_rule),
                "settings": {**dataclasses.asdict(self.settings), "reward_range": self.reward_range},
                "eval_rows": self.eval_rows,
                "logging_policy_value": self.logging_value,
                "candidate": self.candidate.to_json() if self.candidate else None,
                "baseline": self.baseline.to_json() if self.baseline else None,
                "simulator": self.simulator,
                "notes": list(self.notes),
            }
        )


def _finite_or_none(value: Any) -> Any:
    """JSON has no NaN: undefined numbers (e.g. SNIPS with no overlap) become null."""
    if isinstance(value, dict):
        return {k: _finite_or_none(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite_or_none(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def check_inputs(settings: EvaluatorSettings, reward_range: Optional[Tuple[float, float]]) -> None:
    """Raises on settings or a reward range no evaluation can use: a caller's bug, not bad data."""
    settings.validate()
    if reward_range is not None and not reward_range[0] < reward_range[1]:
        raise ValueError(f"reward_range {reward_range!r} must be (min, max) with min < max")


def refused(
    reason: str,
    settings: EvaluatorSettings,
    reward_range: Optional[Tuple[float, float]],
    rows: int,
    simulator: Dict[str, Any],
    notes: List[str],
) -> Evaluation:
    """The evaluation of data that cannot be estimated from: no estimates, no blessing."""
    return Evaluation(
        blessing.refuse(f"not blessed: {reason}"),
        settings, reward_range, rows, None, None, None, simulator, tuple(notes),
    )


def evaluate(
    read_columns: Callable[[int], LoggedColumns],
    candidate: SavedPolicy,
    baseline: Optional[SavedPolicy],
    settings: EvaluatorSettings,
    reward_range: Optional[Tuple[float, float]] = None,
    bandit: Optional[MovieLensBandit] = None,
    simulator_note: str = "",
) -> Evaluation:
    """Estimates both policies' values on the same rows and applies the rule.

    Args:
      read_columns: reads the evaluation rows for an observation dimension;
        may raise ValueError (e.g. an empty split), which becomes a refusal.
      candidate: the policy asking to be blessed.
      baseline: the latest blessed policy, or None.
      settings: the estimation settings and the blessing rule.
      reward_range: (min, max) a logged reward must lie in, or None.
      bandit: the simulator, for true values; None when unavailable.
      simulator_note: why the simulator is unavailable, when it is.
    """
    check_inputs(settings, reward_range)
    metadata = candidate.metadata
    notes = []
    if baseline is not None and (
        baseline.metadata.observation_dim != metadata.observation_dim
        or baseline.metadata.num_actions != metadata.num_actions
    ):
        notes.append(
            f"baseline {baseline.policy_dir} has observation_dim "
            f"{baseline.metadata.observation_dim} and {baseline.metadata.num_actions} actions, "
            f"the candidate {metadata.observation_dim} and {metadata.num_actions}; it cannot "
            "act on these rows, so the candidate is compared with the logging policy"
        )
        baseline = None
    simulator = _simulator_values(bandit, metadata.observation_dim, metadata.num_actions)
    if bandit is None:
        simulator["unavailable"] = simulator_note or "no simulator configured"

    def refusal(reason: str, rows: int = 0) -> Evaluation:
        return refused(reason, settings, reward_range, rows, simulator, notes)

    try:
        columns = read_columns(metadata.observation_dim)
    except ValueError as e:
        return refusal(f"the evaluation data could not be read: {e}")
    try:
        data = ope.validate_logged_data(
            columns.actions,
            columns.rewards,
            columns.propensities,
            metadata.num_actions,
            reward_range,
        )
        _check_observations(columns.observations, metadata.observation_dim)
    except ope.OPEInputError as e:
        return refusal(f"the evaluation data is invalid: {e}", len(columns))
    logging_value = float(data.rewards.mean())
    predictions = reward_model.cross_fitted_predictions(
        columns.observations,
        data.actions,
        data.rewards,
        metadata.num_actions,
        settings.reward_model_folds,
        settings.ridge,
        settings.seed,
    )

    def report(policy: SavedPolicy) -> PolicyReport:
        pi = policy.probabilities(
            columns.observations, settings.policy_samples, np.random.default_rng(settings.seed)
        )
        estimates = ope.off_policy_estimates(
            pi, data, predictions, settings.bootstrap_samples, settings.confidence, settings.seed
        )
        return PolicyReport(
            policy.policy_dir,
            policy.metadata.agent,
            estimates,
            _true_value(bandit, policy, settings.policy_samples, settings.seed),
        )

    candidate_report = report(candidate)
    baseline_report = report(baseline) if baseline is not None else None
    decision = blessing.decide(
        settings.blessing_rule,
        candidate_report.estimates,
        baseline_report.estimates if baseline_report else None,
        logging_value,
    )
    return Evaluation(
        decision, settings, reward_range, len(data), logging_value, candidate_report,
        baseline_report,
        simulator, tuple(notes),
    )


def _check_observations(observations: np.ndarray, observation_dim: int) -> None:
    x = np.asarray(observations)
    if x.ndim != 2 or x.shape[1] != observation_dim:
        raise ope.OPEInputError(
            f"observations must have shape [N, {observation_dim}], got {x.shape}"
        )
    bad = ~np.all(np.isfinite(x), axis=1)
    if bad.any():
        raise ope.OPEInputError(
            f"{int(bad.sum())} of {len(x)} logged rows have observations missing or not finite "
            f"(first: row {int(np.flatnonzero(bad)[0])})"
        )


def _simulator_values(
    bandit: Optional[MovieLensBandit], observation_dim: int, num_actions: int
) -> Dict[str, Any]:
    if bandit is None:
        return {}
    if (bandit.observation_dim, bandit.num_actions) != (observation_dim, num_actions):
        raise ValueError(
            f"the simulator has observation_dim {bandit.observation_dim} and "
            f"{bandit.num_actions} actions, the policy {observation_dim} and {num_actions}"
        )
    return {
        "oracle_value": movielens_environment.oracle_value(bandit),
        "uniform_random_value": movielens_environment.uniform_random_value(bandit),
    }


def _true_value(
    bandit: Optional[MovieLensBandit], policy: SavedPolicy, samples: int, seed: int
) -> Optional[float]:
    """Exact expected reward over the simulator's users of the policy's pi."""
    if bandit is None:
        return None
    return movielens_environment.policy_value(
        bandit, policy.probabilities(bandit.observations, samples, np.random.default_rng(seed))
    )
