"""Plays MovieLens users against the prediction server and reports their rewards.

Each simulated request is one sampled user; the reward posted back is that
same user's reward for the action that was served (the anchor sample paired
the action with a random user's reward, which makes learning impossible).
What a request carries and how a user rewards depend on the problem (see
`simulated_users`).
"""

import asyncio
import collections
import dataclasses
import time
from typing import ClassVar, Counter, List, Optional

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


def run_round(
    server_url: str,
    users: SimulatedUsers,
    config: SimulatorConfig,
    predict_route: str = "/predict",
    reward_route: str = "/reward",
) -> RoundReport:
    """Sends `config.requests_per_round` single-user predictions and reports rewards."""
    return asyncio.run(
        _run_round(server_url, users, config.validate(), predict_route, reward_route)
    )


async def _run_round(
    server_url: str,
    users: SimulatedUsers,
    config: SimulatorConfig,
    predict_route: str,
    reward_route: str,
) -> RoundReport:
    rng = np.random.default_rng(config.seed)
    sampled = rng.integers(0, users.num_users, size=config.requests_per_round)
    queue: asyncio.Queue = asyncio.Queue()
    started = time.perf_counter()
    for index, user in enumerate(sampled):
        queue.put_nowait((index, int(user)))
    tally = _Tally()
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(base_url=server_url, timeout=timeout) as session:
        workers = [
            asyncio.create_task(
                _worker(
                    session, queue, users, config, started, tally, rng, predict_route, reward_route
                )
            )
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
    session: aiohttp.ClientSession,
    queue: asyncio.Queue,
    users: SimulatedUsers,
    config: SimulatorConfig,
    started: float,
    tally: _Tally,
    rng: np.random.Generator,
    predict_route: str,
    reward_route: str,
) -> None:
    while not queue.empty():
        index, user = queue.get_nowait()
        if config.rate_per_s:
            delay = started + index / config.rate_per_s - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
        error = await _serve_one(session, users, user, tally, rng, predict_route, reward_route)
        if error:
            tally.errors.append(error)


async def _serve_one(
    session: aiohttp.ClientSession,
    users: SimulatedUsers,
    user: int,
    tally: _Tally,
    rng: np.random.Generator,
    predict_route: str,
    reward_route: str,
) -> Optional[str]:
    async with session.post(
        predict_route, json={"instances": [users.instance(user)]}
    ) as response:
        body = await response.json(content_type=None)
        if response.status != 200:
            return f"predict HTTP {response.status}: {body}"
    prediction = body["predictions"][0]
    try:
        reward, regret = users.outcome(user, prediction, rng)
    except PredictionError as error:
        return f"predict answered {prediction}: {error}"
    payload = {"event_id": prediction["event_id"], "reward": reward}
    async with session.post(reward_route, json=payload) as response:
        if response.status != 200:
            return f"reward HTTP {response.status}: {await response.text()}"
    tally.rewards.append(reward)
    tally.regrets.append(regret)
    tally.versions[prediction["model_version"]] += 1
    return None
