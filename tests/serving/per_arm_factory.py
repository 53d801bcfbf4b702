"""Small per-arm policies trained on a synthetic bilinear problem and exported for serving."""

from pathlib import Path

import numpy as np

from bandit_core import agent_names
from bandit_core.item_catalogue import ItemCatalogue
from custom_components.bandit_trainer.per_arm_export import save_per_arm_policy
from custom_components.bandit_trainer.per_arm_training import (
    PerArmTrainedPolicy,
    train_per_arm_policy,
)
from custom_components.bandit_trainer.settings import TrainerSettings

DG, DA, C, MOVIES, ROWS = 4, 3, 5, 40, 3000
AGENT_EPSILON = 0.2
NEURAL = dict(hidden_layers="16", encoding_dim=4, learning_rate=0.01, batch_size=256, epochs=2)


def catalogue(seed: int = 0) -> ItemCatalogue:
    """MOVIES movies with ids 1..MOVIES and DA features each."""
    features = np.random.default_rng(seed).normal(0.5, 1.0, size=(MOVIES, DA))
    return ItemCatalogue(np.arange(1, MOVIES + 1), features, "synthetic-v1")


def train(agent: str, items: ItemCatalogue, alpha: float = 1.0, seed: int = 0) -> PerArmTrainedPolicy:
    """`agent` trained on ROWS uniformly logged rounds with reward u^T W v + noise."""
    rng = np.random.default_rng(seed)
    weights = rng.normal(size=(DG, DA))
    users = rng.normal(0.5, 1.0, size=(ROWS, DG))
    chosen = items.features[rng.integers(0, len(items), size=ROWS)]
    rewards = np.einsum("ni,ij,nj->n", users, weights, chosen) + rng.normal(0, 0.5, size=ROWS)
    settings = TrainerSettings(agent=agent, alpha=alpha, epsilon=AGENT_EPSILON, **NEURAL)
    return train_per_arm_policy(settings, users, chosen, rewards, C)


def export(agent: str, policy_dir: Path, alpha: float = 1.0) -> PerArmTrainedPolicy:
    """Trains `agent` and saves it with the synthetic catalogue to `policy_dir`."""
    items = catalogue()
    trained = train(agent, items, alpha)
    save_per_arm_policy(trained, items, str(policy_dir))
    return trained


LINUCB_AGENTS = (agent_names.PER_ARM_LINUCB, agent_names.INTERACTION_LINUCB)
LINTS_AGENTS = (agent_names.PER_ARM_LINTS, agent_names.INTERACTION_LINTS)
NEURAL_AGENTS = (
    agent_names.PER_ARM_NEURAL_EPSILON_GREEDY,
    agent_names.DOT_PRODUCT_EPSILON_GREEDY,
    agent_names.PER_ARM_NEURAL_LINUCB,
)
