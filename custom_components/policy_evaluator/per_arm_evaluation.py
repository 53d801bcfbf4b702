"""Evaluates a per-arm candidate (and the baseline) over logged candidate sets.

The per-arm counterpart of `evaluation.evaluate`, with the same result type
and blessing rule: each policy's pi over every logged row's candidates (see
`per_arm_target_policy`), the cross-fitted reward model of `candidate_sets`,
IPS/SNIPS/DM/DR with bootstrap intervals, and, when the simulator is
available, each policy's true value on the same users and candidate sets.
Bad evaluation data never raises here: it becomes a refusal whose reason
names the problem.
"""

from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np

from bandit_core.item_catalogue import UnknownItemsError
from bandit_core.logged_examples import PerArmColumns
from custom_components.policy_evaluator import blessing, candidate_sets, ope
from custom_components.policy_evaluator.evaluation import (
    Evaluation,
    PolicyReport,
    check_inputs,
    refused,
)
from custom_components.policy_evaluator.per_arm_target_policy import PerArmSavedPolicy
from custom_components.policy_evaluator.settings import EvaluatorSettings
from simulation import movielens_per_arm
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
    """Estimates both policies' values on the same logged candidate sets and applies the rule.

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

    def refusal(reason: str, rows: int = 0) -> Evaluation:
        return refused(reason, settings, reward_range, rows, simulator, notes)

    try:
        columns = read_columns()
    except ValueError as e:
        return refusal(f"the evaluation data could not be read: {e}")
    try:
        data = ope.validate_logged_data(
            columns.slots,
            columns.rewards,
            columns.propensities,
            metadata.num_candidates,
            reward_range,
        )
        slots = candidate_sets.chosen_slots(columns.candidate_ids, columns.movie_ids)
        if not np.array_equal(slots, data.actions):
            wrong = np.flatnonzero(slots != data.actions)
            raise ope.OPEInputError(
                f"{len(wrong)} rows log a position that does not hold their served movie "
                f"(first: row {int(wrong[0])})"
            )
        if not np.all(np.isfinite(columns.global_features)):
            raise ope.OPEInputError("some rows have user features that are not finite")
        arms = candidate.catalogue.features_of(columns.candidate_ids.ravel()).reshape(
            columns.candidate_ids.shape + (-1,)
        )
    except ope.OPEInputError as e:
        return refusal(f"the evaluation data is invalid: {e}", len(columns))
    except UnknownItemsError as e:
        return refusal(
            f"{len(e.ids)} candidate movies are not in the candidate policy's catalogue "
            f"(first: {e.ids[0]})",
            len(columns),
        )
    logging_value = float(data.rewards.mean())
    predictions = candidate_sets.cross_fitted_candidate_predictions(
        columns.global_features,
        arms,
        data.actions,
        data.rewards,
        settings.reward_model_folds,
        settings.ridge,
        settings.seed,
    )
    expected = _expected_rewards(bandit, columns, simulator)

    def report(policy: PerArmSavedPolicy) -> PolicyReport:
        pi = policy.probabilities(
            columns.global_features,
            columns.candidate_ids,
            settings.policy_samples,
            np.random.default_rng(settings.seed),
        )
        estimates = ope.off_policy_estimates(
            pi, data, predictions, settings.bootstrap_samples, settings.confidence, settings.seed
        )
        true_value = None if expected is None else float(np.mean(np.sum(pi * expected, axis=1)))
        return PolicyReport(policy.policy_dir, policy.metadata.agent, estimates, true_value)

    candidate_report = report(candidate)
    try:
        baseline_report = report(baseline) if baseline is not None else None
    except UnknownItemsError as e:
        notes.append(
            f"baseline {baseline.policy_dir} lacks {len(e.ids)} of the logged candidate movies "
            "in its catalogue, so the candidate is compared with the logging policy"
        )
        baseline_report = None
    decision = blessing.decide(
        settings.blessing_rule,
        candidate_report.estimates,
        baseline_report.estimates if baseline_report else None,
        logging_value,
    )
    return Evaluation(
        decision, settings, reward_range, len(data), logging_value, candidate_report,
        baseline_report, simulator, tuple(notes),
    )


def _expected_rewards(
    bandit: Optional[MovieLensPerArmBandit], columns: PerArmColumns, simulator: Dict[str, Any]
) -> Optional[np.ndarray]:
    """[N, C] the simulator's expected reward of every logged candidate, when it knows them all.

    Fills `simulator` with the oracle's and uniform random's values on these
    rows, or with why there are none.
    """
    if bandit is None:
        return None
    known = (
        np.all((columns.user_ids >= 1) & (columns.user_ids <= bandit.num_users))
        and np.all((columns.candidate_ids >= 1) & (columns.candidate_ids <= bandit.num_movies))
    )
    if not known:
        simulator["unavailable"] = (
            "some rows name a user or movie the simulator does not know (no user_id, or a "
            "movie added after MovieLens), so true values are not computed"
        )
        return None
    simulator["oracle_value"] = movielens_per_arm.oracle_value(
        bandit, columns.user_ids, columns.candidate_ids
    )
    simulator["uniform_random_value"] = movielens_per_arm.uniform_random_value(
        bandit, columns.user_ids, columns.candidate_ids
    )
    return movielens_per_arm.expected_rewards(bandit, columns.user_ids, columns.candidate_ids)
