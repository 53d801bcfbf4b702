"""Rewards as instances of a predict request, the only route a Vertex AI endpoint forwards.

The real server on 127.0.0.1 over the real SQLite spool: each reward instance
gets the reward route's checks and outcome, a bad one refuses the whole request
before anything is recorded, and a request mixing predictions and rewards is
refused saying how to send them.
"""

import asyncio
from typing import List

import pytest

from bandit_core import agent_names
from serving.__main__ import SCORERS
from serving.model_registry import ModelRegistry
from tests.serving.per_arm_factory import export
from tests.serving.test_server import (
    RecordingLogger,
    loaded_registry,
    observation,
    policies,  # noqa: F401 - the module-scoped fixture of trained policies
    post,
    push,
    serving,
)

PREDICT = {"instances": [{"observation": observation(seed)} for seed in range(3)]}


def served_event_ids(answer: tuple) -> List[str]:
    status, body = answer
    assert status == 200, body
    return [prediction["event_id"] for prediction in body["predictions"]]


def rewards(*pairs) -> dict:
    return {"instances": [{"event_id": event_id, "reward": reward} for event_id, reward in pairs]}


@pytest.fixture
def registry(tmp_path, policies):  # noqa: F811
    return loaded_registry(push(policies[0], tmp_path, "1"))


def test_each_reward_instance_is_answered_with_what_the_reward_route_does(registry):
    logger = RecordingLogger()

    async def scenario():
        async with serving(registry, logger) as session:
            first, second, third = served_event_ids(await post(session, "/predict", PREDICT))
            batch = rewards((first, 4.5), (second, 3), ("0" * 32, 1.0), (first, 2.0))
            through_predict = await post(session, "/predict", batch)
            on_reward_route = [
                await post(session, "/reward", {"event_id": second, "reward": 1.0}),
                await post(session, "/reward", {"event_id": third, "reward": -2.5}),
            ]
            after_reward_route = await post(session, "/predict", rewards((third, 0.0)))
            return (first, second, third), through_predict, on_reward_route, after_reward_route

    (first, second, third), (status, body), on_route, after = asyncio.run(scenario())
    assert status == 200
    assert body["predictions"] == [
        {"event_id": first, "status": "accepted"},
        {"event_id": second, "status": "accepted"},
        {
            "event_id": "0" * 32,
            "status": "unknown_event",
            "error": f"event_id: no prediction with id {'0' * 32!r} was served",
        },
        {
            "event_id": first,
            "status": "duplicate",
            "error": f"event_id: a reward for {first!r} was already recorded",
        },
    ]
    duplicate = f"event_id: a reward for {second!r} was already recorded"
    assert on_route[0] == (409, {"error": duplicate})
    assert on_route[1] == (200, {"status": "accepted"})
    assert after[1]["predictions"] == [
        {
            "event_id": third,
            "status": "duplicate",
            "error": f"event_id: a reward for {third!r} was already recorded",
        }
    ]
    spooled = [(row["event_id"], row["reward"]) for row in logger.rewards]
    assert spooled == [(first, 4.5), (second, 3.0), (third, -2.5)]
    assert all(row["reward_time"].endswith("+00:00") for row in logger.rewards)


@pytest.mark.parametrize(
    "instances, message",
    [
        (
            [{"event_id": "{event}", "reward": 1.0}, {"observation": [0.0] * 20}],
            "instances: instances[0] reports a reward (event_id, reward) but instances[1] asks "
            "for a prediction; a request holds either predictions or rewards: send the rewards "
            "in a request of their own",
        ),
        (
            [{"observation": [0.0] * 20}, {"reward": 1.0}],
            "instances: instances[1] reports a reward (event_id, reward) but instances[0] asks",
        ),
        (
            [{"event_id": "{event}", "reward": 1.0}, {"event_id": "{event}", "reward": "high"}],
            "instances[1].reward: expected a number, got string",
        ),
        (
            [{"event_id": "{event}", "reward": 11}],
            "instances[0].reward: 11 is outside the allowed range [-5.0, 10.0]",
        ),
        ([{"reward": 1.0}], "instances[0].event_id: required field is missing"),
        (
            [{"event_id": "{event}", "reward": 1.0, "user_id": 3}],
            "instances[0].user_id: unexpected field (allowed: event_id, reward)",
        ),
        (
            [{"event_id": "{event}", "reward": 1.0}, 7],
            "instances[1]: expected an object, got number",
        ),
    ],
    ids=["mixed", "mixed-prediction-first", "bad-reward", "outside-contract", "no-event-id",
         "unknown-field", "not-an-object"],
)
def test_a_bad_reward_instance_refuses_the_request_and_records_nothing(
    registry, instances, message
):
    logger = RecordingLogger()

    async def scenario():
        async with serving(registry, logger) as session:
            (event,) = served_event_ids(
                await post(session, "/predict", {"instances": [{"observation": observation()}]})
            )
            body = {
                "instances": [
                    {k: v.format(event=event) if isinstance(v, str) else v for k, v in x.items()}
                    if isinstance(x, dict)
                    else x
                    for x in instances
                ]
            }
            return await post(session, "/predict", body)

    status, body = asyncio.run(scenario())
    assert status == 400 and body["error"].startswith(message), body
    assert logger.rewards == []


def test_a_per_arm_policy_takes_reward_instances_too(tmp_path):
    export(agent_names.PER_ARM_LINUCB, tmp_path / "per_arm" / "1")
    registry = ModelRegistry(str(tmp_path / "per_arm"), SCORERS["numpy"])
    assert registry.refresh() is not None
    logger = RecordingLogger()
    user = {"global_features": [0.3, -1.2, 0.8, 1.5], "candidates": [3, 17, 8, 25, 40]}

    async def scenario():
        async with serving(registry, logger) as session:
            (event,) = served_event_ids(await post(session, "/predict", {"instances": [user]}))
            return event, await post(session, "/predict", rewards((event, 5.0)))

    event, answer = asyncio.run(scenario())
    assert answer == (200, {"predictions": [{"event_id": event, "status": "accepted"}]})
    assert [(row["event_id"], row["reward"]) for row in logger.rewards] == [(event, 5.0)]


def test_rewards_a_full_spool_refuses_are_answered_503_as_on_the_reward_route(registry):
    logger = RecordingLogger(max_bytes=64 * 1024)
    one = {"instances": [{"observation": observation()}]}

    async def scenario():
        async with serving(registry, logger) as session:
            answers = [await post(session, "/predict", one)]
            while answers[-1][0] == 200 and len(answers) < 1000:
                answers.append(await post(session, "/predict", one))
            event = answers[0][1]["predictions"][0]["event_id"]
            refused = await post(session, "/predict", rewards((event, 1.0)))
            on_route = await post(session, "/reward", {"event_id": event, "reward": 1.0})
            shipped = logger.spool.peek(20)  # as the shipper removes rows BigQuery confirmed
            logger.spool.remove(record.seq for record in shipped)
            return refused, on_route, await post(session, "/predict", rewards((event, 1.0)))

    refused, on_route, recovered = asyncio.run(scenario())
    assert refused[0] == on_route[0] == 503
    assert refused[1]["error"] == on_route[1]["error"]
    assert refused[1]["error"].endswith("retry later") and "predictions" not in refused[1]
    assert recovered[0] == 200 and recovered[1]["predictions"][0]["status"] == "accepted"

