"""The prediction and reward HTTP server, on Vertex AI's custom-container contract.

The loaded version's sidecar decides the request shape: classic policies
take an observation and return an action; per-arm policies take the user's
features and optional candidate movies and return a movie
(`serving.per_arm_scorer`).

Every served prediction is written to the logger (a durable local spool)
before its response is sent, so an action the client has seen is always in
the logs. Rewards are accepted once per served event, on the reward route or
as reward instances of a predict request (Vertex AI forwards only the predict
route): each gets the same checks and answer either way. Request errors are
answered with 400 and a message naming the field; the server keeps serving.
While the spool is full (its size cap or its disk), predictions and rewards
are answered with 503 saying so, and the server logs that once; it serves
again by itself as soon as shipping or pruning frees space.
"""

import asyncio
import dataclasses
import datetime
import logging
import uuid
from typing import List, Optional, Protocol, Tuple, Union

import numpy as np
from aiohttp import web

from bandit_core.item_catalogue import UnknownItemsError
from bandit_core.policy_metadata import PER_ARM, PolicyMetadata
from bandit_core.user_table import UnknownUsersError
from serving.event_spool import RewardStatus, SpoolFullError
from serving.exploration import action_probabilities, policy_id_suffix, sample_actions
from serving.model_registry import ModelRegistry, ServingModel
from serving.per_arm_scorer import PerArmScorer
from serving.request_schema import (
    PerArmRequest,
    RequestError,
    RewardInstances,
    RewardRequest,
    parse_per_arm_request,
    parse_predict_request,
    parse_reward_request,
)
from serving.settings import ServingSettings

_LOG = logging.getLogger(__name__)
SPOOL_FULL = "spool_full"


class Scorer(Protocol):
    """What the server needs from a loaded policy (serving.policy_scorer's scorers)."""

    metadata: PolicyMetadata
    num_actions: int
    observation_dim: int

    def scores(self, observations: np.ndarray) -> np.ndarray: ...


class PredictionLog(Protocol):
    """The logger's interface (serving.prediction_logger.PredictionLogger)."""

    def log_predictions(self, rows: List[dict]) -> None: ...

    def log_reward(self, event_id: str, row: dict) -> RewardStatus: ...


@dataclasses.dataclass(frozen=True)
class RewardOutcome:
    """What became of one reward: its RewardStatus value (or SPOOL_FULL), HTTP status, error."""

    event_id: str
    status: str
    http_status: int
    error: Optional[str] = None

    def prediction(self) -> dict:
        """The outcome as one prediction of a predict request's answer."""
        answer = {"event_id": self.event_id, "status": self.status}
        return {**answer, "error": self.error} if self.error else answer


