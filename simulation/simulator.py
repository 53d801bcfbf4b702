"""Plays MovieLens users against a prediction service and reports their rewards.

Each simulated request is one sampled user; the reward posted back is that
same user's reward for the action that was served (the anchor sample paired
the action with a random user's reward, which makes learning impossible).
What a request carries and how a user rewards depend on the problem (see
`simulated_users`). The service is a local server's routes (`LocalServer`) or
a Vertex AI endpoint (`simulation.vertex_endpoint`); the traffic loop is the same.
"""

import asyncio
import collections
import dataclasses
import time
from typing import Any, ClassVar, Counter, Dict, List, Optional, Protocol

import aiohttp
import numpy as np

from bandit_core.errors import require
from simulation.simulated_users import PredictionError, SimulatedUsers


@dataclasses.dataclass(frozen=True)
class SimulatorConfig:
    """How much traffic one simulation round sends.

    Attributes:
      requests_per_round: single-user predictions sent, each rewarded.
      concurrency: requests in flight at once.
      rate_per_s: requests started per second; 0 sends as fast as answered.
      seed: seeds the sampled users.
    """

    # Names the settings in errors; a section that includes these fields overrides it.
    SECTION: ClassVar[str] = "simulator"

    requests_per_round: int = 1000
    concurrency: int = 8
    rate_per_s: float = 0.0
    seed: int = 0

    def validate(self) -> "SimulatorConfig":
        """Raises ConfigError naming the first bad setting as `<SECTION>.<field>`."""
        section = self.SECTION
        require(self.requests_per_round >= 1, f"{section}.requests_per_round", "must be >= 1")
        require(self.concurrency >= 1, f"{section}.concurrency", "must be >= 1")
        require(self.rate_per_s >= 0.0, f"{section}.rate_per_s", "must be >= 0 (0 = unlimited)")
        return self


@dataclasses.dataclass(frozen=True)
class RoundReport:
    """What one round of simulated traffic saw."""

    events: int
    average_reward: float
    average_regret: float
    model_versions: Counter
    errors: List[str]
    seconds: float


@dataclasses.dataclass
class _Tally:
    rewards: List[float] = dataclasses.field(default_factory=list)
    regrets: List[float] = dataclasses.field(default_factory=list)
    versions: Counter = dataclasses.field(default_factory=collections.Counter)
    errors: List[str] = dataclasses.field(default_factory=list)


class ServiceError(RuntimeError):
    """A request the prediction service did not answer as asked; the message says how."""


class PredictionService(Protocol):
    """Where the Simulator's requests go; entered once per round, inside its event loop."""

    async def __aenter__(self) -> "PredictionService": ...

    async def __aexit__(self, *exc_info: object) -> None: ...

    async def predict(self, instance: Dict[str, Any]) -> Dict[str, Any]:
        """The one prediction served for `instance`; raises ServiceError."""

    async def reward(self, event_id: str, reward: float) -> None:
        """Reports a served event's reward; raises ServiceError unless it was accepted."""


class LocalServer:
    """A prediction server's own predict and reward routes at `url`, over aiohttp."""

    def __init__(self, url: str, predict_route: str = "/predict", reward_route: str = "/reward"):
        self._url = url
        self._predict_route = predict_route
        self._reward_route = reward_route
        self._session: Optional[aiohttp.ClientSession] = None

    async def __aenter__(self) -> "LocalServer":
        timeout = aiohttp.ClientTimeout(total=30)
        self._session = aiohttp.ClientSession(base_url=self._url, timeout=timeout)
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._session.close()

    async def predict(self, instance: Dict[str, Any]) -> Dict[str, Any]:
        payload = {"instances": [instance]}
        async with self._session.post(self._predict_route, json=payload) as response:
            body = await response.json(content_type=None)
            if response.status != 200:
                raise ServiceError(f"predict HTTP {response.status}: {body}")
        return body["predictions"][0]

    async def reward(self, event_id: str, reward: float) -> None:
        payload = {"event_id": event_id, "reward": reward}
        async with self._session.post(self._reward_route, json=payload) as response:
            if response.status != 200:
                raise ServiceError(f"reward HTTP {response.status}: {await response.text()}")


def run_round(
    server_url: str,
    users: SimulatedUsers,
    config: SimulatorConfig,
    predict_route: str = "/predict",
    reward_route: str = "/reward",
) -> RoundReport:
    """Sends `config.requests_per_round` single-user predictions to a local server."""
    return simulate(LocalServer(server_url, predict_route, reward_route), users, config)


def simulate(
    service: PredictionService, users: SimulatedUsers, config: SimulatorConfig
) -> RoundReport:
    """Sends `config.requests_per_round` single-user predictions to `service`; reports rewards."""
    return asyncio.run(_run_round(service, users, config.validate()))


async def _run_round(
    service: PredictionService, users: SimulatedUsers, config: SimulatorConfig
) -> RoundReport:
    rng = np.random.default_rng(config.seed)
    sampled = rng.integers(0, users.num_users, size=config.requests_per_round)
    queue: asyncio.Queue = asyncio.Queue()
    started = time.perf_counter()
    for index, user in enumerate(sampled):
        queue.put_nowait((index, int(user)))
    tally = _Tally()
    async with service:
        workers = [
            asyncio.create_task(_worker(service, queue, users, config, started, tally, rng))
            for _ in range(config.concurrency)
        ]
        await asyncio.gather(*workers)
    return RoundReport(
        events=len(tally.rewards),
        average_reward=float(np.mean(tally.rewards)) if tally.rewards else float("nan"),
        average_regret=float(np.mean(tally.regrets)) if tally.regrets else float("nan"),
        model_versions=tally.versions,
        errors=tally.errors,
        seconds=time.perf_counter() - started,
    )


async def _worker(
    service: PredictionService,
    queue: asyncio.Queue,
    users: SimulatedUsers,
    config: SimulatorConfig,
    started: float,
    tally: _Tally,
    rng: np.random.Generator,
) -> None:
    while not queue.empty():
        index, user = queue.get_nowait()
        if config.rate_per_s:
            delay = started + index / config.rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        error = await _serve_one(service, users, user, tally, rng)
        if error:
            tally.errors.append(error)


async def _serve_one(
    service: PredictionService,
    users: SimulatedUsers,
    user: int,
    tally: _Tally,
    rng: np.random.Generator,
) -> Optional[str]:
    """Serves one user and reports that user's reward; what went wrong, if anything."""
    try:
        prediction = await service.predict(users.instance(user))
    except ServiceError as error:
        return str(error)
    try:
        reward, regret = users.outcome(user, prediction, rng)
    except PredictionError as error:
        return f"predict answered {prediction}: {error}"
    try:
        await service.reward(prediction["event_id"], reward)
    except ServiceError as error:
        return str(error)
    tally.rewards.append(reward)
    tally.regrets.append(regret)
    tally.versions[prediction["model_version"]] += 1
    return None
