"""The prediction server's settings: the config's `serving` section and the container's environment.

One definition of every field, default and check, so the JSON config, the
demo's server process and the Vertex AI container cannot disagree.
"""

import dataclasses
import math
import typing
from typing import Any, Dict, Mapping, Optional, Tuple

from bandit_core.errors import ConfigError, require

STRATEGIES: Tuple[str, ...] = ("epsilon_greedy", "boltzmann")

# The container reads each field from one variable: Vertex AI's AIP_* where
# Vertex sets one, MLBANDITS_* otherwise.
ENVIRONMENT: Mapping[str, str] = {
    "host": "MLBANDITS_HOST",
    "port": "AIP_HTTP_PORT",
    "exploration": "MLBANDITS_EXPLORATION",
    "epsilon": "MLBANDITS_EPSILON",
    "temperature": "MLBANDITS_TEMPERATURE",
    "max_instances": "MLBANDITS_MAX_INSTANCES",
    "health_route": "AIP_HEALTH_ROUTE",
    "predict_route": "AIP_PREDICT_ROUTE",
    "reward_route": "MLBANDITS_REWARD_ROUTE",
    "max_body_bytes": "MLBANDITS_MAX_BODY_BYTES",
    "thompson_samples": "MLBANDITS_THOMPSON_SAMPLES",
}


@dataclasses.dataclass(frozen=True)
class ServingSettings:
    """Where the server listens, what it accepts and how it explores around the policy.

    Attributes:
      host: the address to bind.
      port: the port to bind; 0 takes any free port, which suits local runs.
        The container's entry point defaults to Vertex AI's 8080 instead.
      exploration: "epsilon_greedy" or "boltzmann".
      epsilon: epsilon-greedy's share of uniform exploration, in [0, 1].
      temperature: Boltzmann's softmax temperature, finite and > 0.
      max_instances: the most instances one predict request may hold.
      health_route, predict_route, reward_route: the HTTP routes; Vertex AI
        sets the first two through AIP_HEALTH_ROUTE and AIP_PREDICT_ROUTE.
      max_body_bytes: the largest request body accepted.
      thompson_samples: S, the draws from a per-arm LinTS posterior per
        prediction; the served action's propensity is its frequency among
        them, off by a binomial standard deviation sqrt(p (1 - p) / S).
    """

    host: str = "127.0.0.1"
    port: int = 0
    exploration: str = "epsilon_greedy"
    epsilon: float = 0.1
    temperature: float = 1.0
    max_instances: int = 1000
    health_route: str = "/health"
    predict_route: str = "/predict"
    reward_route: str = "/reward"
    max_body_bytes: int = 8 * 1024 * 1024
    thompson_samples: int = 1000

    def validate(self, names: Optional[Mapping[str, str]] = None) -> "ServingSettings":
        """Raises ConfigError naming the first bad setting.

        A setting is named `serving.<field>`, or `names[field]` when given, so
        the container's errors name the environment variable to fix.
        """

        def setting(*fields: str) -> str:
            if names is None:
                return f"serving.{'/'.join(fields)}"
            return "/".join(names[field] for field in fields)

        require(0 <= self.port <= 65535, setting("port"), "must be 0 (any free port) .. 65535")
        require(
            self.exploration in STRATEGIES,
            setting("exploration"),
            f"{self.exploration!r} is not one of {', '.join(STRATEGIES)}",
        )
        require(0.0 <= self.epsilon <= 1.0, setting("epsilon"), "must be in [0, 1]")
        require(
            math.isfinite(self.temperature) and self.temperature > 0.0,
            setting("temperature"),
            "must be finite and > 0",
        )
        require(self.max_instances >= 1, setting("max_instances"), "must be >= 1")
        route_fields = ("health_route", "predict_route", "reward_route")
        routes = [getattr(self, field) for field in route_fields]
        for field, route in zip(route_fields, routes):
            require(route.startswith("/"), setting(field), f"{route!r} must start with '/'")
        require(len(set(routes)) == len(routes), setting(*route_fields), "must differ")
        require(self.max_body_bytes >= 1, setting("max_body_bytes"), "must be >= 1")
        require(self.thompson_samples >= 1, setting("thompson_samples"), "must be >= 1")
        return self

    def environment(self) -> Dict[str, str]:
        """These settings as the container's environment variables."""
        return {name: str(getattr(self, field)) for field, name in ENVIRONMENT.items()}

    @classmethod
    def from_environment(cls, env: Mapping[str, str], **defaults: Any) -> "ServingSettings":
        """Validated settings: each field from its variable in `env`, else `defaults`, else default.

        Raises ConfigError naming the variable. An empty number reads as unset;
        an empty text is a value.
        """
        kinds = typing.get_type_hints(cls)
        values = dict(defaults)
        for field, name in ENVIRONMENT.items():
            text = env.get(name)
            if text is None or (text == "" and kinds[field] is not str):
                continue
            values[field] = _parse(text, kinds[field], name)
        return cls(**values).validate(names=ENVIRONMENT)


def _parse(text: str, kind: type, name: str) -> Any:
    if kind is str:
        return text
    try:
        return kind(text)
    except ValueError:
        raise ConfigError(
            f"invalid setting {name}: expected {kind.__name__}, got {text!r}"
        ) from None
