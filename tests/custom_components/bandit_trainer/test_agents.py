"""The four agents: off-policy training, exported policies, and parity with agent.train."""

import dataclasses
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.bandits.agents import linear_bandit_agent, linear_thompson_sampling_agent
from tf_agents.trajectories import time_step as ts
from tfx import types as tfx_types
from tfx.types import standard_artifacts

from bandit_core import agent_names
from bandit_core.errors import ConfigError
from bandit_core.linear_statistics import arm_statistics, zero_statistics
from bandit_core.policy_metadata import (
    POLICY_METADATA_FILE,
    read_policy_metadata,
)
from bandit_core.saved_policy import load_saved_policy, policy_actions
from custom_components.bandit_trainer import agents, neural_training, training
from custom_components.bandit_trainer.component import BanditTrainer
from custom_components.bandit_trainer.executor import settings_from_exec_properties
from custom_components.bandit_trainer.settings import TrainerSettings
from custom_components.bandit_trainer.vertex_job import CUSTOM_CONFIG_KEY, VertexJobBanditTrainer

D, K, N = 6, 5, 2000
TINY_NEURAL = dict(hidden_layers="16", encoding_dim=4, batch_size=256, epochs=3)


def _logged(seed: int = 0, n: int = N, d: int = D, k: int = K):
    """Uniformly logged rows of a linear bandit; also the true per-arm weights."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    a = rng.integers(0, k, size=n)
    theta = rng.normal(size=(k, d))
    r = (np.einsum("nd,nd->n", x, theta[a]) + rng.normal(scale=0.3, size=n)).astype(np.float32)
    return x, a, r, theta


def _rel(actual, expected) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _stack(variables) -> np.ndarray:
    return np.stack([v.numpy() for v in variables]).astype(np.float64)


@pytest.mark.parametrize(
    "settings",
    [
        TrainerSettings(agent="LinUCB", alpha=0.5),
        TrainerSettings(agent="LinTS", alpha=0.2),
        TrainerSettings(agent="NeuralEpsilonGreedy", epsilon=0.1, **TINY_NEURAL),
        TrainerSettings(agent="NeuralLinUCB", alpha=0.5, **TINY_NEURAL),
    ],
    ids=lambda s: s.agent,
)
def test_each_agent_trains_off_policy_and_its_saved_policy_acts(settings, tmp_path):
    x, a, r, theta = _logged()
    trained = training.train_policy(settings, x, a, r, K)
    policy_dir = str(tmp_path / "policy")
    training.save_policy(trained, policy_dir)

    queries = np.random.default_rng(9).normal(size=(300, D)).astype(np.float32)
    actions = policy_actions(load_saved_policy(policy_dir), queries)
    assert actions.shape == (300,)
    assert actions.dtype == np.int32 and actions.min() >= 0 and actions.max() < K
    # Better than acting at random on the synthetic problem.
    values = queries @ theta.T
    assert values[np.arange(300), actions].mean() > values.mean() + 0.5

    metadata = read_policy_metadata(policy_dir)
    assert metadata.agent == settings.agent
    assert (metadata.observation_dim, metadata.num_actions) == (D, K)
    assert metadata.hyperparameters == settings.hyperparameters()
    assert metadata.stochastic == (settings.agent in ("LinTS", "NeuralEpsilonGreedy"))
    assert trained.training_seconds > 0
    np.testing.assert_array_equal(trained.rows_per_arm, np.bincount(a, minlength=K))


def test_linear_agents_learn_the_true_best_arm():
    x, a, r, theta = _logged(n=5000)
    queries = np.random.default_rng(1).normal(size=(500, D)).astype(np.float32)
    best = np.argmax(queries @ theta.T, axis=1)
    for agent in agent_names.LINEAR_AGENTS:
        trained = training.train_policy(
            TrainerSettings(agent=agent, alpha=0.0), x, a, r, K
        )
        step = trained.policy.action(ts.restart(tf.constant(queries), batch_size=500))
        assert np.mean(step.action.numpy() == best) > 0.95, agent


# --- LinTS: the statistics path is the agent.train path --------------------------------------


@pytest.fixture(scope="module")
def lints_pair():
    x, a, r, _ = _logged(seed=4, n=3000, d=20, k=20)
    time_step_spec, action_spec = agents.bandit_specs(20, 20)
    variables = linear_bandit_agent.LinearBanditVariableCollection(
        context_dim=20, num_models=20, dtype=tf.float32
    )
    reference = linear_thompson_sampling_agent.LinearThompsonSamplingAgent(
        time_step_spec,
        action_spec,
        variable_collection=variables,
        alpha=1.0,
        tikhonov_weight=1.0,
        dtype=tf.float32,
    )
    reference.initialize()
    train_step = tf.function(
        lambda x, a, r: reference.train(neural_training.bandit_trajectory(x, a, r)).loss
    )
    for start in range(0, len(a), 1024):
        rows = slice(start, start + 1024)
        train_step(tf.constant(x[rows]), tf.constant(a[rows], tf.int32), tf.constant(r[rows]))
    ours = agents.lints_agent_from_statistics(arm_statistics(x, a, r, 20), 1.0, 1.0)
    return reference, variables, ours, x


def test_lints_from_statistics_has_the_variables_agent_train_produces(lints_pair):
    reference, reference_variables, ours, _ = lints_pair
    assert isinstance(ours, linear_thompson_sampling_agent.LinearThompsonSamplingAgent)
    assert _rel(_stack(ours.cov_matrix), _stack(reference.cov_matrix)) < 1e-5
    assert _rel(_stack(ours.data_vector), _stack(reference.data_vector)) < 1e-5
    np.testing.assert_array_equal(_stack(ours.num_samples), _stack(reference.num_samples))
    ours_theta = ours._variable_collection.theta.numpy()
    assert _rel(ours_theta, reference_variables.theta.numpy()) < 1e-5


def test_lints_greedy_policies_agree(lints_pair):
    """With alpha = 0 both LinTS policies are argmax theta . x: same actions."""
    _, reference_variables, ours, x = lints_pair
    queries = tf.constant(x[:1000])
    time_step = ts.restart(queries, batch_size=1000)
    time_step_spec, action_spec = agents.bandit_specs(20, 20)
    greedy = [
        linear_thompson_sampling_agent.LinearThompsonSamplingAgent(
            time_step_spec, action_spec, variable_collection=variables, alpha=0.0
        )
        for variables in (reference_variables, ours._variable_collection)
    ]
    np.testing.assert_array_equal(
        greedy[0].policy.action(time_step).action.numpy(),
        greedy[1].policy.action(time_step).action.numpy(),
    )


def test_batched_conjugate_gradient_matches_tf_agents():
    x, a, r, _ = _logged(seed=5, n=400, d=8, k=6)
    statistics = arm_statistics(x, a, r, 7)  # arm 6 has no rows
    agent = agents.linucb_agent_from_statistics(statistics, alpha=1.0, tikhonov_weight=0.5)
    ours = agents.conjugate_gradient_theta(
        statistics.cov_matrices, statistics.data_vectors, tikhonov_weight=0.5
    )
    np.testing.assert_allclose(ours, agent.theta.numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(ours[6], 0.0)
    assert ours.dtype == np.float32


def test_linear_agent_from_statistics_rejects_neural_names():
    with pytest.raises(ValueError, match="not a linear agent"):
        agents.linear_agent_from_statistics("NeuralLinUCB", zero_statistics(2, 2), 1.0, 1.0)


# --- neural agents ---------------------------------------------------------------------------


def test_neural_linucb_head_equals_tf_agents_linucb_update():
    """Our vectorised head is what the agent's own LinUCB phase accumulates."""
    x, a, r, _ = _logged(seed=6, n=1500)
    settings = TrainerSettings(agent="NeuralLinUCB", **TINY_NEURAL)
    agent = training.train_policy(settings, x, a, r, K).agent
    assert not bool(agent.actions_from_reward_layer.numpy())
    ours_cov, ours_data = _stack(agent.cov_matrix), _stack(agent.data_vector)
    np.testing.assert_array_equal(_stack(agent.num_samples), np.bincount(a, minlength=K))

    for variables in (agent.cov_matrix, agent.data_vector, agent.num_samples):
        for variable in variables:
            variable.assign(tf.zeros_like(variable))
    for start in range(0, len(a), 500):
        rows = slice(start, start + 500)
        agent.compute_loss_using_linucb(
            tf.constant(x[rows]), tf.constant(a[rows], tf.int32), tf.constant(r[rows], tf.float64)
        )
    assert _rel(ours_cov, _stack(agent.cov_matrix)) < 1e-5
    assert _rel(ours_data, _stack(agent.data_vector)) < 1e-5


