"""Per-arm serving over the real HTTP server: exact or sampled propensities, bad input, cold start."""

import asyncio
import shutil
from pathlib import Path
from typing import Dict

import numpy as np
import pytest

from bandit_core import (
    agent_names,
    linear_policy,
    per_arm_features,
    per_arm_linear_policy,
    saved_policy,
)
from bandit_core.bigquery.clients import BigQueryEndpoints
from bandit_core.item_catalogue import CATALOGUE_DIR, ItemCatalogue
from bandit_core.saved_policy import load_saved_policy
from bandit_core.user_table import USER_TABLE_DIR, UserTable
from serving.__main__ import SCORERS
from serving.event_spool import EventSpool
from serving.model_registry import ModelRegistry
from serving.per_arm_scorer import LinearPerArmScorer, SavedModelPerArmScorer
from serving.prediction_logger import PredictionLogger
from tests.serving.per_arm_factory import (
    AGENT_EPSILON,
    DG,
    LINTS_AGENTS,
    LINUCB_AGENTS,
    NEURAL_AGENTS,
    C,
    export,
)
from tests.serving.test_server import RecordingLogger, post, serving

USER = [0.3, -1.2, 0.8, 1.5]
CANDIDATES = [3, 17, 8, 25, 40]
LINTS_ALPHA = 30.0


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Dict[str, Path]:
    """agent -> its exported version directory, trained on first use."""
    root = tmp_path_factory.mktemp("per_arm")
    cache: Dict[str, Path] = {}

    def get(agent: str) -> Path:
        if agent not in cache:
            alpha = LINTS_ALPHA if agent in LINTS_AGENTS else 1.0
            export(agent, root / agent / "1", alpha)
            cache[agent] = root / agent / "1"
        return cache[agent]

    return get


def registry_for(path: Path) -> ModelRegistry:
    registry = ModelRegistry(str(path), SCORERS["numpy"])
    assert registry.refresh() is not None
    return registry


def ask(registry, body, logger=None, **settings):
    async def scenario():
        async with serving(registry, logger, **settings) as session:
            return await post(session, "/predict", body)

    return asyncio.run(scenario())


def repeated(count: int, candidates=CANDIDATES) -> dict:
    return {"instances": [{"global_features": USER, "candidates": candidates}] * count}


@pytest.mark.parametrize("agent", LINUCB_AGENTS)
def test_linucb_propensity_is_the_exact_epsilon_greedy_probability(agent, exported):
    registry = registry_for(exported(agent))
    scorer = registry.current.scorer
    assert isinstance(scorer, LinearPerArmScorer)
    logger = RecordingLogger()
    status, body = ask(registry, repeated(200), logger, epsilon=0.3)
    assert status == 200, body

    contexts = per_arm_features.linear_contexts(
        agent, np.array([USER]), scorer.catalogue.features_of(CANDIDATES)[None]
    )
    scores = per_arm_linear_policy.ucb_scores(
        scorer.cov_matrix, scorer.data_vector, 1.0, 1.0, contexts
    )[0]
    best = CANDIDATES[int(np.argmax(scores))]
    expected = {m: 0.3 / C + (0.7 if m == best else 0.0) for m in CANDIDATES}
    served = [p["movie_id"] for p in body["predictions"]]
    for prediction in body["predictions"]:
        assert prediction["propensity"] == pytest.approx(expected[prediction["movie_id"]], abs=1e-12)
        assert prediction["candidates"] == CANDIDATES and prediction["model_version"] == "1"
    assert served.count(best) > 100 and len(set(served)) > 1
    rows = {row["event_id"]: row for row in logger.predictions}
    for prediction in body["predictions"]:
        row = rows[prediction["event_id"]]
        assert row["candidate_movie_ids"] == CANDIDATES
        assert row["movie_id"] == CANDIDATES[row["action"]] == prediction["movie_id"]
        assert row["observation"] == USER
        assert row["policy_id"] == f"{agent}+epsilon_greedy(epsilon=0.3)"


