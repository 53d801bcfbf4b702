"""Saves small LinUCB policies the way BanditTrainer exports them, for serving tests."""

from pathlib import Path

import numpy as np
from tf_agents.policies import policy_saver

from bandit_core.linear_statistics import arm_statistics
from bandit_core.policy_metadata import PolicyMetadata, write_policy_metadata
from custom_components.bandit_trainer.agents import linucb_agent_from_statistics


def save_linucb_policy(policy_dir: Path, seed: int, dim: int = 20, arms: int = 20) -> Path:
    """Fits LinUCB on synthetic linear-reward logs and exports it with PolicySaver."""
    rng = np.random.default_rng(seed)
    observations = rng.normal(size=(2000, dim))
    actions = rng.integers(0, arms, size=2000)
    rewards = np.einsum("nd,nd->n", observations, rng.normal(size=(arms, dim))[actions])
    agent = linucb_agent_from_statistics(
        arm_statistics(observations, actions, rewards, arms), alpha=1.0, tikhonov_weight=1.0
    )
    policy_saver.PolicySaver(agent.policy, batch_size=None).save(str(policy_dir))
    write_policy_metadata(str(policy_dir), PolicyMetadata("LinUCB", dim, arms, 1.0, 1.0))
    return policy_dir
