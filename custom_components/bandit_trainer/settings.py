"""The trainer's settings: the config's `trainer` section and BanditTrainer's parameters.

One definition of every field, default and check, so the JSON config, the
component's execution parameters and the training code cannot disagree.
"""

import dataclasses
from typing import Any, Dict, Tuple

from bandit_core import agent_names
from bandit_core.errors import require
from bandit_core.whole_numbers import is_whole_number


@dataclasses.dataclass(frozen=True)
class TrainerSettings:
    """The TF-Agents agent and its hyper-parameters; an agent ignores settings it does not use.

    Attributes:
      agent: one of `agent_names.AGENTS` (the classic problem) or
        `agent_names.PER_ARM_AGENTS` (the per-arm problem).
      alpha: exploration width of LinUCB, LinTS and NeuralLinUCB.
      tikhonov_weight: ridge of LinUCB and LinTS.
      epsilon: NeuralEpsilonGreedy's probability of a uniform random action.
      hidden_layers: units of the neural agents' hidden layers as text, e.g.
        "64,64", because config values and TFX execution parameters are scalars.
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
    hidden_layers: str = "64,64"
    encoding_dim: int = 32
    learning_rate: float = 0.005
    batch_size: int = 4096
    epochs: int = 30
    seed: int = 0

    def validate(self) -> "TrainerSettings":
        """Raises ConfigError naming the first bad setting as `trainer.<field>`."""
        require(
            self.agent in agent_names.AGENTS + agent_names.PER_ARM_AGENTS,
            "trainer.agent",
            f"{self.agent!r} is not supported; choose one of {', '.join(agent_names.AGENTS)} "
            f"(classic problem) or {', '.join(agent_names.PER_ARM_AGENTS)} (per-arm problem)",
        )
        require(self.alpha >= 0.0, "trainer.alpha", "must be >= 0")
        require(self.tikhonov_weight > 0.0, "trainer.tikhonov_weight", "must be > 0")
        require(0.0 <= self.epsilon <= 1.0, "trainer.epsilon", "must be in [0, 1]")
        require(
            all(_is_positive_integer(part) for part in self.hidden_layers.split(",")),
            "trainer.hidden_layers",
            'must be comma-separated positive integers, e.g. "64,64"',
        )
        require(self.encoding_dim >= 1, "trainer.encoding_dim", "must be >= 1")
        require(self.learning_rate > 0.0, "trainer.learning_rate", "must be > 0")
        require(self.batch_size >= 1, "trainer.batch_size", "must be >= 1")
        require(self.epochs >= 1, "trainer.epochs", "must be >= 1")
        require(self.seed >= 0, "trainer.seed", "must be >= 0")
        return self

    @property
    def layer_sizes(self) -> Tuple[int, ...]:
        """`hidden_layers` as the ints the networks are built from: "64,32" -> (64, 32)."""
        return tuple(int(part) for part in self.hidden_layers.split(","))

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
            values["hidden_layers"] = list(self.layer_sizes)
        return values


def _is_positive_integer(text: str) -> bool:
    """A whole number >= 1, surrounding spaces allowed ("64, 32")."""
    digits = text.strip()
    return is_whole_number(digits) and int(digits) >= 1