@pytest.mark.parametrize("agent", LINTS_AGENTS)
def test_lints_propensity_is_within_binomial_error_of_a_large_sample(agent, exported):
    registry = registry_for(exported(agent))
    scorer = registry.current.scorer
    samples, requests = 1000, 400
    status, body = ask(registry, repeated(requests), max_instances=requests, thompson_samples=samples)
    assert status == 200, body

    contexts = per_arm_features.linear_contexts(
        agent, np.array([USER]), scorer.catalogue.features_of(CANDIDATES)[None]
    )
    _, reference = scorer.thompson_frequencies(contexts, 400_000, np.random.default_rng(9))
    assert reference.max() < 0.95, "the posterior must spread the choice for this test to mean much"
    index = {m: i for i, m in enumerate(CANDIDATES)}
    for prediction in body["predictions"]:
        p = reference[index[prediction["movie_id"]]]
        tolerance = 5 * np.sqrt(p * (1 - p) / samples) + 1 / samples
        assert abs(prediction["propensity"] - p) <= tolerance, (prediction, p)
    served = np.bincount([index[p["movie_id"]] for p in body["predictions"]], minlength=C) / requests
    np.testing.assert_array_less(
        np.abs(served - reference), 5 * np.sqrt(reference * (1 - reference) / requests) + 1e-9
    )


@pytest.mark.parametrize("agent", NEURAL_AGENTS)
def test_neural_propensity_is_the_exact_mixture_around_the_greedy_choice(agent, exported):
    policy_dir = exported(agent)
    registry = registry_for(policy_dir)
    scorer = registry.current.scorer
    assert isinstance(scorer, SavedModelPerArmScorer)
    status, body = ask(registry, repeated(100), epsilon=0.1, max_instances=100)
    assert status == 200, body

    features = scorer.catalogue.features_of(CANDIDATES)
    greedy = CANDIDATES[scorer.greedy_action(np.array(USER), features)]
    epsilon = 0.1 if agent == agent_names.PER_ARM_NEURAL_LINUCB else AGENT_EPSILON
    for prediction in body["predictions"]:
        expected = epsilon / C + (1 - epsilon if prediction["movie_id"] == greedy else 0.0)
        assert prediction["propensity"] == pytest.approx(expected, abs=1e-12)

    # The exported (exploring) policy follows the same mixture.
    draws = 4000
    users = np.repeat([USER], draws, axis=0)
    seen = per_arm_features.policy_arm_features(agent, users, np.repeat(features[None], draws, 0))
    loaded = load_saved_policy(str(policy_dir))
    actions = loaded.action(saved_policy.per_arm_time_step(users, seen)).action.numpy()
    frequencies = np.bincount(actions, minlength=C) / draws
    mixture = np.full(C, epsilon / C)
    mixture[CANDIDATES.index(greedy)] += 1 - epsilon
    if agent == agent_names.PER_ARM_NEURAL_LINUCB:
        mixture = np.eye(C)[CANDIDATES.index(greedy)]  # the saved policy itself is greedy
    np.testing.assert_array_less(
        np.abs(frequencies - mixture), 5 * np.sqrt(mixture * (1 - mixture) / draws) + 1e-9
    )


def test_without_candidates_the_server_samples_them_from_the_catalogue(exported):
    registry = registry_for(exported(agent_names.PER_ARM_LINUCB))
    status, body = ask(registry, {"instances": [{"global_features": USER, "user_id": 7}] * 3})
    assert status == 200, body
    catalogue_ids = set(registry.current.scorer.catalogue.movie_ids.tolist())
    for prediction in body["predictions"]:
        assert len(set(prediction["candidates"])) == C
        assert set(prediction["candidates"]) <= catalogue_ids
        assert prediction["movie_id"] in prediction["candidates"]
    assert len({tuple(p["candidates"]) for p in body["predictions"]}) > 1


def test_a_seeded_server_draws_what_rng_choice_over_the_catalogue_draws(exported):
    registry = registry_for(exported(agent_names.INTERACTION_LINUCB))
    given = {"global_features": USER, "candidates": CANDIDATES}
    status, body = ask(registry, {"instances": [{"global_features": USER}, given, {"global_features": USER}]})
    assert status == 200, body
    rng = np.random.default_rng(0)  # the seed of `serving`'s server
    movie_ids = registry.current.scorer.catalogue.movie_ids
    drawn = [rng.choice(movie_ids, size=C, replace=False).tolist() for _ in range(2)]
    assert [p["candidates"] for p in body["predictions"]] == [drawn[0], CANDIDATES, drawn[1]]


