"""The demo loop's settings: the config's `loop` section.

The section is the simulator's and the trigger's settings plus what only the
loop needs, so each of their fields has one definition, default and check,
and errors still name them `loop.<field>`.
"""

import dataclasses
from typing import ClassVar

from bandit_core.errors import require
from simulation.simulator import SimulatorConfig
from simulation.trigger import TriggerConfig


@dataclasses.dataclass(frozen=True)
class LoopConfig(SimulatorConfig, TriggerConfig):
    """The closed feedback loop of the demo: rounds of serve, log, retrain, reload.

    Attributes beyond the simulator's and the trigger's:
      rounds: serving rounds after the first, each preceded by a trigger check.
      initial_events: uniform-random events the first served policy is trained on.
      reload_timeout_s: how long to wait for the server to hot-reload a pushed policy.
    Round i sends the simulator's traffic with seed `seed + i`.
    """

    SECTION: ClassVar[str] = "loop"

    rounds: int = 4
    initial_events: int = 20_000
    reload_timeout_s: float = 120.0

    def validate(self) -> "LoopConfig":
        """Raises ConfigError naming the first bad setting as `loop.<field>`."""
        require(self.rounds >= 1, "loop.rounds", "must be >= 1")
        require(self.initial_events >= 1, "loop.initial_events", "must be >= 1")
        SimulatorConfig.validate(self)
        TriggerConfig.validate(self)
        require(self.reload_timeout_s > 0.0, "loop.reload_timeout_s", "must be > 0")
        return self
