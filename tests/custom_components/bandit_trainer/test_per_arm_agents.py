"""Per-arm agents: parity with agent.train, exported policies, and the bilinear reward.

The synthetic problem mirrors MovieLens per-arm: a user u [DG] and C candidate
movies v [DA] per round, expected reward u^T W v; features have non-zero means,
so a linear model of the concatenation [u, v] learns a user bias and a movie
popularity but not the interaction.
"""

import numpy as np
import pytest
import tensorflow as tf
from tf_agents.bandits.agents import lin_ucb_agent, linear_bandit_agent
from tf_agents.bandits.agents import linear_thompson_sampling_agent as lin_ts_agent
from tf_agents.bandits.agents import utils as bandit_agent_utils
from tf_agents.policies import policy_saver

from bandit_core import agent_names, per_arm_features, per_arm_linear_policy, saved_policy
from bandit_core.per_arm_statistics import per_arm_statistics
from custom_components.bandit_trainer import neural_training, per_arm_agents

DG, DA, C, N = 4, 3, 5, 2000
NUM_QUERIES = 2000
TINY = dict(hidden_layers=(16,), learning_rate=0.01)
_REFERENCE_CLASSES = {
    agent_names.PER_ARM_LINUCB: lin_ucb_agent.LinearUCBAgent,
    agent_names.PER_ARM_LINTS: lin_ts_agent.LinearThompsonSamplingAgent,
}


class Problem:
    """Rounds of the bilinear problem: users, candidates, and expected rewards."""

    def __init__(self, seed: int = 0):
        self.weights = np.random.default_rng(seed).normal(size=(DG, DA))

    def rounds(self, n: int, seed: int):
        rng = np.random.default_rng(seed)
        users = rng.normal(0.5, 1.0, size=(n, DG)).astype(np.float32)
        candidates = rng.normal(0.5, 1.0, size=(n, C, DA)).astype(np.float32)
        return users, candidates

    def expected(self, users, candidates) -> np.ndarray:
        return np.einsum("ni,ij,ncj->nc", users, self.weights, candidates)

    def logged(self, n: int = N, seed: int = 1):
        """Uniformly logged rows: users [n, DG], chosen movies [n, DA], rewards [n]."""
        users, candidates = self.rounds(n, seed)
        rng = np.random.default_rng(seed + 100)
        chosen = candidates[np.arange(n), rng.integers(0, C, size=n)]
        rewards = self.expected(users, chosen[:, None, :])[:, 0] + rng.normal(0, 0.5, size=n)
        return users, chosen, rewards.astype(np.float32)

    def share_of_oracle(self, users, candidates, actions) -> float:
        expected = self.expected(users, candidates)
        chosen = expected[np.arange(len(actions)), actions]
        return float(chosen.mean() / expected.max(axis=1).mean())


@pytest.fixture(scope="module")
def problem():
    return Problem()


def _actions(policy, agent: str, users, candidates) -> np.ndarray:
    seen = per_arm_features.policy_arm_features(agent, users, candidates)
    return policy.action(saved_policy.per_arm_time_step(users, seen)).action.numpy()


def _rel(actual, expected) -> float:
    return float(np.max(np.abs(actual - expected)) / np.max(np.abs(expected)))


def _saved_and_loaded(policy, path) -> tf.Module:
    policy_saver.PolicySaver(policy, batch_size=None).save(str(path))
    return tf.saved_model.load(str(path))


# --- linear agents: the statistics path is the agent.train path ---------------------------------


