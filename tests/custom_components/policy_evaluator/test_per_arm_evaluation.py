"""Per-arm evaluation: a saved policy's pi over logged candidate sets, true values, refusals.

Policies are trained on a tiny per-arm MovieLens-like bandit (a synthetic
ratings matrix) and exported as BanditTrainer exports them. Expected values
come from the exported SavedModels' own actions and the simulator's pure
functions, not from the code under test.
"""

import dataclasses
import os
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
import tensorflow as tf

from bandit_core import agent_names
from bandit_core import columns as logged_columns
from bandit_core.item_catalogue import ItemCatalogue, UnknownItemsError
from bandit_core.logged_examples import PerArmColumns, read_per_arm_split
from bandit_core.policy_metadata import GREEDY_POLICY_DIR
from bandit_core.saved_policy import load_saved_policy, per_arm_policy_actions
from custom_components.bandit_trainer.per_arm_export import save_per_arm_policy
from custom_components.bandit_trainer.per_arm_training import train_per_arm_policy
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.movielens_generator.per_arm_logged_data import (
    PerArmLoggedBatch,
    simulate_uniform_per_arm_logging,
)
from custom_components.policy_evaluator import beam_evaluation
from custom_components.policy_evaluator.per_arm_evaluation import (
    evaluate_per_arm,
    evaluate_per_arm_passes,
)
from custom_components.policy_evaluator.per_arm_target_policy import PerArmSavedPolicy
from custom_components.policy_evaluator.settings import EvaluatorSettings
from simulation import movielens_per_arm

USERS, MOVIES, RANK_K, C = 40, 30, 3, 4
EPSILON = 0.3
SETTINGS = EvaluatorSettings(bootstrap_samples=20, reward_model_folds=2, policy_samples=1)


@pytest.fixture(scope="module")
def bandit() -> movielens_per_arm.MovieLensPerArmBandit:
    ratings = np.random.default_rng(0).integers(0, 6, size=(USERS, MOVIES)).astype(float)
    return movielens_per_arm.build_per_arm_bandit(ratings, rank_k=RANK_K)


@pytest.fixture(scope="module")
def catalogue(bandit) -> ItemCatalogue:
    ids = np.arange(1, MOVIES + 1)
    return ItemCatalogue(ids, movielens_per_arm.arm_features(bandit, ids), "synthetic-k3")


def _export(
    directory: Path,
    bandit: movielens_per_arm.MovieLensPerArmBandit,
    catalogue: ItemCatalogue,
    agent: str,
    num_candidates: int = C,
) -> PerArmSavedPolicy:
    """Trains `agent` on uniformly logged rounds and saves it with `catalogue`."""
    logged = simulate_uniform_per_arm_logging(bandit, 400, C, noise_sd=0.5, seed=1)
    settings = TrainerSettings(
        agent=agent, epsilon=EPSILON, hidden_layers="8", encoding_dim=2, batch_size=128, epochs=1
    )
    trained = train_per_arm_policy(
        settings,
        logged.global_features,
        movielens_per_arm.arm_features(bandit, logged.movie_ids),
        logged.rewards,
        num_candidates,
    )
    save_per_arm_policy(trained, catalogue, str(directory))
    return PerArmSavedPolicy(str(directory))


@pytest.fixture(scope="module")
def linucb(tmp_path_factory, bandit, catalogue) -> PerArmSavedPolicy:
    directory = tmp_path_factory.mktemp("interaction_linucb")
    return _export(directory, bandit, catalogue, agent_names.INTERACTION_LINUCB)


@pytest.fixture(scope="module")
def epsilon_greedy(tmp_path_factory, bandit, catalogue) -> PerArmSavedPolicy:
    directory = tmp_path_factory.mktemp("dot_product")
    return _export(directory, bandit, catalogue, agent_names.DOT_PRODUCT_EPSILON_GREEDY)


@pytest.fixture(scope="module")
def logged(bandit) -> PerArmLoggedBatch:
    """Evaluation rounds, drawn apart from the training rounds."""
    return simulate_uniform_per_arm_logging(bandit, 120, C, noise_sd=0.5, seed=2)


def _columns(bandit, logged: PerArmLoggedBatch, **changes) -> PerArmColumns:
    columns = PerArmColumns(
        user_ids=logged.user_ids,
        global_features=logged.global_features,
        slots=logged.chosen_slots,
        rewards=logged.rewards,
        propensities=logged.propensities,
        candidate_ids=logged.candidate_ids,
        movie_ids=logged.movie_ids,
        arm_features=movielens_per_arm.arm_features(bandit, logged.movie_ids),
    )
    return dataclasses.replace(columns, **changes)


def _saved_model_one_hot(
    policy_dir: str, agent: str, catalogue: ItemCatalogue, logged: PerArmLoggedBatch
) -> np.ndarray:
    """[N, C] one-hot of the SavedModel's own choices on the logged rows."""
    arms = catalogue.features_of(logged.candidate_ids.ravel()).reshape(len(logged), C, -1)
    actions = per_arm_policy_actions(
        load_saved_policy(policy_dir), agent, logged.global_features, arms
    )
    return np.eye(C)[actions]


