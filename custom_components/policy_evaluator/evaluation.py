"""Evaluates a candidate (and the baseline) policy and decides the blessing.

Independent of TFX so the executor, the agent report and the benchmarks run
the same evaluation: `evaluate` runs the two passes of `evaluation_passes` on
rows held in memory, the executor runs them as a Beam pipeline
(`beam_evaluation`), and `conclude` turns either's sums into the same
`Evaluation`. Bad evaluation data never raises here: it becomes a refusal
to bless whose reason names the problem.
"""

import dataclasses
import math
from typing import Any, Callable, Dict, List, Optional, Tuple

import numpy as np

from bandit_core.logged_examples import LoggedColumns
from custom_components.policy_evaluator import blessing, ope, ope_sums
from custom_components.policy_evaluator.classic_passes import ClassicPasses
from custom_components.policy_evaluator.evaluation_passes import FirstPass, run_in_memory
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy
from simulation import movielens_environment
from simulation.movielens_environment import MovieLensBandit

# Runs both passes for a `Passes` (in memory, or as a Beam pipeline) and returns their sums.
Run = Callable[[Any], Tuple[FirstPass, Optional[ope_sums.Sums]]]


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


def conclude(
    first: FirstPass,
    second: Optional[ope_sums.Sums],
    policies: Dict[str, Any],
    true_values: Dict[str, Optional[float]],
    settings: EvaluatorSettings,
    reward_range: Optional[Tuple[float, float]],
    simulator: Dict[str, Any],
    notes: List[str],
) -> Evaluation:
    """The evaluation both passes' sums support: estimates and the blessing, or a refusal.

    Args:
      first: pass 1's sums over every logged row.
      second: pass 2's sums, None when pass 1 found the data unusable.
      policies: the scored policies by role ("candidate", "baseline"), each
        with `policy_dir` and `metadata.agent`.
      true_values: each role's true value, when the simulator knows it.
    """
    if first.rows == 0:
        return refused(
            "the evaluation data could not be read: the split holds no examples",
            settings, reward_range, 0, simulator, notes,
        )
    if first.checks.found or second is None:
        return refused(
            f"the evaluation data is invalid: {first.checks.message()}",
            settings, reward_range, first.rows, simulator, notes,
        )
    reports = {
        role: PolicyReport(
            policies[role].policy_dir,
            policies[role].metadata.agent,
            second.estimates(role, settings.confidence),
            true_values.get(role),
        )
        for role in policies
        if f"{role}/{ope_sums.TERMS[0]}" in second.names
    }
    logging_value = first.reward_sum / first.rows
    baseline = reports.get("baseline")
    decision = blessing.decide(
        settings.blessing_rule,
        reports["candidate"].estimates,
        baseline.estimates if baseline else None,
        logging_value,
    )
    return Evaluation(
        decision, settings, reward_range, first.rows, logging_value, reports["candidate"],
        baseline, simulator, tuple(notes),
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
    """Estimates both policies' values on the same rows, held in memory, and applies the rule.

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

    def run(passes: ClassicPasses) -> Tuple[FirstPass, Optional[ope_sums.Sums]]:
        columns = read_columns(passes.observation_dim)
        _check_observation_shape(columns.observations, passes.observation_dim)
        return run_in_memory(passes, columns)

    return evaluate_classic(
        run, candidate, baseline, settings, reward_range, bandit, simulator_note
    )


def evaluate_classic(
    run: Run,
    candidate: SavedPolicy,
    baseline: Optional[SavedPolicy],
    settings: EvaluatorSettings,
    reward_range: Optional[Tuple[float, float]] = None,
    bandit: Optional[MovieLensBandit] = None,
    simulator_note: str = "",
) -> Evaluation:
    """`evaluate` with the passes run by `run` (in memory, or the Beam pipeline).

    `run(ClassicPasses)` returns both passes' sums; a ValueError it raises
    (no examples, an unreadable split) becomes a refusal.
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
    passes = ClassicPasses(candidate, baseline, settings, reward_range)
    try:
        first, second = run(passes)
    except ope.OPEInputError as e:
        return refused(
            f"the evaluation data is invalid: {e}", settings, reward_range, 0, simulator, notes
        )
    except ValueError as e:
        return refused(
            f"the evaluation data could not be read: {e}",
            settings, reward_range, 0, simulator, notes,
        )
    true_values = {}
    if second is not None:
        true_values = {
            role: _true_value(bandit, policy, settings.policy_samples, settings.seed)
            for role, policy in passes.policies.items()
        }
    return conclude(
        first, second, passes.policies, true_values, settings, reward_range, simulator, notes
    )


def _check_observation_shape(observations: np.ndarray, observation_dim: int) -> None:
    x = np.asarray(observations)
    if x.ndim != 2 or x.shape[1] != observation_dim:
        raise ope.OPEInputError(
            f"observations must have shape [N, {observation_dim}], got {x.shape}"
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