def test_neural_epsilon_greedy_exports_its_exploration(tmp_path):
    x, a, r, _ = _logged(seed=7, n=600)
    queries = np.zeros((2000, D), dtype=np.float32)
    spread = {}
    for epsilon in (0.0, 1.0):
        settings = TrainerSettings(
            agent="NeuralEpsilonGreedy", epsilon=epsilon, **{**TINY_NEURAL, "epochs": 1}
        )
        trained = training.train_policy(settings, x, a, r, K)
        assert trained.metadata.stochastic == (epsilon > 0)
        assert trained.metadata.alpha == 0.0 and trained.metadata.tikhonov_weight == 0.0
        policy_dir = str(tmp_path / f"eps{epsilon}")
        training.save_policy(trained, policy_dir)
        counts = np.bincount(policy_actions(load_saved_policy(policy_dir), queries), minlength=K)
        spread[epsilon] = counts / counts.sum()
    assert spread[0.0].max() == 1.0
    np.testing.assert_allclose(spread[1.0], 1.0 / K, atol=0.05)


def test_logged_batches_cover_every_row_once_per_epoch():
    x = np.arange(10, dtype=np.float32)[:, None]
    batches = list(
        neural_training.logged_batches(x, np.arange(10), np.arange(10.0), 4, epochs=3, seed=1)
    )
    assert [len(b[1]) for b in batches] == [4, 4, 4, 4, 4, 4, 4, 2]
    rows = np.concatenate([b[1].numpy() for b in batches])
    for epoch in range(3):
        assert sorted(rows[10 * epoch : 10 * (epoch + 1)]) == list(range(10))
    np.testing.assert_array_equal(np.concatenate([b[0].numpy()[:, 0] for b in batches]), rows)
    assert not np.array_equal(rows[:10], rows[10:20])