def _evaluate(bandit, logged, candidate, baseline=None, with_bandit: bool = True, **changes):
    return evaluate_per_arm(
        lambda: _columns(bandit, logged, **changes),
        candidate,
        baseline,
        SETTINGS,
        reward_range=(-20.0, 20.0),
        bandit=bandit if with_bandit else None,
    )


def _copy_rows(logged: PerArmLoggedBatch, name: str) -> np.ndarray:
    return np.array(getattr(logged, name), copy=True)


# --- PerArmSavedPolicy ------------------------------------------------------------------


def test_linucb_probabilities_are_the_one_hot_of_the_saved_models_action(
    linucb, catalogue, logged
):
    pi = linucb.probabilities(logged.global_features, logged.candidate_ids, samples=3)
    expected = _saved_model_one_hot(
        linucb.policy_dir, agent_names.INTERACTION_LINUCB, catalogue, logged
    )
    assert not linucb.explores_in_graph
    np.testing.assert_array_equal(pi, expected)
    # A policy that chose one slot everywhere would make the comparison vacuous.
    assert len(set(np.argmax(expected, axis=1).tolist())) > 1


def test_epsilon_greedy_probabilities_mix_the_greedy_choice_with_uniform(
    epsilon_greedy, catalogue, logged
):
    assert epsilon_greedy.explores_in_graph and epsilon_greedy.metadata.epsilon == EPSILON
    pi = epsilon_greedy.probabilities(logged.global_features, logged.candidate_ids, samples=1)
    greedy = _saved_model_one_hot(
        os.path.join(epsilon_greedy.policy_dir, GREEDY_POLICY_DIR),
        agent_names.DOT_PRODUCT_EPSILON_GREEDY,
        catalogue,
        logged,
    )
    np.testing.assert_allclose(pi, (1 - EPSILON) * greedy + EPSILON / C)
    np.testing.assert_allclose(pi.sum(axis=1), 1.0)
    np.testing.assert_allclose(pi.max(axis=1), 1 - EPSILON + EPSILON / C)


def test_probabilities_refuse_a_movie_outside_the_catalogue(linucb, logged):
    candidates = _copy_rows(logged, "candidate_ids")
    candidates[3, 1] = MOVIES + 7
    with pytest.raises(UnknownItemsError) as excinfo:
        linucb.probabilities(logged.global_features, candidates, samples=1)
    assert excinfo.value.ids == [MOVIES + 7]


# --- evaluate_per_arm -------------------------------------------------------------------


def test_true_values_are_the_expected_reward_of_each_policys_choices(
    bandit, catalogue, logged, linucb, epsilon_greedy
):
    result = _evaluate(bandit, logged, linucb, epsilon_greedy)
    expected = movielens_per_arm.expected_rewards(bandit, logged.user_ids, logged.candidate_ids)
    greedy = _saved_model_one_hot(
        linucb.policy_dir, agent_names.INTERACTION_LINUCB, catalogue, logged
    )
    assert result.candidate.true_value == pytest.approx(np.mean(np.sum(greedy * expected, 1)))
    baseline_greedy = _saved_model_one_hot(
        os.path.join(epsilon_greedy.policy_dir, GREEDY_POLICY_DIR),
        agent_names.DOT_PRODUCT_EPSILON_GREEDY,
        catalogue,
        logged,
    )
    baseline_pi = (1 - EPSILON) * baseline_greedy + EPSILON / C
    assert result.baseline.true_value == pytest.approx(
        np.mean(np.sum(baseline_pi * expected, 1))
    )
    assert result.simulator["oracle_value"] == pytest.approx(np.mean(expected.max(axis=1)))
    assert result.simulator["uniform_random_value"] == pytest.approx(np.mean(expected))
    assert result.eval_rows == len(logged)
    assert result.logging_value == pytest.approx(np.mean(logged.rewards))
    assert result.candidate.agent == agent_names.INTERACTION_LINUCB
    assert set(result.candidate.estimates) >= {"ips", "dr"}
    assert result.notes == ()


def test_without_a_simulator_there_are_no_true_values(bandit, logged, linucb):
    result = _evaluate(bandit, logged, linucb, with_bandit=False)
    assert result.candidate.true_value is None
    assert "unavailable" in result.simulator


def _refusal(result, *phrases: str) -> None:
    assert result.blessed is False
    assert result.candidate is None and result.baseline is None
    for phrase in phrases:
        assert phrase in result.decision.reason


def test_a_slot_that_does_not_hold_the_served_movie_is_refused(bandit, logged, linucb):
    slots = _copy_rows(logged, "chosen_slots")
    slots[5] = (slots[5] + 1) % C
    result = _evaluate(bandit, logged, linucb, slots=slots)
    _refusal(
        result,
        "not blessed",
        f"1 of {len(logged)} logged rows have a position that does not hold their served movie",
    )
    assert result.eval_rows == len(logged)


def test_a_candidate_outside_the_policys_catalogue_is_refused(bandit, logged, linucb):
    candidates = _copy_rows(logged, "candidate_ids")
    row = 7
    other = (logged.chosen_slots[row] + 1) % C
    candidates[row, other] = MOVIES + 3
    result = _evaluate(bandit, logged, linucb, candidate_ids=candidates)
    _refusal(result, "not in the candidate policy's catalogue", str(MOVIES + 3))