@pytest.fixture(scope="module", params=sorted(_REFERENCE_CLASSES))
def linear_pair(request, problem):
    agent = request.param
    users, chosen, rewards = problem.logged()
    time_step_spec, action_spec = per_arm_agents.per_arm_specs(DG, DA, C)
    variables = linear_bandit_agent.LinearBanditVariableCollection(
        context_dim=DG + DA, num_models=1, dtype=tf.float32
    )
    reference = _REFERENCE_CLASSES[agent](
        time_step_spec,
        action_spec,
        variable_collection=variables,
        alpha=1.0,
        tikhonov_weight=1.0,
        accepts_per_arm_features=True,
        dtype=tf.float32,
    )
    reference.initialize()
    train_step = tf.function(
        lambda u, v, r: reference.train(per_arm_agents.per_arm_trajectory(u, v, r)).loss
    )
    for start in range(0, N, 512):
        rows = slice(start, start + 512)
        train_step(users[rows], chosen[rows], rewards[rows])
    ours = per_arm_agents.train_per_arm_linear_agent(
        agent, users, chosen, rewards, C, alpha=1.0, tikhonov_weight=1.0
    )
    return dict(agent=agent, reference=reference, variables=variables, ours=ours)


def test_per_arm_linear_agent_has_the_variables_agent_train_produces(linear_pair):
    reference, ours = linear_pair["reference"], linear_pair["ours"]
    assert isinstance(ours, _REFERENCE_CLASSES[linear_pair["agent"]])
    assert len(ours.cov_matrix) == 1 and ours.cov_matrix[0].shape == (DG + DA, DG + DA)
    assert _rel(ours.cov_matrix[0].numpy(), reference.cov_matrix[0].numpy()) < 1e-5
    assert _rel(ours.data_vector[0].numpy(), reference.data_vector[0].numpy()) < 1e-5
    assert ours.num_samples[0].numpy() == reference.num_samples[0].numpy() == N
    ours_theta = ours._variable_collection.theta.numpy()
    assert ours_theta.shape == (1, DG + DA)
    assert _rel(ours_theta, linear_pair["variables"].theta.numpy()) < 1e-5
    assert int(ours.train_step_counter.numpy()) == int(reference.train_step_counter.numpy()) == N


def test_per_arm_linear_greedy_policies_agree(linear_pair, problem):
    """With alpha = 0 both policies pick argmax_c theta . [u, v_c]."""
    agent = linear_pair["agent"]
    time_step_spec, action_spec = per_arm_agents.per_arm_specs(DG, DA, C)
    greedy = [
        _REFERENCE_CLASSES[agent](
            time_step_spec,
            action_spec,
            variable_collection=variables,
            alpha=0.0,
            accepts_per_arm_features=True,
        )
        for variables in (linear_pair["variables"], linear_pair["ours"]._variable_collection)
    ]
    users, candidates = problem.rounds(NUM_QUERIES, seed=2)
    reference, ours = (_actions(g.policy, agent, users, candidates) for g in greedy)
    np.testing.assert_array_equal(ours, reference)
    assert len(np.unique(ours)) == C


def test_per_arm_linear_agent_rejects_other_agents_and_dimensions():
    statistics = per_arm_statistics(np.ones((3, DG + DA)), np.ones(3))
    with pytest.raises(ValueError, match="not a per-arm linear agent"):
        per_arm_agents.per_arm_linear_agent_from_statistics(
            agent_names.LINUCB, statistics, DG, C, 1.0, 1.0
        )
    with pytest.raises(ValueError, match="no per-arm features"):
        per_arm_agents.per_arm_linear_agent_from_statistics(
            agent_names.PER_ARM_LINUCB, statistics, DG + DA, C, 1.0, 1.0
        )


# --- NumPy scores are the saved policies' choices -----------------------------------------------