class BanditServer:
    """Request handlers around a model registry, the serving settings and a logger."""

    def __init__(
        self,
        registry: ModelRegistry[Union[Scorer, PerArmScorer]],
        logger: PredictionLog,
        settings: ServingSettings,
        rng: Optional[np.random.Generator] = None,
    ) -> None:
        self._registry = registry
        self._logger = logger
        self._batcher = PredictionBatcher(logger)
        self.settings = settings.validate()
        self._rng = rng if rng is not None else np.random.default_rng()
        self._spool_full = False

    def build_app(self) -> web.Application:
        app = web.Application(
            client_max_size=self.settings.max_body_bytes,
            middlewares=[_json_errors],
        )
        app.router.add_get(self.settings.health_route, self.health)
        app.router.add_post(self.settings.predict_route, self.predict)
        app.router.add_post(self.settings.reward_route, self.reward)
        return app

    async def health(self, request: web.Request) -> web.Response:
        """503 until a policy is loaded, so Vertex AI routes no traffic before then."""
        model = self._registry.current
        if model is None:
            return web.json_response(
                {"status": "loading", "error": "no policy loaded yet"}, status=503
            )
        return web.json_response({"status": "ok", "model_version": model.version})

    async def predict(self, request: web.Request) -> web.Response:
        model = self._registry.current  # this request's model, even if a newer one lands meanwhile
        if model is None:
            return _error(503, "no policy loaded yet; retry when the health route returns 200")
        if model.scorer.metadata.problem == PER_ARM:
            return await self._predict_per_arm(model, await request.read())
        try:
            parsed = parse_predict_request(
                await request.read(), model.scorer.observation_dim, self.settings.max_instances
            )
        except RequestError as error:
            return _error(400, str(error))
        if isinstance(parsed, RewardInstances):
            return self._record_rewards(parsed)
        probabilities = action_probabilities(
            self.settings, model.scorer.scores(parsed.observations)
        )
        actions, propensities = sample_actions(probabilities, self._rng)
        rows = self._prediction_rows(
            model, parsed.observations, parsed.user_ids, actions, propensities
        )
        return await self._logged_response(
            rows, ("action", "propensity", "event_id", "model_version")
        )

    async def _predict_per_arm(
        self, model: ServingModel[PerArmScorer], body: bytes
    ) -> web.Response:
        """One movie per instance, from its candidates or `num_candidates` sampled ones."""
        scorer = model.scorer
        try:
            parsed = parse_per_arm_request(
                body,
                scorer.global_dim,
                (scorer.min_candidates, scorer.max_candidates),
                self.settings.max_instances,
            )
            if isinstance(parsed, RewardInstances):
                return self._record_rewards(parsed)
            self._look_up_users(scorer, parsed)
            candidates, features = self._candidates(scorer, parsed)
        except RequestError as error:
            return _error(400, str(error))
        event_time = _now_iso()
        policy_id = scorer.policy_id(self.settings)
        rows = []
        for user, user_id, ids, candidate_features in zip(
            parsed.global_features, parsed.user_ids, candidates, features
        ):
            action, propensity = scorer.choose(user, candidate_features, self.settings, self._rng)
            rows.append(
                {
                    "event_id": uuid.uuid4().hex,
                    "event_time": event_time,
                    "user_id": user_id,
                    "observation": user.tolist(),
                    "action": action,
                    "propensity": propensity,
                    "model_version": model.version,
                    "policy_id": policy_id,
                    "candidate_movie_ids": ids,
                    "movie_id": ids[action],
                }
            )
        return await self._logged_response(
            rows,
            ("movie_id", "propensity", "event_id", "model_version", "candidate_movie_ids"),
            {"candidate_movie_ids": "candidates"},
        )

    @staticmethod
    def _look_up_users(scorer: PerArmScorer, parsed: PerArmRequest) -> None:
        """Fills in the features of the instances that named their user by id alone."""
        if not parsed.by_user_id:
            return
        where = f"instances[{parsed.by_user_id[0]}].user_id"
        if scorer.users is None:
            raise RequestError(
                f"{where}: this model version has no user table; send global_features"
            )
        ids = [parsed.user_ids[i] for i in parsed.by_user_id]
        try:
            parsed.global_features[parsed.by_user_id] = scorer.users.features_of(ids)
        except UnknownUsersError as error:
            first = parsed.by_user_id[ids.index(error.ids[0])]
            raise RequestError(
                f"instances[{first}].user_id: {error} (not in this model version's user "
                "table, which holds the users it was trained on); send global_features"
            ) from None

    def _candidates(
        self, scorer: PerArmScorer, parsed: PerArmRequest
    ) -> Tuple[List[List[int]], List[np.ndarray]]:
        """(each instance's candidate ids, their [C, da] features).

        The request's candidates, or `max_candidates` catalogue movies drawn
        uniformly without replacement with the server's generator, so a seeded
        server draws the same candidates in the same order. All draws come
        before any lookup of the request's ids, so a request refused for an
        unknown id draws as much from the generator as an accepted one.
        """
        drawn = {
            i: scorer.draw_candidates(scorer.max_candidates, self._rng)
            for i, ids in enumerate(parsed.candidates)
            if ids is None
        }
        candidates, features = [], []
        for i, ids in enumerate(parsed.candidates):
            if ids is None:
                ids, arms = drawn[i]
            else:
                arms = self._candidate_features(scorer, ids, f"instances[{i}].candidates")
            candidates.append(ids)
            features.append(arms)
        return candidates, features

    @staticmethod
    def _candidate_features(scorer: PerArmScorer, ids: List[int], where: str) -> np.ndarray:
        try:
            return scorer.candidate_features(ids)
        except UnknownItemsError as error:
            raise RequestError(
                f"{where}: {error} (not in this model version's catalogue)"
            ) from None

    async def _logged_response(
        self, rows: List[dict], fields: Tuple[str, ...], renamed: Optional[dict] = None
    ) -> web.Response:
        """The predictions' `fields` once the rows are logged; 503 if they cannot be."""
        try:
            await self._batcher.log(rows)
        except SpoolFullError as error:
            return self._spool_full_error(error)
        except Exception:  # an unlogged action must not reach the client
            _LOG.exception("could not log %d predictions; refusing the request", len(rows))
            return _error(503, "the prediction could not be logged; retry")
        self._spool_has_room()
        names = {field: (renamed or {}).get(field, field) for field in fields}
        return web.json_response(
            {"predictions": [{names[f]: row[f] for f in fields} for row in rows]}
        )

    async def reward(self, request: web.Request) -> web.Response:
        try:
            parsed = parse_reward_request(await request.read())
        except RequestError as error:
            return _error(400, str(error))
        outcome = self._record_reward(parsed)
        if outcome.error:
            return _error(outcome.http_status, outcome.error)
        return web.json_response({"status": outcome.status})

    def _record_rewards(self, parsed: RewardInstances) -> web.Response:
        """One prediction per reward instance saying what became of it, as the reward route would.

        503 when the spool refused them all for being full, as the reward
        route answers, so the client retries the whole request.
        """
        outcomes = [self._record_reward(reward) for reward in parsed.rewards]
        if all(outcome.status == SPOOL_FULL for outcome in outcomes):
            return _error(503, outcomes[0].error)
        return web.json_response({"predictions": [outcome.prediction() for outcome in outcomes]})

    def _record_reward(self, reward: RewardRequest) -> RewardOutcome:
        """Spools one reward unless its event is unknown, already rewarded, or the spool is full."""
        event_id = reward.event_id
        row = {"event_id": event_id, "reward_time": _now_iso(), "reward": reward.reward}
        try:
            status = self._logger.log_reward(event_id, row)
        except SpoolFullError as error:
            return RewardOutcome(event_id, SPOOL_FULL, 503, self._spool_full_message(error))
        if status is RewardStatus.UNKNOWN_EVENT:
            message = f"event_id: no prediction with id {event_id!r} was served"
            return RewardOutcome(event_id, status.value, 404, message)
        if status is RewardStatus.DUPLICATE:
            message = f"event_id: a reward for {event_id!r} was already recorded"
            return RewardOutcome(event_id, status.value, 409, message)
        self._spool_has_room()
        return RewardOutcome(event_id, status.value, 200)

    def _spool_full_error(self, error: SpoolFullError) -> web.Response:
        return _error(503, self._spool_full_message(error))

    def _spool_full_message(self, error: SpoolFullError) -> str:
        """What is full and what to do; logged once per period of being full."""
        if not self._spool_full:
            self._spool_full = True
            _LOG.error("refusing predictions and rewards until the spool has room: %s", error)
        return f"{error}; retry later"

    def _spool_has_room(self) -> None:
        if self._spool_full:
            self._spool_full = False
            _LOG.info("the spool has room again; serving predictions and rewards")

    def _prediction_rows(
        self,
        model: ServingModel[Scorer],
        observations: np.ndarray,
        user_ids: List[Optional[int]],
        actions: np.ndarray,
        propensities: np.ndarray,
    ) -> List[dict]:
        event_time = _now_iso()
        policy_id = f"{model.scorer.metadata.agent}+{policy_id_suffix(self.settings)}"
        return [
            {
                "event_id": uuid.uuid4().hex,
                "event_time": event_time,
                "user_id": user_id,
                "observation": observation,
                "action": action,
                "propensity": propensity,
                "model_version": model.version,
                "policy_id": policy_id,
            }
            for user_id, observation, action, propensity in zip(
                user_ids, observations.tolist(), actions.tolist(), propensities.tolist()
            )
        ]


