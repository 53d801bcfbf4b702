"""The simulator's settings name the setting they reject."""

import pytest

from bandit_core.errors import ConfigError
from simulation.simulator import SimulatorConfig


def test_defaults_are_the_demo_loops_traffic():
    config = SimulatorConfig()
    assert config.validate() is config
    assert (config.requests_per_round, config.concurrency, config.rate_per_s) == (1000, 8, 0.0)


@pytest.mark.parametrize(
    "config, message",
    [
        (SimulatorConfig(requests_per_round=0), "simulator.requests_per_round: must be >= 1"),
        (SimulatorConfig(concurrency=0), "simulator.concurrency: must be >= 1"),
        (SimulatorConfig(rate_per_s=-1.0), "simulator.rate_per_s: must be >= 0 (0 = unlimited)"),
    ],
)
def test_bad_config_is_rejected(config, message):
    with pytest.raises(ConfigError) as error:
        config.validate()
    assert str(error.value) == f"invalid setting {message}"