@pytest.mark.parametrize("agent", [agent_names.PER_ARM_LINUCB, agent_names.INTERACTION_LINUCB])
def test_numpy_ucb_scores_pick_what_the_saved_policy_picks(agent, problem, tmp_path):
    users, chosen, rewards = problem.logged()
    trained = per_arm_agents.train_per_arm_linear_agent(
        agent, users, chosen, rewards, C, alpha=1.0, tikhonov_weight=1.0
    )
    loaded = _saved_and_loaded(trained.policy, tmp_path / agent)
    queries = problem.rounds(NUM_QUERIES, seed=3)
    saved = _actions(loaded, agent, *queries)

    statistics = per_arm_statistics(per_arm_features.linear_contexts(agent, users, chosen), rewards)
    scores = per_arm_linear_policy.ucb_scores(
        statistics.cov_matrix,
        statistics.data_vector,
        1.0,
        1.0,
        per_arm_features.linear_contexts(agent, *queries),
    )
    ours = scores.argmax(axis=1)
    # float32 conjugate gradient against float64 Cholesky: only near-ties may differ.
    differ = np.flatnonzero(ours != saved)
    assert len(differ) <= NUM_QUERIES // 1000, differ
    gap = scores[differ, ours[differ]] - scores[differ, saved[differ]]
    assert np.all(gap <= 1e-4 * np.abs(scores[differ]).max(axis=1)), gap
    assert len(np.unique(saved)) == C


def test_saved_lints_policy_samples_from_the_numpy_posterior(problem, tmp_path):
    """One round asked many times: the saved policy's choices follow Normal(mean, alpha * std)."""
    agent, alpha = agent_names.INTERACTION_LINTS, 30.0
    users, chosen, rewards = problem.logged()
    statistics = per_arm_statistics(per_arm_features.linear_contexts(agent, users, chosen), rewards)
    trained = per_arm_agents.per_arm_linear_agent_from_statistics(
        agent, statistics, DG, C, alpha, tikhonov_weight=1.0
    )
    loaded = _saved_and_loaded(trained.policy, tmp_path / agent)
    user, candidates = (np.repeat(q[:1], 5000, axis=0) for q in problem.rounds(1, seed=6))
    saved = np.bincount(_actions(loaded, agent, user, candidates), minlength=C) / 5000

    means, stds = per_arm_linear_policy.mean_and_std(
        statistics.cov_matrix,
        statistics.data_vector,
        1.0,
        per_arm_features.linear_contexts(agent, user[:1], candidates[:1]),
    )
    draws = np.random.default_rng(7).normal(means, alpha * stds, size=(20000, C))
    expected = np.bincount(draws.argmax(axis=1), minlength=C) / 20000
    assert expected.max() < 0.9, expected
    np.testing.assert_allclose(saved, expected, atol=0.03)


# --- the interaction is the whole problem ---------------------------------------------------------


def test_interaction_agent_reaches_the_oracle_where_concatenation_cannot(problem):
    users, chosen, rewards = problem.logged()
    queries = problem.rounds(NUM_QUERIES, seed=4)
    share = {}
    for agent in (agent_names.PER_ARM_LINUCB, agent_names.INTERACTION_LINUCB):
        greedy = per_arm_agents.train_per_arm_linear_agent(
            agent, users, chosen, rewards, C, alpha=0.0, tikhonov_weight=1.0
        )
        share[agent] = problem.share_of_oracle(*queries, _actions(greedy.policy, agent, *queries))
    assert share[agent_names.INTERACTION_LINUCB] >= 0.95, share
    assert share[agent_names.PER_ARM_LINUCB] <= share[agent_names.INTERACTION_LINUCB] - 0.3, share


# --- neural agents ------------------------------------------------------------------------------


def _train_neural(agent: str, problem, epochs: int = 4):
    """(trained agent, per-batch losses) on the logged rows, seeded."""
    tf.random.set_seed(0)
    users, chosen, rewards = problem.logged()
    batches = per_arm_agents.per_arm_batches(users, chosen, rewards, 128, epochs, seed=0)
    if agent == agent_names.PER_ARM_NEURAL_LINUCB:
        encoder = per_arm_agents.common_tower_network(DG, DA, C, TINY["hidden_layers"], 4)
        built = per_arm_agents.per_arm_neural_linucb_agent(
            encoder, DG, DA, C, 4, TINY["learning_rate"], alpha=0.1
        )
        losses = per_arm_agents.train_per_arm_neural_linucb(
            built, encoder, batches, neural_training.array_chunks((users, chosen, rewards))
        )
        return built, losses
    if agent == agent_names.PER_ARM_NEURAL_EPSILON_GREEDY:
        built = per_arm_agents.per_arm_neural_epsilon_greedy_agent(DG, DA, C, **TINY, epsilon=0.0)
    else:
        built = per_arm_agents.dot_product_epsilon_greedy_agent(
            DG, DA, C, (), encoding_dim=4, learning_rate=TINY["learning_rate"], epsilon=0.0
        )
    return built, per_arm_agents.train_per_arm_epsilon_greedy(built, batches)