class PredictionBatcher:
    """Logs the rows of all requests that are ready in one event-loop turn with one call.

    Each `log_predictions` call is one durable SQLite transaction, the
    largest cost of a prediction; requests arriving together share it. A
    lone request is logged in the very next loop turn, so it waits no longer.
    """

    def __init__(self, logger: PredictionLog) -> None:
        self._logger = logger
        self._waiting: List[Tuple[List[dict], asyncio.Future]] = []

    async def log(self, rows: List[dict]) -> None:
        """Returns once the rows are durable; raises what the logger raised."""
        loop = asyncio.get_running_loop()
        if not self._waiting:
            loop.call_soon(self._flush)
        done = loop.create_future()
        self._waiting.append((rows, done))
        await done

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        try:
            self._logger.log_predictions([row for rows, _ in waiting for row in rows])
        except Exception as error:  # every request of the batch must fail, not only one
            for _, done in waiting:
                if not done.done():
                    done.set_exception(error)
            return
        for _, done in waiting:
            if not done.done():
                done.set_result(None)


async def start_server(server: BanditServer) -> web.AppRunner:
    """Listens on the configured host and port; `runner.addresses` tells the port bound for 0."""
    runner = web.AppRunner(server.build_app(), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, server.settings.host, server.settings.port).start()
    _LOG.info("serving on %s", runner.addresses)
    return runner


@web.middleware
async def _json_errors(request: web.Request, handler) -> web.StreamResponse:
    """Errors as JSON like every other answer; a bug in one request never stops the server."""
    try:
        return await handler(request)
    except web.HTTPException as error:
        return _error(error.status, error.reason if not error.text else error.text)
    except Exception:
        _LOG.exception("unhandled error in %s %s", request.method, request.path)
        return _error(500, "internal error; see the server log")


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


def _now_iso() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat()