# --- settings and the sidecar -------------------------------------------------------------------


@pytest.mark.parametrize(
    "change, match",
    [
        (
            {"agent": "DQN"},
            "invalid setting trainer.agent: 'DQN' is not supported; choose one of LinUCB, LinTS, "
            "NeuralEpsilonGreedy, NeuralLinUCB (classic problem) or PerArmLinUCB, PerArmLinTS, "
            "InteractionLinUCB, InteractionLinTS, PerArmNeuralEpsilonGreedy, PerArmNeuralLinUCB, "
            "DotProductEpsilonGreedy (per-arm problem)",
        ),
        ({"alpha": -1.0}, "invalid setting trainer.alpha: must be >= 0"),
        ({"tikhonov_weight": 0.0}, "invalid setting trainer.tikhonov_weight: must be > 0"),
        ({"epsilon": 1.5}, "invalid setting trainer.epsilon: must be in [0, 1]"),
        ({"encoding_dim": 0}, "invalid setting trainer.encoding_dim: must be >= 1"),
        ({"learning_rate": 0.0}, "invalid setting trainer.learning_rate: must be > 0"),
        ({"batch_size": 0}, "invalid setting trainer.batch_size: must be >= 1"),
        ({"epochs": 0}, "invalid setting trainer.epochs: must be >= 1"),
        ({"seed": -1}, "invalid setting trainer.seed: must be >= 0"),
    ],
)
def test_trainer_settings_reject_bad_values(change, match):
    with pytest.raises(ConfigError) as raised:
        TrainerSettings(**change).validate()
    assert str(raised.value) == match


