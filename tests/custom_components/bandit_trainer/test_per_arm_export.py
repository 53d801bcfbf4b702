"""Per-arm export: TF-Agents loads the SavedModel and acts; sidecar and catalogue travel with it."""

import numpy as np
import pytest
import tensorflow as tf

from bandit_core import agent_names, per_arm_features, saved_policy
from bandit_core.item_catalogue import CATALOGUE_DIR, ItemCatalogue
from bandit_core.policy_metadata import GREEDY_POLICY_DIR, PER_ARM, read_policy_metadata
from custom_components.bandit_trainer.per_arm_export import save_per_arm_policy
from tests.serving.per_arm_factory import AGENT_EPSILON, DA, DG, C, catalogue, export, train


@pytest.mark.parametrize(
    "agent", [agent_names.INTERACTION_LINUCB, agent_names.PER_ARM_NEURAL_EPSILON_GREEDY]
)
def test_exported_policy_loads_in_tf_agents_and_acts_on_per_arm_steps(agent, tmp_path):
    export(agent, tmp_path)
    loaded = tf.saved_model.load(str(tmp_path))
    items = ItemCatalogue.load(str(tmp_path / CATALOGUE_DIR))
    rng = np.random.default_rng(1)
    users = rng.normal(size=(8, DG))
    candidates = items.features_of(rng.choice(items.movie_ids, size=8 * C).tolist()).reshape(8, C, DA)
    seen = per_arm_features.policy_arm_features(agent, users, candidates)
    actions = loaded.action(saved_policy.per_arm_time_step(users, seen)).action.numpy()
    assert actions.shape == (8,) and np.all((0 <= actions) & (actions < C))

    metadata = read_policy_metadata(str(tmp_path))
    assert (metadata.problem, metadata.agent) == (PER_ARM, agent)
    assert (metadata.global_dim, metadata.arm_dim, metadata.num_candidates) == (DG, DA, C)
    assert (metadata.observation_dim, metadata.num_actions) == (DG, C)
    np.testing.assert_array_equal(items.features, catalogue().features)
    epsilon_greedy = agent == agent_names.PER_ARM_NEURAL_EPSILON_GREEDY
    assert metadata.epsilon == (AGENT_EPSILON if epsilon_greedy else 0.0)
    assert metadata.stochastic == epsilon_greedy
    assert (tmp_path / GREEDY_POLICY_DIR / "saved_model.pb").exists() == epsilon_greedy
    if not epsilon_greedy:
        assert (metadata.alpha, metadata.tikhonov_weight) == (1.0, 1.0)


def test_catalogue_features_must_match_the_policy(tmp_path):
    trained = train(agent_names.PER_ARM_LINUCB, catalogue())
    wrong = ItemCatalogue([1, 2, 3, 4, 5], np.zeros((5, DA + 1)), "other")
    with pytest.raises(ValueError, match="the policy observes 3"):
        save_per_arm_policy(trained, wrong, str(tmp_path))
