"""One entry point from logged rows and settings to a trained, exportable policy.

The executor, the agent report and the benchmarks all train through
`train_policy`, so what they measure is what the pipeline ships.
"""

import dataclasses
import time
from typing import Any, Dict, Tuple

import numpy as np
import tensorflow as tf
from tf_agents.policies import policy_saver, tf_policy

from bandit_core import agent_names
from custom_components.bandit_trainer import agents, neural_training
from bandit_core.linear_statistics import arm_statistics
from bandit_core.policy_metadata import PolicyMetadata, write_policy_metadata

# TF-Agents' linear policies ignore the variance below this alpha.
_GREEDY_ALPHA = 1e-12
# NeuralLinUCB's ridge is fixed inside TF-Agents.
_NEURAL_LINUCB_RIDGE = 1.0


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """Which agent to train and its hyper-parameters.

    Attributes:
      agent: one of `agent_names.AGENTS`.
      alpha: exploration width of LinUCB, LinTS and NeuralLinUCB.
      tikhonov_weight: ridge of LinUCB and LinTS.
      epsilon: NeuralEpsilonGreedy's probability of a uniform random action.
      hidden_layers: units of the neural agents' hidden layers.
      encoding_dim: NeuralLinUCB's encoder output size.
      learning_rate: Adam step size of the neural agents.
      batch_size: rows per neural training step.
      epochs: passes over the logged rows for the neural agents.
      seed: seeds network initialisation and shuffling.
    """

    agent: str = agent_names.LINUCB
    alpha: float = 1.0
    tikhonov_weight: float = 1.0
    epsilon: float = 0.05
    hidden_layers: Tuple[int, ...] = (64, 64)
    encoding_dim: int = 32
    learning_rate: float = 0.005
    batch_size: int = 4096
    epochs: int = 30
    seed: int = 0

    def validate(self) -> "TrainerSettings":
        """Raises ValueError naming the first bad setting."""
        checks = [
            (self.agent in agent_names.AGENTS, "agent", f"must be one of {', '.join(agent_names.AGENTS)}"),
            (self.alpha >= 0.0, "alpha", "must be >= 0"),
            (self.tikhonov_weight > 0.0, "tikhonov_weight", "must be > 0"),
            (0.0 <= self.epsilon <= 1.0, "epsilon", "must be in [0, 1]"),
            (
                len(self.hidden_layers) >= 1 and all(u >= 1 for u in self.hidden_layers),
                "hidden_layers",
                "must be one or more positive layer sizes",
            ),
            (self.encoding_dim >= 1, "encoding_dim", "must be >= 1"),
            (self.learning_rate > 0.0, "learning_rate", "must be > 0"),
            (self.batch_size >= 1, "batch_size", "must be >= 1"),
            (self.epochs >= 1, "epochs", "must be >= 1"),
            (self.seed >= 0, "seed", "must be >= 0"),
        ]
        for ok, name, message in checks:
            if not ok:
                raise ValueError(f"trainer setting {name}={getattr(self, name)!r} {message}")
        return self

    def hyperparameters(self) -> Dict[str, Any]:
        """The settings this agent actually uses, for the policy sidecar."""
        if self.agent in agent_names.LINEAR_AGENTS:
            names = ("alpha", "tikhonov_weight")
        elif self.agent == agent_names.NEURAL_EPSILON_GREEDY:
            names = ("epsilon", "hidden_layers", "learning_rate", "batch_size", "epochs", "seed")
        else:
            names = (
                "alpha", "hidden_layers", "encoding_dim", "learning_rate", "batch_size", "epochs",
                "seed",
            )
        values = {name: getattr(self, name) for name in names}
        if "hidden_layers" in values:
            values["hidden_layers"] = list(values["hidden_layers"])
        return values


def parse_hidden_layers(text: str) -> Tuple[int, ...]:
    """"64,32" -> (64, 32); the component and config carry layer sizes as text."""
    try:
        layers = tuple(int(part) for part in text.split(","))
    except ValueError as e:
        raise ValueError(
            f"hidden_layers {text!r} must be comma-separated positive integers, e.g. '64,32'"
        ) from e
    if not layers or min(layers) < 1:
        raise ValueError(f"hidden_layers {text!r} must be comma-separated positive integers")
    return layers