_OK = {"global_features": USER, "candidates": CANDIDATES}
BAD_PER_ARM_BODIES = [
    (b"not json", "request body: not valid JSON"),
    (b"null", "request body: expected a JSON object, got null"),
    ({"instances": {}}, "instances: expected an array, got object"),
    ({"instances": []}, "instances: expected 1 to 3 instances, got 0"),
    ({"instances": [_OK] * 4}, "instances: expected 1 to 3 instances, got 4"),
    ({"instances": [[USER]]}, "instances[0]: expected an object, got array"),
    ({"instances": [{"candidates": CANDIDATES}]}, "instances[0].global_features: required field is missing"),
    ({"instances": [{"user_id": 7}]}, "instances[0].user_id: this model version has no user table"),
    ({"instances": [{**_OK, "observation": USER}]}, "instances[0].observation: unexpected field"),
    ({"instances": [{"global_features": USER[:3]}]}, "instances[0].global_features: expected 4 numbers, got 3"),
    ({"instances": [{"global_features": [USER]}]}, "instances[0].global_features: expected 4 numbers, got 1"),
    ({"instances": [{"global_features": [[1], 2, 3, 4]}]}, "instances[0].global_features[0]: expected a number, got array"),
    ({"instances": [{"global_features": "0.3"}]}, "instances[0].global_features: expected an array"),
    ({"instances": [{**_OK, "user_id": "7"}]}, "instances[0].user_id: expected an integer"),
    ({"instances": [{**_OK, "candidates": "3,17"}]}, "instances[0].candidates: expected an array"),
    ({"instances": [{**_OK, "candidates": []}]}, "instances[0].candidates: expected 5 movie ids, got 0"),
    ({"instances": [{**_OK, "candidates": list(range(1, 7))}]}, "instances[0].candidates: expected 5 movie ids, got 6"),
    ({"instances": [{**_OK, "candidates": [3, 3, 8, 9, 10]}]}, "instances[0].candidates: movie ids [3] occur more than once"),
    ({"instances": [_OK, {**_OK, "candidates": [3, 99999, 4, 5, 6]}]}, "instances[1].candidates: unknown movie ids [99999]"),
    ({"instances": [{**_OK, "candidates": [3, -17, 0, 5, 6]}]}, "instances[0].candidates: unknown movie ids [-17, 0]"),
    ({"instances": [{**_OK, "candidates": [3, 17.5, 4, 5, 6]}]}, "instances[0].candidates[1]: expected an integer movie id, got number"),
    ({"instances": [{**_OK, "candidates": [3, None, 4, 5, 6]}]}, "instances[0].candidates[1]: expected an integer movie id, got null"),
    ({"instances": [{**_OK, "candidates": [3, 2**63, "x", 5, 6]}]}, "instances[0].candidates[1]: 9223372036854775808 is outside the INT64 range"),
    ({"instances": [{**_OK, "candidates": [3, "17", 4, 5, 6]}]}, "instances[0].candidates[1]: expected an integer movie id, got string"),
    ({"instances": [{**_OK, "candidates": [3, True, 4, 5, 6]}]}, "instances[0].candidates[1]: expected an integer movie id, got boolean"),
    ({"instances": [{**_OK, "candidates": [[3], 4, 5, 6, 7]}]}, "instances[0].candidates[0]: expected an integer movie id, got array"),
    ({"instances": [{**_OK, "candidates": [2**70, 4, 5, 6, 7]}]}, "instances[0].candidates[0]: 1180591620717411303424 is outside the INT64 range"),
    (b'{"instances": [{"global_features": [NaN, 0, 0, 0]}]}', "instances[0].global_features[0]: expected a finite number"),
    ({"instances": [_OK], "parameters": {"k": 1}}, "parameters: this model takes no parameters"),
]


def test_each_bad_per_arm_request_gets_400_naming_the_field(exported):
    registry = registry_for(exported(agent_names.PER_ARM_LINUCB))

    async def scenario():
        async with serving(registry, max_instances=3) as session:
            results = [await post(session, "/predict", body) for body, _ in BAD_PER_ARM_BODIES]
            results.append(await post(session, "/predict", {"instances": [_OK]}))
            return results

    results = asyncio.run(scenario())
    for (status, body), (_, message) in zip(results, BAD_PER_ARM_BODIES):
        assert status == 400, (message, body)
        assert body["error"].startswith(message), body
    assert results[-1][0] == 200