def test_a_zero_propensity_is_refused(bandit, logged, linucb):
    propensities = _copy_rows(logged, "propensities")
    propensities[2] = 0.0
    result = _evaluate(bandit, logged, linucb, propensities=propensities)
    _refusal(result, "evaluation data is invalid", "propensities <= 0")


def test_unreadable_evaluation_data_is_a_refusal_not_an_error(linucb):
    def read_columns() -> PerArmColumns:
        raise ValueError("split 'eval' holds no examples")

    result = evaluate_per_arm(read_columns, linucb, None, SETTINGS)
    _refusal(result, "could not be read", "split 'eval' holds no examples")
    assert result.eval_rows == 0


@pytest.fixture(scope="module")
def five_candidates(tmp_path_factory, bandit, catalogue) -> PerArmSavedPolicy:
    directory = tmp_path_factory.mktemp("five_candidates")
    return _export(directory, bandit, catalogue, agent_names.PER_ARM_LINUCB, num_candidates=5)


def test_a_baseline_for_another_candidate_count_is_dropped_with_a_note(
    bandit, logged, linucb, five_candidates
):
    assert five_candidates.metadata.num_candidates == 5
    result = _evaluate(bandit, logged, linucb, five_candidates)
    assert result.baseline is None
    assert result.candidate is not None
    (note,) = result.notes
    assert five_candidates.policy_dir in note and "5 candidates" in note
    assert "logging policy" in result.decision.reason


def test_a_baseline_missing_logged_movies_is_dropped_with_a_note(
    tmp_path, bandit, catalogue, logged, linucb
):
    known = np.setdiff1d(catalogue.movie_ids, logged.candidate_ids[0])
    partial = ItemCatalogue(known, catalogue.features_of(known), catalogue.feature_version)
    baseline = _export(tmp_path, bandit, partial, agent_names.PER_ARM_LINUCB)
    result = _evaluate(bandit, logged, linucb, baseline)
    assert result.baseline is None and result.candidate is not None
    (note,) = result.notes
    assert "lacks" in note and str(tmp_path) in note


# --- the Beam pipeline ------------------------------------------------------------------


def _feature(values, kind: str) -> tf.train.Feature:
    if kind == "int":
        return tf.train.Feature(int64_list=tf.train.Int64List(value=np.ravel(values)))
    return tf.train.Feature(float_list=tf.train.FloatList(value=np.ravel(values)))


def _write_per_arm_split(path: str, columns: PerArmColumns) -> None:
    """The rows as ExampleGen writes a per-arm split."""
    kinds = {
        logged_columns.USER_ID: (columns.user_ids, "int"),
        logged_columns.OBSERVATION: (columns.global_features, "float"),
        logged_columns.ACTION: (columns.slots, "int"),
        logged_columns.REWARD: (columns.rewards, "float"),
        logged_columns.PROPENSITY: (columns.propensities, "float"),
        logged_columns.CANDIDATE_MOVIE_IDS: (columns.candidate_ids, "int"),
        logged_columns.MOVIE_ID: (columns.movie_ids, "int"),
        logged_columns.ARM_FEATURES: (columns.arm_features, "float"),
    }
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for row in range(len(columns)):
            feature = {name: _feature(values[row], kind) for name, (values, kind) in kinds.items()}
            example = tf.train.Example(features=tf.train.Features(feature=feature))
            writer.write(example.SerializeToString())


def test_the_pipeline_agrees_with_the_in_memory_evaluation(
    tmp_path, bandit, logged, linucb, epsilon_greedy
):
    """Both paths add up the same sums: estimates, intervals and true values to 1e-9."""
    _write_per_arm_split(str(tmp_path / "data.gz"), _columns(bandit, logged))
    metadata = linucb.metadata
    settings = dataclasses.replace(SETTINGS, bootstrap_samples=200)

    def read_columns() -> PerArmColumns:
        return read_per_arm_split(
            str(tmp_path), metadata.global_dim, metadata.arm_dim, metadata.num_candidates
        )

    in_memory = evaluate_per_arm(
        read_columns, linucb, epsilon_greedy, settings, (-20.0, 20.0), bandit
    ).to_json()
    piped = evaluate_per_arm_passes(
        lambda passes: beam_evaluation.run(
            beam.Pipeline(), str(tmp_path), passes, str(tmp_path / "sums")
        ),
        linucb, epsilon_greedy, settings, (-20.0, 20.0), bandit,
    ).to_json()
    assert piped["eval_rows"] == in_memory["eval_rows"] == len(logged)
    assert piped["simulator"] == pytest.approx(in_memory["simulator"], rel=1e-9)
    for role in ("candidate", "baseline"):
        assert piped[role]["true_value"] == pytest.approx(in_memory[role]["true_value"], rel=1e-9)
        for name, estimate in in_memory[role]["estimates"].items():
            assert piped[role]["estimates"][name] == pytest.approx(estimate, rel=1e-9), name
