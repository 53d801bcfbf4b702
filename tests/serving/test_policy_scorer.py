"""The NumPy scorer must choose exactly what the TF-Agents SavedModel chooses."""

import dataclasses
import shutil
from typing import Optional

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent
from tf_agents.bandits.drivers import driver_utils
from tf_agents.policies import policy_saver
from tf_agents.policies import utils as policy_utilities
from tf_agents.trajectories import policy_step
from tf_agents.trajectories import time_step as ts

from bandit_core.policy_metadata import (
    POLICY_METADATA_FILE,
    PolicyMetadata,
    read_policy_metadata,
    write_policy_metadata,
)
from bandit_core.saved_policy import load_saved_policy, policy_actions, read_model_variables
from custom_components.bandit_trainer.agents import bandit_specs
from serving.policy_scorer import (
    SavedModelScorer,
    linucb_scorer,
    load_policy_scorer,
)

OBSERVATION_DIM = 20
# TF-Agents solves (A + tI) z = x by float32 conjugate gradient, good to about
# 1e-6 relative; where the two best arms are closer than this, its argmax is
# decided by round-off rather than by the model, so the fast path may differ.
ROUND_OFF_GAP = 1e-5


def train_and_save_linucb(
    policy_dir: str,
    num_actions: int,
    num_rows: int,
    alpha: float = 1.0,
    tikhonov_weight: float = 1.0,
    add_bias: bool = False,
    logged_arms: Optional[int] = None,
    seed: int = 0,
) -> None:
    """Trains a LinUCB agent with `agent.train` on a synthetic linear bandit and pushes it.

    The arms' true weights are random and the logging policy is uniform over
    the first `logged_arms` arms (all by default); arms it never picks stay
    untrained and identical, so their UCB scores tie exactly.
    """
    rng = np.random.default_rng(seed)
    true_theta = rng.normal(size=(num_actions, OBSERVATION_DIM))
    time_step_spec, action_spec = bandit_specs(OBSERVATION_DIM, num_actions)
    agent = lin_ucb_agent.LinearUCBAgent(
        time_step_spec=time_step_spec,
        action_spec=action_spec,
        alpha=alpha,
        tikhonov_weight=tikhonov_weight,
        add_bias=add_bias,
        dtype=tf.float32,
    )
    agent.initialize()
    batch_size = 5000  # LinUCB's statistics are sums: batches change only round-off, not the fit
    for start in range(0, num_rows, batch_size):
        size = min(batch_size, num_rows - start)
        observations = rng.normal(size=(size, OBSERVATION_DIM)).astype(np.float32)
        actions = rng.integers(0, logged_arms or num_actions, size=size).astype(np.int32)
        rewards = (
            np.einsum("nd,nd->n", observations, true_theta[actions]) + rng.normal(size=size)
        ).astype(np.float32)
        agent.train(_experience(observations, actions, rewards))
    policy_saver.PolicySaver(agent.policy, batch_size=None).save(policy_dir)
    write_policy_metadata(
        policy_dir,
        PolicyMetadata(
            agent="LinUCB",
            observation_dim=OBSERVATION_DIM,
            num_actions=num_actions,
            alpha=alpha,
            tikhonov_weight=tikhonov_weight,
        ),
    )


def _experience(observations: np.ndarray, actions: np.ndarray, rewards: np.ndarray):
    size = len(actions)
    first = ts.restart(tf.constant(observations), batch_size=size)
    last = ts.termination(tf.constant(observations), tf.constant(rewards))
    action_step = policy_step.PolicyStep(
        action=tf.constant(actions), info=policy_utilities.PolicyInfo()
    )
    trajectory = driver_utils.trajectory_for_bandit(first, action_step, last)
    return tf.nest.map_structure(lambda t: tf.expand_dims(tf.convert_to_tensor(t), 1), trajectory)


def realistic_observations(rng: np.random.Generator, num_rows: int) -> np.ndarray:
    """MovieLens-like contexts (rows of U_k sqrt(S_k) of a ratings-like matrix) plus edge cases."""
    ratings = rng.integers(0, 6, size=(num_rows, 200)) * (rng.random((num_rows, 200)) < 0.1)
    u, s, _ = np.linalg.svd(ratings.astype(np.float64), full_matrices=False)
    svd_rows = u[:, :OBSERVATION_DIM] * np.sqrt(s[:OBSERVATION_DIM])
    edge_cases = np.concatenate(
        [
            np.zeros((1, OBSERVATION_DIM)),
            np.eye(OBSERVATION_DIM),
            -np.eye(OBSERVATION_DIM),
            np.full((1, OBSERVATION_DIM), 1e-3),
            np.full((1, OBSERVATION_DIM), 100.0),
            np.round(rng.normal(size=(50, OBSERVATION_DIM)), 1),
        ]
    )
    return np.concatenate([svd_rows, edge_cases])


def random_observations(rng: np.random.Generator, num_rows: int) -> np.ndarray:
    """Gaussian contexts at three scales, so both mean and bonus terms decide."""
    scales = rng.choice([0.1, 1.0, 10.0], size=(num_rows, 1))
    return rng.normal(size=(num_rows, OBSERVATION_DIM)) * scales