def test_a_neural_policy_needs_exactly_its_candidate_count(exported):
    registry = registry_for(exported(agent_names.PER_ARM_NEURAL_EPSILON_GREEDY))
    status, body = ask(registry, {"instances": [{**_OK, "candidates": CANDIDATES[:4]}]})
    assert status == 400
    assert body["error"].startswith("instances[0].candidates: expected 5 movie ids, got 4")


def test_a_new_movie_is_recommended_without_retraining(exported, tmp_path):
    """Cold start: a version with an extended catalogue serves a movie no training row saw."""
    base = tmp_path / "push"
    shutil.copytree(exported(agent_names.PER_ARM_LINUCB), base / "1")
    registry = registry_for(base)
    scorer = registry.current.scorer
    new_movie = 10_000
    status, body = ask(registry, {"instances": [{**_OK, "candidates": CANDIDATES[:4] + [new_movie]}]})
    assert status == 400 and "unknown movie ids [10000]" in body["error"]

    # Features along the model's movie weights make the new movie every user's best.
    theta, _ = linear_policy.posterior_factors(
        scorer.cov_matrix[None], scorer.data_vector[None], scorer.metadata.tikhonov_weight
    )
    movie_weights = theta[0, DG:]
    extended = scorer.catalogue.with_items([new_movie], [10 * movie_weights / np.linalg.norm(movie_weights)])
    shutil.copytree(base / "1", base / "2")
    shutil.rmtree(base / "2" / CATALOGUE_DIR)
    extended.save(str(base / "2" / CATALOGUE_DIR))
    assert registry.refresh().version == "2"

    status, body = ask(
        registry, {"instances": [{**_OK, "candidates": CANDIDATES[:4] + [new_movie]}]}, epsilon=0.0
    )
    assert status == 200, body
    assert body["predictions"][0]["movie_id"] == new_movie
    assert body["predictions"][0]["propensity"] == 1.0
    assert body["predictions"][0]["model_version"] == "2"
    assert isinstance(ItemCatalogue.load(str(base / "2" / CATALOGUE_DIR)), ItemCatalogue)


def test_a_user_named_by_id_alone_is_served_with_the_versions_features(exported, tmp_path):
    base = tmp_path / "push"
    shutil.copytree(exported(agent_names.PER_ARM_LINUCB), base / "1")
    known = np.array([[0.9, -0.2, 0.4, 0.1], [-0.5, 0.3, 0.0, 0.8]])
    UserTable(np.array([7, 12]), known).save(str(base / "1" / USER_TABLE_DIR))
    registry = registry_for(base)
    logger = RecordingLogger()
    instances = [
        {"user_id": 12, "candidates": CANDIDATES},
        {"user_id": 7, "global_features": USER, "candidates": CANDIDATES},
        {"user_id": 7},
    ]
    status, body = ask(registry, {"instances": instances}, logger=logger, epsilon=0.0)
    assert status == 200, body
    logged = [row["observation"] for row in logger.predictions]
    assert np.allclose(logged, [known[1], USER, known[0]])
    by_features = ask(registry, {"instances": [{"global_features": known[1].tolist(), "candidates": CANDIDATES}]}, epsilon=0.0)
    assert by_features[1]["predictions"][0]["movie_id"] == body["predictions"][0]["movie_id"]

    status, body = ask(registry, {"instances": [{"user_id": 7}, {"user_id": 13}]})
    assert status == 400
    assert body["error"].startswith("instances[1].user_id: unknown user ids [13]"), body
    assert "send global_features" in body["error"]


def test_per_arm_rows_pass_the_real_logger_and_its_spool(exported, tmp_path):
    registry = registry_for(exported(agent_names.PER_ARM_LINUCB))
    spool = EventSpool(tmp_path / "spool.sqlite")
    logger = PredictionLogger(
        spool, BigQueryEndpoints("local-proj", "http://127.0.0.1:9"), "ds", "predictions", "rewards"
    )
    status, body = ask(registry, {"instances": [{**_OK, "user_id": 3}, {"global_features": USER}]}, logger)
    assert status == 200, body
    payloads = {record.event_id: record.payload for record in spool.peek(10, "predictions")}
    for prediction in body["predictions"]:
        payload = payloads[prediction["event_id"]]
        assert payload["candidate_movie_ids"] == prediction["candidates"]
        assert payload["movie_id"] == prediction["movie_id"]
    spool.close()