def test_hidden_layers_are_text_of_positive_ascii_integers():
    assert TrainerSettings(hidden_layers="64,32").validate().layer_sizes == (64, 32)
    assert TrainerSettings(hidden_layers=" 8 ").validate().layer_sizes == (8,)
    for bad in ("", "64,,32", "a", "0", "-4", "+4", "1.5", "²", "٣"):
        with pytest.raises(ConfigError) as raised:
            TrainerSettings(hidden_layers=bad).validate()
        assert str(raised.value) == (
            'invalid setting trainer.hidden_layers: must be comma-separated positive integers, '
            'e.g. "64,64"'
        )


def test_executor_properties_become_settings():
    properties = {
        "agent": "NeuralLinUCB", "alpha": 0.3, "tikhonov_weight": 2.0, "epsilon": 0.1,
        "hidden_layers": "32,16", "encoding_dim": 8, "learning_rate": 0.01, "batch_size": 512,
        "epochs": 4, "seed": 3,
    }
    settings = settings_from_exec_properties(properties)
    assert settings.layer_sizes == (32, 16) and settings.agent == "NeuralLinUCB"
    assert settings.hyperparameters() == {
        "alpha": 0.3, "hidden_layers": [32, 16], "encoding_dim": 8, "learning_rate": 0.01,
        "batch_size": 512, "epochs": 4, "seed": 3,
    }
    with pytest.raises(ConfigError, match="invalid setting trainer.epochs: must be >= 1"):
        settings_from_exec_properties({**properties, "epochs": 0})


def test_component_parameters_are_the_settings_fields():
    settings = TrainerSettings(agent="NeuralLinUCB", alpha=0.3, hidden_layers="32,16")
    channels = dict(
        examples=tfx_types.Channel(type=standard_artifacts.Examples),
        example_anomalies=tfx_types.Channel(type=standard_artifacts.ExampleAnomalies),
    )
    trainer = BanditTrainer(**channels, observation_dim=D, num_actions=K, settings=settings)
    assert trainer.exec_properties == {
        "observation_dim": D, "num_actions": K, "problem": "classic", "arm_dim": 0,
        "feature_version": "", **dataclasses.asdict(settings),
        # Set only by the Vertex build with vertex.experiment (tfx_pipeline/vertex/runner.py).
        "vertex_experiment": None, "vertex_experiment_run": None,
    }
    assert settings_from_exec_properties(trainer.exec_properties) == settings
    vertex = VertexJobBanditTrainer(
        {"ai_platform_enable_vertex": True}, **channels, observation_dim=D, num_actions=K,
        settings=settings,
    )
    assert vertex.id == "BanditTrainer"
    assert {k: v for k, v in vertex.exec_properties.items() if k != CUSTOM_CONFIG_KEY} == (
        trainer.exec_properties
    )


def test_sidecars_written_before_the_new_fields_still_load(tmp_path):
    (tmp_path / POLICY_METADATA_FILE).write_text(
        json.dumps(
            {"agent": "LinUCB", "observation_dim": 3, "num_actions": 2, "alpha": 1.0,
             "tikhonov_weight": 1.0}
        )
    )
    metadata = read_policy_metadata(str(tmp_path))
    assert metadata.stochastic is False and metadata.hyperparameters == {}


def test_linear_sidecar_keeps_the_serving_fields(tmp_path):
    x, a, r, _ = _logged(seed=8, n=200)
    settings = TrainerSettings(agent="LinUCB", alpha=0.7, tikhonov_weight=2.0)
    training.save_policy(training.train_policy(settings, x, a, r, K), str(tmp_path))
    stored = json.loads((tmp_path / POLICY_METADATA_FILE).read_text())
    assert stored == {
        "agent": "LinUCB", "observation_dim": D, "num_actions": K, "alpha": 0.7,
        "tikhonov_weight": 2.0, "stochastic": False,
        "hyperparameters": {"alpha": 0.7, "tikhonov_weight": 2.0},
    }
    assert os.path.exists(tmp_path / "saved_model.pb")