@pytest.fixture(scope="module")
def policies(tmp_path_factory) -> dict:
    """Saved policies keyed by name: 20 and 100 arms, sparse data, bias, greedy."""
    settings = {
        "20_arms": dict(num_actions=20, num_rows=5000),
        "100_arms": dict(num_actions=100, num_rows=20000, alpha=0.5, tikhonov_weight=0.1),
        "100_arms_sparse": dict(num_actions=100, num_rows=3000, logged_arms=40, alpha=2.5),
        "20_arms_bias": dict(num_actions=20, num_rows=2000, add_bias=True),
        "20_arms_greedy": dict(num_actions=20, num_rows=2000, alpha=0.0),
    }
    root = tmp_path_factory.mktemp("policies")
    for name, kwargs in settings.items():
        train_and_save_linucb(str(root / name), seed=len(name), **kwargs)
    return {name: str(root / name) for name in settings}


@pytest.mark.parametrize(
    "name", ["20_arms", "100_arms", "100_arms_sparse", "20_arms_bias", "20_arms_greedy"]
)
def test_greedy_action_equals_saved_model_action(policies, name):
    rng = np.random.default_rng(7)
    observations = np.concatenate(
        [random_observations(rng, 5000), realistic_observations(rng, 1000)]
    )
    scorer = load_policy_scorer(policies[name])
    expected = policy_actions(load_saved_policy(policies[name]), observations)
    actual = scorer.greedy_actions(observations)
    best, runner_up = np.sort(scorer.scores(observations), axis=1)[:, :-3:-1].T
    gap = (best - runner_up) / np.maximum(np.abs(best), 1e-12)
    # Exact ties (identical untrained arms, zero context) are not exempt: both break them low.
    round_off = (gap > 0) & (gap <= ROUND_OFF_GAP)
    assert round_off.mean() < 1e-3
    mismatched = np.flatnonzero((actual != expected) & ~round_off)
    assert mismatched.size == 0, (
        f"{mismatched.size} of {len(observations)} differ; first rows {mismatched[:5]}: "
        f"fast {actual[mismatched[:5]]} vs SavedModel {expected[mismatched[:5]]}"
    )


def test_untrained_arms_tie_and_ties_go_to_the_lowest_index(policies):
    """Arms 40..99 were never logged: identical, maximally uncertain, often jointly best."""
    observations = random_observations(np.random.default_rng(8), 2000)
    scores = load_policy_scorer(policies["100_arms_sparse"]).scores(observations)
    best = scores.max(axis=1, keepdims=True)
    tied = (scores == best).sum(axis=1) > 1
    assert tied.mean() > 0.3
    expected = policy_actions(load_saved_policy(policies["100_arms_sparse"]), observations)
    np.testing.assert_array_equal(expected[tied], np.argmax(scores[tied] == best[tied], axis=1))


def test_scores_match_the_linucb_formula(policies):
    """Scores themselves (not only the argmax) equal mean + alpha * sqrt(x^T A^-1 x)."""
    scorer = load_policy_scorer(policies["100_arms"])
    saved = tf.saved_model.load(policies["100_arms"])
    variables = {v.name.split(":")[0]: v.numpy().astype(np.float64) for v in saved.model_variables}
    x = np.random.default_rng(3).normal(size=(50, OBSERVATION_DIM)).astype(np.float32)
    for arm in (0, 57, 99):
        inverse = np.linalg.inv(variables[f"a_{arm}"] + 0.1 * np.eye(OBSERVATION_DIM))
        mean = x @ inverse @ variables[f"b_{arm}"]
        bonus = np.sqrt(np.einsum("nd,de,ne->n", x, inverse, x))
        # The scorer solves where this inverts: the two differ by float64 round-off only,
        # whose size depends on the BLAS kernel, so an absolute floor joins the relative bound.
        np.testing.assert_allclose(
            scorer.scores(x)[:, arm], mean + 0.5 * bonus, rtol=1e-9, atol=1e-8
        )


def test_checkpoint_variables_equal_the_loaded_policy_variables(policies):
    saved = tf.saved_model.load(policies["20_arms_bias"])
    expected = {v.name.split(":")[0]: v.numpy() for v in saved.model_variables}
    actual = read_model_variables(policies["20_arms_bias"])
    assert sorted(actual) == sorted(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(actual[name], value, err_msg=name)


def test_scores_reject_wrong_observation_width(policies):
    scorer = load_policy_scorer(policies["20_arms"])
    with pytest.raises(ValueError, match=r"\[N, 20\]"):
        scorer.scores(np.zeros((3, 19)))


def test_missing_sidecar_is_reported(tmp_path, policies):
    with pytest.raises(FileNotFoundError, match="bandit_policy.json"):
        load_policy_scorer(str(tmp_path))


def test_statistics_must_match_metadata():
    metadata = PolicyMetadata(
        "LinUCB", observation_dim=3, num_actions=2, alpha=1.0, tikhonov_weight=1.0
    )
    with pytest.raises(ValueError, match="cov_matrices"):
        linucb_scorer(metadata, np.zeros((2, 4, 3)), np.zeros((2, 4)))
    with pytest.raises(ValueError, match="theta"):
        linucb_scorer(
            PolicyMetadata("LinUCB", 3, 2, alpha=0.0, tikhonov_weight=1.0),
            np.zeros((2, 3, 3)),
            np.zeros((2, 3)),
        )


def test_a_stochastic_policy_is_refused_by_the_savedmodel_scorer(policies, tmp_path):
    source = policies["20_arms"]
    policy_dir = tmp_path / "lints"
    shutil.copytree(source, policy_dir)
    metadata = read_policy_metadata(str(policy_dir))
    (policy_dir / POLICY_METADATA_FILE).unlink()
    write_policy_metadata(
        str(policy_dir), dataclasses.replace(metadata, agent="LinTS", stochastic=True)
    )
    with pytest.raises(ValueError, match="stochastic policy"):
        SavedModelScorer(str(policy_dir))