@dataclasses.dataclass(frozen=True)
class TrainedPolicy:
    """A trained agent's policy, its sidecar and what training cost."""

    agent: Any
    policy: tf_policy.TFPolicy
    metadata: PolicyMetadata
    training_seconds: float
    rows_per_arm: np.ndarray


def train_policy(
    settings: TrainerSettings,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    num_actions: int,
) -> TrainedPolicy:
    """Trains `settings.agent` off-policy on logged rows.

    Args:
      settings: validated agent choice and hyper-parameters.
      observations: [N, d] logged contexts.
      actions: [N] logged actions in [0, num_actions).
      rewards: [N] logged rewards.
      num_actions: K.
    """
    settings.validate()
    observation_dim = observations.shape[1]
    started = time.perf_counter()
    if settings.agent in agent_names.LINEAR_AGENTS:
        statistics = arm_statistics(observations, actions, rewards, num_actions)
        agent = agents.linear_agent_from_statistics(
            settings.agent, statistics, settings.alpha, settings.tikhonov_weight
        )
        rows_per_arm = statistics.num_samples
    else:
        rows_per_arm = np.bincount(actions, minlength=num_actions).astype(np.float64)
        agent = _train_neural(settings, observations, actions, rewards, num_actions)
    seconds = time.perf_counter() - started
    return TrainedPolicy(
        agent=agent,
        policy=agent.policy,
        metadata=policy_metadata(settings, observation_dim, num_actions),
        training_seconds=seconds,
        rows_per_arm=rows_per_arm,
    )


def _train_neural(
    settings: TrainerSettings,
    observations: np.ndarray,
    actions: np.ndarray,
    rewards: np.ndarray,
    num_actions: int,
):
    tf.random.set_seed(settings.seed)
    observation_dim = observations.shape[1]
    batches = neural_training.logged_batches(
        observations, actions, rewards, settings.batch_size, settings.epochs, settings.seed
    )
    if settings.agent == agent_names.NEURAL_EPSILON_GREEDY:
        agent = agents.neural_epsilon_greedy_agent(
            observation_dim,
            num_actions,
            settings.hidden_layers,
            settings.learning_rate,
            settings.epsilon,
        )
        neural_training.train_neural_epsilon_greedy(agent, batches, observation_dim)
        return agent
    encoder = agents.mlp_encoder(observation_dim, settings.hidden_layers, settings.encoding_dim)
    agent = agents.neural_linucb_agent(
        encoder,
        observation_dim,
        num_actions,
        settings.encoding_dim,
        settings.learning_rate,
        settings.alpha,
    )
    neural_training.train_neural_linucb(agent, encoder, batches, observations, actions, rewards)
    return agent


def policy_metadata(
    settings: TrainerSettings, observation_dim: int, num_actions: int
) -> PolicyMetadata:
    """The sidecar: 0 for alpha/tikhonov_weight where an agent has no such setting."""
    uses_alpha = settings.agent != agent_names.NEURAL_EPSILON_GREEDY
    if settings.agent in agent_names.LINEAR_AGENTS:
        ridge = settings.tikhonov_weight
    elif settings.agent == agent_names.NEURAL_LINUCB:
        ridge = _NEURAL_LINUCB_RIDGE
    else:
        ridge = 0.0
    stochastic = (settings.agent == agent_names.LINTS and settings.alpha >= _GREEDY_ALPHA) or (
        settings.agent == agent_names.NEURAL_EPSILON_GREEDY and settings.epsilon > 0.0
    )
    return PolicyMetadata(
        agent=settings.agent,
        observation_dim=observation_dim,
        num_actions=num_actions,
        alpha=settings.alpha if uses_alpha else 0.0,
        tikhonov_weight=ridge,
        stochastic=stochastic,
        hyperparameters=settings.hyperparameters(),
    )


def save_policy(trained: TrainedPolicy, policy_dir: str) -> None:
    """PolicySaver SavedModel plus the bandit_policy.json sidecar."""
    policy_saver.PolicySaver(trained.policy, batch_size=None).save(policy_dir)
    write_policy_metadata(policy_dir, trained.metadata)
