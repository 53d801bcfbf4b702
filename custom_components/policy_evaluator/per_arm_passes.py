"""The per-arm problem's two passes (see `evaluation_passes`): logged candidate sets."""

from typing import Any, Dict, List, Optional, Tuple

import numpy as np

from bandit_core import logged_examples
from bandit_core.item_catalogue import ItemCatalogue, UnknownItemsError
from bandit_core.logged_examples import PerArmColumns
from custom_components.policy_evaluator import candidate_sets, ope, ope_sums, row_hashing
from custom_components.policy_evaluator.evaluation_passes import FirstPass, Fitted
from custom_components.policy_evaluator.per_arm_target_policy import PerArmSavedPolicy
from custom_components.policy_evaluator.problem_counts import Problem, ProblemCounts, problem
from custom_components.policy_evaluator.settings import EvaluatorSettings
from simulation import movielens_per_arm
from simulation.movielens_per_arm import MovieLensPerArmBandit

BASELINE_CATALOGUE = "candidate movies not in the baseline's catalogue"
SIMULATOR_UNKNOWN = "a user or movie the simulator does not know"
ORACLE_VALUE = "simulator/oracle_value"
UNIFORM_RANDOM_VALUE = "simulator/uniform_random_value"


def true_value_name(role: str) -> str:
    return f"{role}/true_value"


def unknown_movies(what: str, catalogue: ItemCatalogue, candidate_ids: np.ndarray) -> Problem:
    """The rows offering a movie `catalogue` lacks, with the range of the unknown ids."""
    try:
        catalogue.features_of(candidate_ids.ravel())
    except UnknownItemsError as e:
        rows = np.isin(candidate_ids, e.ids).any(axis=1)
        return Problem(what, int(rows.sum()), float(min(e.ids)), float(max(e.ids)))
    return Problem(what)


class PerArmPasses:
    """Scores `candidate` (and `baseline`) on batches of logged candidate sets.

    Picklable before first use: each Beam worker loads the policies and
    catalogues once, on its first batch. `bandit`, when given, values each
    policy's choices over the logged users and candidates.
    """

    def __init__(
        self,
        candidate: PerArmSavedPolicy,
        baseline: Optional[PerArmSavedPolicy],
        settings: EvaluatorSettings,
        reward_range: Optional[Tuple[float, float]],
        bandit: Optional[MovieLensPerArmBandit],
    ):
        self.policies = {"candidate": candidate}
        if baseline is not None:
            self.policies["baseline"] = baseline
        self.settings = settings
        self.reward_range = reward_range
        self.bandit = bandit
        self.metadata = candidate.metadata

    def parse_spec(self) -> Dict[str, Any]:
        metadata = self.metadata
        return logged_examples.per_arm_spec(
            metadata.global_dim, metadata.arm_dim, metadata.num_candidates
        )

    def columns(self, parsed: Dict[str, np.ndarray]) -> PerArmColumns:
        return logged_examples.per_arm_columns(parsed)

    def key_columns(self, columns: PerArmColumns) -> List[np.ndarray]:
        return [
            columns.user_ids, columns.global_features, columns.slots, columns.rewards,
            columns.propensities, columns.candidate_ids, columns.movie_ids,
        ]

    def first(self, columns: PerArmColumns, keys: np.ndarray) -> FirstPass:
        candidate = self.policies["candidate"]
        problems = (
            ope.logged_row_problems(
                columns.slots,
                columns.rewards,
                columns.propensities,
                self.metadata.num_candidates,
                self.reward_range,
            )
            + candidate_sets.candidate_set_problems(
                columns.candidate_ids, columns.movie_ids, columns.slots
            )
            + (
                problem(
                    "user features that are not finite",
                    ~np.all(np.isfinite(columns.global_features), axis=1),
                ),
                unknown_movies(
                    "candidate movies not in the candidate policy's catalogue",
                    candidate.catalogue,
                    columns.candidate_ids,
                ),
            )
        )
        checks = ProblemCounts(len(columns), problems)
        caveats = ProblemCounts(len(columns), self._caveats(columns))
        rows = np.ones(len(columns), dtype=bool) if not checks.found else np.zeros(0, dtype=int)
        folds = row_hashing.folds(keys, self.settings.seed, self.settings.reward_model_folds)
        statistics = candidate_sets.candidate_fold_statistics(
            columns.global_features[rows],
            candidate.catalogue.features_of(columns.movie_ids[rows]),
            columns.rewards[rows],
            folds[rows],
            self.settings.reward_model_folds,
        )
        return FirstPass(
            checks, caveats, float(np.sum(columns.rewards[rows], dtype=np.float64)), statistics
        )

    def _caveats(self, columns: PerArmColumns) -> Tuple[Problem, ...]:
        caveats = []
        if "baseline" in self.policies:
            caveats.append(
                unknown_movies(
                    BASELINE_CATALOGUE,
                    self.policies["baseline"].catalogue,
                    columns.candidate_ids,
                )
            )
        if self.bandit is not None:
            ids = columns.candidate_ids
            unknown = (
                (columns.user_ids < 1)
                | (columns.user_ids > self.bandit.num_users)
                | np.any((ids < 1) | (ids > self.bandit.num_movies), axis=1)
            )
            caveats.append(problem(SIMULATOR_UNKNOWN, unknown))
        return tuple(caveats)

    def fitted(self, first: FirstPass) -> Optional[Fitted]:
        if first.checks.found:
            return None
        caveats = {p.what: p.count for p in first.caveats.problems}
        roles = tuple(
            role for role in self.policies if role == "candidate" or not caveats[BASELINE_CATALOGUE]
        )
        return Fitted(
            candidate_sets.candidate_fold_coefficients(first.reward_model, self.settings.ridge),
            roles,
            with_simulator=self.bandit is not None and not caveats[SIMULATOR_UNKNOWN],
        )

    def second(
        self,
        columns: PerArmColumns,
        keys: np.ndarray,
        multiplicities: np.ndarray,
        fitted: Fitted,
    ) -> ope_sums.Sums:
        settings = self.settings
        ids = columns.candidate_ids
        catalogue = self.policies["candidate"].catalogue
        arms = catalogue.features_of(ids.ravel()).reshape(ids.shape + (-1,))
        folds = row_hashing.folds(keys, settings.seed, settings.reward_model_folds)
        q = candidate_sets.candidate_predictions(
            columns.global_features, arms, folds, fitted.coefficients
        )
        data = ope.LoggedData(
            columns.slots.astype(np.int64),
            columns.rewards.astype(np.float64),
            columns.propensities.astype(np.float64),
            self.metadata.num_candidates,
        )
        expected = None
        point_only = {}
        if fitted.with_simulator:
            expected = movielens_per_arm.expected_rewards(self.bandit, columns.user_ids, ids)
            point_only[ORACLE_VALUE] = expected.max(axis=1)
            point_only[UNIFORM_RANDOM_VALUE] = expected.mean(axis=1)
        replicated = {}
        for role in fitted.roles:
            pi = self.policies[role].probabilities(
                columns.global_features,
                ids,
                settings.policy_samples,
                np.random.default_rng(settings.seed),
            )
            terms = ope.per_row_terms(pi, data, q)
            replicated.update(zip(ope_sums.term_names(role), (terms[t] for t in ope_sums.TERMS)))
            if expected is not None:
                point_only[true_value_name(role)] = np.sum(pi * expected, axis=1)
        return ope_sums.batch_sums(
            replicated, point_only, keys, multiplicities, settings.seed, settings.bootstrap_samples
        )
