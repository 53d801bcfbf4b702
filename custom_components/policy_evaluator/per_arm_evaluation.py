"""Evaluates a per-arm candidate (and the baseline) over logged candidate sets.

The per-arm counterpart of `evaluation.evaluate`, with the same result type
and blessing rule: each policy's pi over every logged row's candidates (see
`per_arm_target_policy`), the cross-fitted reward model of `candidate_sets`,
IPS/SNIPS/DM/DR with Poisson-bootstrap intervals, and, when the simulator is
available, each policy's true value on the same users and candidate sets,
all as the sums of `per_arm_passes` (in memory here, or in Beam).
Bad evaluation data never raises here: it becomes a refusal whose reason
names the problem.
"""

from typing import Any, Callable, Dict, Optional, Tuple

from bandit_core.logged_examples import PerArmColumns
from custom_components.policy_evaluator.evaluation import (
    Evaluation,
    Run,
    check_inputs,
    conclude,
    refused,
)
from custom_components.policy_evaluator.evaluation_passes import run_in_memory
from custom_components.policy_evaluator.per_arm_passes import (
    BASELINE_CATALOGUE,
    ORACLE_VALUE,
    UNIFORM_RANDOM_VALUE,
    PerArmPasses,
    true_value_name,
)
from custom_components.policy_evaluator.per_arm_target_policy import PerArmSavedPolicy
from custom_components.policy_evaluator.settings import EvaluatorSettings
from simulation.movielens_per_arm import MovieLensPerArmBandit


def evaluate_per_arm(
    read_columns: Callable[[], PerArmColumns],
    candidate: PerArmSavedPolicy,
    baseline: Optional[PerArmSavedPolicy],
    settings: EvaluatorSettings,
    reward_range: Optional[Tuple[float, float]] = None,
    bandit: Optional[MovieLensPerArmBandit] = None,
    simulator_note: str = "",
) -> Evaluation:
    """Estimates both policies' values on the same logged candidate sets, held in memory.

    Args:
      read_columns: reads the evaluation rows; may raise ValueError (e.g. an
        empty split), which becomes a refusal.
      candidate: the per-arm policy asking to be blessed.
      baseline: the latest blessed per-arm policy, or None.
      settings: the estimation settings and the blessing rule.
      reward_range: (min, max) a logged reward must lie in, or None.
      bandit: the per-arm simulator, for true values; None when unavailable.
      simulator_note: why the simulator is unavailable, when it is.
    """
    return evaluate_per_arm_passes(
        lambda passes: run_in_memory(passes, read_columns()),
        candidate, baseline, settings, reward_range, bandit, simulator_note,
    )


def evaluate_per_arm_passes(
    run: Run,
    candidate: PerArmSavedPolicy,
    baseline: Optional[PerArmSavedPolicy],
    settings: EvaluatorSettings,
    reward_range: Optional[Tuple[float, float]] = None,
    bandit: Optional[MovieLensPerArmBandit] = None,
    simulator_note: str = "",
) -> Evaluation:
    """`evaluate_per_arm` with the passes run by `run` (in memory, or the Beam pipeline).

    `run(PerArmPasses)` returns both passes' sums; a ValueError it raises
    (no examples, an unreadable split) becomes a refusal.
    """
    check_inputs(settings, reward_range)
    metadata = candidate.metadata
    notes = []
    if baseline is not None and (
        baseline.metadata.global_dim != metadata.global_dim
        or baseline.metadata.num_candidates != metadata.num_candidates
    ):
        notes.append(
            f"baseline {baseline.policy_dir} takes {baseline.metadata.global_dim} user features "
            f"and {baseline.metadata.num_candidates} candidates, the candidate "
            f"{metadata.global_dim} and {metadata.num_candidates}; it cannot act on these rows, "
            "so the candidate is compared with the logging policy"
        )
        baseline = None
    simulator: Dict[str, Any] = {}
    if bandit is None:
        simulator["unavailable"] = simulator_note or "no simulator configured"
    passes = PerArmPasses(candidate, baseline, settings, reward_range, bandit)
    try:
        first, second = run(passes)
    except ValueError as e:
        return refused(
            f"the evaluation data could not be read: {e}",
            settings, reward_range, 0, simulator, notes,
        )
    caveats = {p.what: p for p in first.caveats.problems}
    if second is not None and BASELINE_CATALOGUE in caveats and caveats[BASELINE_CATALOGUE].count:
        notes.append(
            f"baseline {baseline.policy_dir} lacks some of the logged candidate movies in its "
            f"catalogue ({caveats[BASELINE_CATALOGUE].describe(first.rows)}), so the candidate "
            "is compared with the logging policy"
        )
    true_values = {}
    if second is not None and ORACLE_VALUE in second.names:
        rows = first.rows
        simulator["oracle_value"] = second.value(ORACLE_VALUE) / rows
        simulator["uniform_random_value"] = second.value(UNIFORM_RANDOM_VALUE) / rows
        true_values = {
            role: second.value(true_value_name(role)) / rows
            for role in passes.policies
            if true_value_name(role) in second.names
        }
    elif bandit is not None and second is not None:
        simulator["unavailable"] = (
            "some rows name a user or movie the simulator does not know (no user_id, or a "
            "movie added after MovieLens), so true values are not computed"
        )
    return conclude(
        first, second, passes.policies, true_values, settings, reward_range, simulator, notes
    )