@pytest.mark.parametrize("agent", agent_names.PER_ARM_NEURAL_AGENTS)
def test_neural_agent_trains_and_its_saved_policy_acts(agent, problem, tmp_path):
    trained, losses = _train_neural(agent, problem)
    assert losses.shape == (-(-N * 4 // 128),)
    assert losses[-5:].mean() < 0.5 * losses[:5].mean(), losses
    loaded = _saved_and_loaded(trained.policy, tmp_path / agent)
    queries = problem.rounds(NUM_QUERIES, seed=5)
    actions = _actions(loaded, agent, *queries)
    assert actions.shape == (NUM_QUERIES,) and actions.dtype == np.int32
    assert actions.min() >= 0 and actions.max() < C
    np.testing.assert_array_equal(actions, _actions(trained.policy, agent, *queries))
    # Uniform choices get about 2% of the oracle here.
    assert problem.share_of_oracle(*queries, actions) > 0.5


def test_neural_linucb_head_equals_tf_agents_linucb_update(problem):
    """The vectorised head is what the agent's own per-arm LinUCB phase accumulates."""
    trained, _ = _train_neural(agent_names.PER_ARM_NEURAL_LINUCB, problem, epochs=1)
    assert not bool(trained.actions_from_reward_layer.numpy())
    ours = (trained.cov_matrix[0].numpy(), trained.data_vector[0].numpy())
    assert trained.num_samples[0].numpy() == N

    for variable in (trained.cov_matrix[0], trained.data_vector[0], trained.num_samples[0]):
        variable.assign(tf.zeros_like(variable))
    users, chosen, rewards = problem.logged()
    for start in range(0, N, 500):
        rows = slice(start, start + 500)
        observation, action, reward = bandit_agent_utils.process_experience_for_neural_agents(
            per_arm_agents.per_arm_trajectory(users[rows], chosen[rows], rewards[rows]),
            True,
            trained.training_data_spec,
        )
        trained.compute_loss_using_linucb(observation, action, tf.cast(reward, tf.float64))
    assert _rel(ours[0], trained.cov_matrix[0].numpy()) < 1e-5
    assert _rel(ours[1], trained.data_vector[0].numpy()) < 1e-5
    assert trained.num_samples[0].numpy() == N


def test_neural_linucb_needs_an_encoding():
    encoder = per_arm_agents.common_tower_network(DG, DA, C, (8,))
    with pytest.raises(ValueError, match="encoding_dim >= 2"):
        per_arm_agents.per_arm_neural_linucb_agent(encoder, DG, DA, C, 1, 0.01, 1.0)


def test_per_arm_batches_cover_every_row_once_per_epoch():
    users = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, DG), np.float32)
    chosen = np.arange(10, dtype=np.float32)[:, None] * np.ones((1, DA), np.float32)
    batches = list(per_arm_agents.per_arm_batches(users, chosen, np.arange(10.0), 4, 3, seed=1))
    assert [len(b[2]) for b in batches] == [4, 4, 4, 4, 4, 4, 4, 2]
    rows = np.concatenate([b[2].numpy() for b in batches])
    for epoch in range(3):
        assert sorted(rows[10 * epoch : 10 * (epoch + 1)]) == list(range(10))
    for u, v, r in batches:
        np.testing.assert_array_equal(u.numpy()[:, 0], r.numpy())
        np.testing.assert_array_equal(v.numpy()[:, DA - 1], r.numpy())
