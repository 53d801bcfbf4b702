"""The per-arm fast path equals the reference math, and `savedmodel` serves per-arm LinUCB too."""

from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from bandit_core import agent_names, per_arm_features, per_arm_linear_policy
from bandit_core.item_catalogue import UnknownItemsError
from serving.__main__ import SCORERS
from serving.model_registry import ModelRegistry
from serving.per_arm_scorer import LinearPerArmScorer, SavedModelPerArmScorer
from serving.settings import ServingSettings
from tests.serving.per_arm_factory import DG, LINTS_AGENTS, LINUCB_AGENTS, MOVIES, C, export
from tests.serving.test_per_arm_server import CANDIDATES, USER, ask

LINEAR_AGENTS = LINUCB_AGENTS + LINTS_AGENTS


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Dict[str, Path]:
    """(agent, alpha) -> its exported version directory, trained on first use."""
    root = tmp_path_factory.mktemp("per_arm_fast")
    cache: Dict[tuple, Path] = {}

    def get(agent: str, alpha: float = 1.0) -> Path:
        if (agent, alpha) not in cache:
            cache[agent, alpha] = root / f"{agent}-{alpha}" / "1"
            export(agent, cache[agent, alpha], alpha)
        return cache[agent, alpha]

    return get


def registry_for(path: Path, scorer: str) -> ModelRegistry:
    registry = ModelRegistry(str(path), SCORERS[scorer])
    assert registry.refresh() is not None
    return registry


def random_rounds(scorer, count: int, seed: int = 0):
    """(users [N, dg], candidates' features [N, C, da]) with distinct catalogue movies."""
    rng = np.random.default_rng(seed)
    users = rng.normal(0.5, 1.0, size=(count, DG))
    ids = [rng.choice(scorer.catalogue.movie_ids, C, replace=False) for _ in range(count)]
    return users, np.stack([scorer.catalogue.features_of(row) for row in ids])


@pytest.mark.parametrize("agent", LINEAR_AGENTS)
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_fast_means_and_stds_equal_the_reference_math(agent, alpha, exported):
    scorer = registry_for(exported(agent, alpha), "numpy").current.scorer
    assert isinstance(scorer, LinearPerArmScorer)
    users, arms = random_rounds(scorer, 300)
    contexts = per_arm_features.linear_contexts(agent, users, arms)
    means, stds = per_arm_linear_policy.mean_and_std(
        scorer.cov_matrix, scorer.data_vector, scorer.metadata.tikhonov_weight, contexts
    )
    for n in range(len(users)):
        fast_means, fast_stds = scorer.mean_and_std(users[n], arms[n])
        np.testing.assert_allclose(fast_means, means[n], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(fast_stds, stds[n], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(scorer.means(users[n], arms[n]), means[n], rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("agent", LINUCB_AGENTS)
@pytest.mark.parametrize("alpha", [1.0, 0.0])
def test_fast_linucb_serves_the_reference_argmax(agent, alpha, exported):
    scorer = registry_for(exported(agent, alpha), "numpy").current.scorer
    users, arms = random_rounds(scorer, 300, seed=1)
    contexts = per_arm_features.linear_contexts(agent, users, arms)
    reference = per_arm_linear_policy.ucb_scores(
        scorer.cov_matrix, scorer.data_vector, scorer.metadata.tikhonov_weight, alpha, contexts
    )
    served = [
        scorer.choose(users[n], arms[n], _greedy_settings(), np.random.default_rng(n))
        for n in range(len(users))
    ]
    assert [action for action, _ in served] == np.argmax(reference, axis=1).tolist()
    assert all(propensity == 1.0 for _, propensity in served)


def test_candidate_features_equal_the_catalogues_and_name_unknown_ids(exported):
    scorer = registry_for(exported(agent_names.INTERACTION_LINUCB), "numpy").current.scorer
    ids = [MOVIES, 1, 17, 3]
    np.testing.assert_array_equal(
        scorer.candidate_features(ids), scorer.catalogue.features_of(ids).astype(np.float64)
    )
    with pytest.raises(UnknownItemsError) as error:
        scorer.candidate_features([3, MOVIES + 1, 0, 17, -5])
    assert error.value.ids == [MOVIES + 1, 0, -5]


@pytest.mark.parametrize("count", [1, C, MOVIES])
def test_drawn_candidates_are_rng_choices_ids_with_the_catalogues_features(count, exported):
    scorer = registry_for(exported(agent_names.INTERACTION_LINUCB), "numpy").current.scorer
    rng, reference = np.random.default_rng(4), np.random.default_rng(4)
    for _ in range(3):
        ids, features = scorer.draw_candidates(count, rng)
        expected = reference.choice(scorer.catalogue.movie_ids, size=count, replace=False)
        assert ids == expected.tolist() and all(type(movie_id) is int for movie_id in ids)
        np.testing.assert_array_equal(features, scorer.candidate_features(ids))
    assert rng.random() == reference.random()  # both generators used alike


@pytest.mark.parametrize("agent", LINUCB_AGENTS)
def test_savedmodel_scorer_serves_per_arm_linucb_through_its_savedmodel(agent, exported):
    policy_dir = exported(agent)
    fast = registry_for(policy_dir, "numpy").current.scorer
    registry = registry_for(policy_dir, "savedmodel")
    reference = registry.current.scorer
    assert isinstance(reference, SavedModelPerArmScorer)
    assert reference.policy_id(_greedy_settings()) == fast.policy_id(_greedy_settings())
    users, arms = random_rounds(fast, 40, seed=2)
    for user, round_arms in zip(users, arms):
        means, stds = fast.mean_and_std(user, round_arms)
        assert reference.greedy_action(user, round_arms) == np.argmax(means + stds)

    instance = {"global_features": USER, "candidates": CANDIDATES}
    status, body = ask(registry, {"instances": [instance] * 50}, epsilon=0.3)
    assert status == 200, body
    features = fast.candidate_features(CANDIDATES)
    best = CANDIDATES[reference.greedy_action(np.array(USER), features)]
    for prediction in body["predictions"]:
        expected = 0.3 / C + (0.7 if prediction["movie_id"] == best else 0.0)
        assert prediction["propensity"] == pytest.approx(expected, abs=1e-12)

    status, body = ask(registry, {"instances": [{**instance, "candidates": CANDIDATES[:4]}]})
    assert status == 400
    assert body["error"].startswith(f"instances[0].candidates: expected {C} movie ids, got 4")


@pytest.mark.parametrize("agent", LINTS_AGENTS)
def test_savedmodel_scorer_refuses_a_stochastic_per_arm_policy(agent, exported):
    registry = ModelRegistry(str(exported(agent)), SCORERS["savedmodel"])
    with pytest.raises(ValueError, match="stochastic policy.*serve it with the numpy scorer"):
        SCORERS["savedmodel"](str(exported(agent)))
    assert registry.refresh() is None, "a version that cannot be loaded is not served"


def _greedy_settings() -> ServingSettings:
    return ServingSettings(epsilon=0.0)
