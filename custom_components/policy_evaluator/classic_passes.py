"""The classic problem's two passes (see `evaluation_passes`): logged contexts and K actions."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bandit_core import logged_examples
from bandit_core.logged_examples import LoggedColumns
from custom_components.policy_evaluator import ope, ope_sums, reward_model, row_hashing
from custom_components.policy_evaluator.evaluation_passes import FirstPass, Fitted
from custom_components.policy_evaluator.problem_counts import ProblemCounts, problem
from custom_components.policy_evaluator.settings import EvaluatorSettings
from custom_components.policy_evaluator.target_policy import SavedPolicy


class ClassicPasses:
    """Scores `candidate` (and `baseline`) on batches of classic logged rows.

    Picklable before first use: each Beam worker loads the SavedModels once,
    on its first batch.
    """

    def __init__(
        self,
        candidate: SavedPolicy,
        baseline: Optional[SavedPolicy],
        settings: EvaluatorSettings,
        reward_range: Optional[Tuple[float, float]],
    ):
        self.policies = {"candidate": candidate}
        if baseline is not None:
            self.policies["baseline"] = baseline
        self.settings = settings
        self.reward_range = reward_range
        self.num_actions = candidate.metadata.num_actions
        self.observation_dim = candidate.metadata.observation_dim

    def parse_spec(self) -> Dict[str, Any]:
        """The split's parse spec; a missing column reads as NaN or -1, which pass 1 counts."""
        return logged_examples.classic_spec(self.observation_dim, allow_missing=True)

    def columns(self, parsed: Dict[str, np.ndarray]) -> LoggedColumns:
        return logged_examples.classic_columns(parsed)

    def key_columns(self, columns: LoggedColumns) -> List[np.ndarray]:
        return [columns.observations, columns.actions, columns.rewards, columns.propensities]

    def first(self, columns: LoggedColumns, keys: np.ndarray) -> FirstPass:
        problems = ope.logged_row_problems(
            columns.actions,
            columns.rewards,
            columns.propensities,
            self.num_actions,
            self.reward_range,
        ) + (
            problem(
                "observations missing or not finite",
                ~np.all(np.isfinite(columns.observations), axis=1),
            ),
        )
        checks = ProblemCounts(len(columns), problems)
        folds = row_hashing.folds(keys, self.settings.seed, self.settings.reward_model_folds)
        if checks.found:
            folds = np.full(0, 0)
            columns = _no_rows(columns)
        statistics = reward_model.fold_statistics(
            columns.observations,
            columns.actions,
            columns.rewards,
            self.num_actions,
            folds,
            self.settings.reward_model_folds,
        )
        return FirstPass(
            checks,
            ProblemCounts(len(keys), ()),
            float(np.sum(columns.rewards, dtype=np.float64)),
            statistics,
        )

    def fitted(self, first: FirstPass) -> Optional[Fitted]:
        if first.checks.found:
            return None
        return Fitted(
            reward_model.fold_coefficients(first.reward_model, self.settings.ridge),
            tuple(self.policies),
            with_simulator=False,
        )

    def second(
        self,
        columns: LoggedColumns,
        keys: np.ndarray,
        multiplicities: np.ndarray,
        fitted: Fitted,
    ) -> ope_sums.Sums:
        settings = self.settings
        data = ope.LoggedData(
            columns.actions.astype(np.int64),
            columns.rewards.astype(np.float64),
            columns.propensities.astype(np.float64),
            self.num_actions,
        )
        folds = row_hashing.folds(keys, settings.seed, settings.reward_model_folds)
        q = reward_model.predictions(columns.observations, folds, fitted.coefficients)
        replicated = {}
        for role in fitted.roles:
            pi = self.policies[role].probabilities(
                columns.observations, settings.policy_samples, np.random.default_rng(settings.seed)
            )
            terms = ope.per_row_terms(pi, data, q)
            replicated.update(zip(ope_sums.term_names(role), (terms[t] for t in ope_sums.TERMS)))
        return ope_sums.batch_sums(
            replicated, {}, keys, multiplicities, settings.seed, settings.bootstrap_samples
        )


def _no_rows(columns: LoggedColumns) -> LoggedColumns:
    """The columns of no rows: a batch with a problem adds nothing to the reward model."""
    return LoggedColumns(
        columns.observations[:0], columns.actions[:0], columns.rewards[:0], columns.propensities[:0]
    )
