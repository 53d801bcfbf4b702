"""Every malformed request is refused with a message that names the field."""

import json

import numpy as np
import pytest

from serving.request_schema import (
    RequestError,
    parse_predict_request,
    parse_reward_request,
)

DIM = 4
MAX_INSTANCES = 5


def _instance(**overrides) -> dict:
    return {"observation": [0.5, -1, 2e-3, 7], **overrides}


def _predict(document) -> bytes:
    return json.dumps(document).encode() if not isinstance(document, bytes) else document


def test_valid_batch_is_parsed():
    body = _predict({"instances": [_instance(user_id=42), _instance(), _instance(user_id=None)]})
    request = parse_predict_request(body, DIM, MAX_INSTANCES)
    assert request.observations.shape == (3, DIM)
    assert request.observations.dtype == np.float64
    np.testing.assert_array_equal(request.observations[0], [0.5, -1.0, 2e-3, 7.0])
    assert request.user_ids == [42, None, None]


def test_empty_vertex_parameters_are_tolerated():
    for parameters in (None, {}):
        body = _predict({"instances": [_instance()], "parameters": parameters})
        assert len(parse_predict_request(body, DIM, MAX_INSTANCES).user_ids) == 1


@pytest.mark.parametrize(
    "body, message",
    [
        (b"{not json", "request body: not valid JSON"),
        (b"\xff\xfe", "request body: not valid JSON"),
        (b"", "request body: not valid JSON"),
        ([1, 2], "request body: expected a JSON object, got array"),
        ({}, "instances: required field is missing"),
        ({"instances": [_instance()], "extra": 1}, "extra: unexpected field"),
        ({"instances": [_instance()], "parameters": {"k": 1}}, "parameters: this model takes no"),
        ({"instances": {"observation": [1]}}, "instances: expected an array, got object"),
        ({"instances": []}, "instances: expected 1 to 5 instances, got 0"),
        ({"instances": [_instance()] * 6}, "instances: expected 1 to 5 instances, got 6"),
        ({"instances": [_instance(), 3]}, "instances[1]: expected an object, got number"),
        ({"instances": [_instance(), {"user_id": 1}]}, "instances[1].observation: required field"),
        (
            {"instances": [_instance(), _instance(colour="red")]},
            "instances[1].colour: unexpected field",
        ),
        (
            {
                "instances": [
                    _instance(),
                    _instance(),
                    _instance(),
                    _instance(observation=[1, 2, 3]),
                ]
            },
            "instances[3].observation: expected 4 numbers, got 3",
        ),
        (
            {"instances": [_instance(observation=[1, 2, 3, 4, 5])]},
            "instances[0].observation: expected 4 numbers, got 5",
        ),
        (
            {"instances": [_instance(observation="1,2,3,4")]},
            "instances[0].observation: expected an array of 4 numbers, got string",
        ),
        (
            {"instances": [_instance(observation=None)]},
            "instances[0].observation: expected an array of 4 numbers, got null",
        ),
        (
            {"instances": [_instance(observation=[1, "2", 3, 4])]},
            "instances[0].observation[1]: expected a number, got string",
        ),
        (
            {"instances": [_instance(observation=[1, 2, True, 4])]},
            "instances[0].observation[2]: expected a number, got boolean",
        ),
        (
            {"instances": [_instance(observation=[1, 2, 3, None])]},
            "instances[0].observation[3]: expected a number, got null",
        ),
        (
            {"instances": [_instance(observation=[1, [2], 3, 4])]},
            "instances[0].observation[1]: expected a number, got array",
        ),
        (
            b'{"instances": [{"observation": [1, NaN, 3, 4]}]}',
            "instances[0].observation[1]: expected a finite number",
        ),
        (
            b'{"instances": [{"observation": [1, 2, Infinity, 4]}]}',
            "instances[0].observation[2]: expected a finite number",
        ),
        (
            b'{"instances": [{"observation": [-Infinity, 2, 3, 4]}]}',
            "instances[0].observation[0]: expected a finite number",
        ),
        (
            b'{"instances": [{"observation": [1, 2, 3, 1e400]}]}',
            "instances[0].observation[3]: expected a finite number",
        ),
        (
            {"instances": [_instance(observation=[1, 2, 3, 1e39])]},
            "instances[0].observation[3]: expected a finite number within float32",
        ),
        (
            {"instances": [_instance(observation=[1, 2, 3, 10**400])]},
            "instances[0].observation[3]: expected a finite number",
        ),
        (
            {"instances": [_instance(user_id="42")]},
            "instances[0].user_id: expected an integer or null, got string",
        ),
        (
            {"instances": [_instance(user_id=4.0)]},
            "instances[0].user_id: expected an integer or null, got number",
        ),
        (
            {"instances": [_instance(user_id=True)]},
            "instances[0].user_id: expected an integer or null, got boolean",
        ),
        (
            {"instances": [_instance(user_id=2**63)]},
            "instances[0].user_id: 9223372036854775808 is outside the INT64 range",
        ),
    ],
)
def test_bad_predict_request_names_the_field(body, message):
    with pytest.raises(RequestError) as raised:
        parse_predict_request(_predict(body), DIM, MAX_INSTANCES)
    assert str(raised.value).startswith(message), str(raised.value)


def test_valid_reward_is_parsed():
    request = parse_reward_request(b'{"event_id": "abc123", "reward": 4}')
    assert (request.event_id, request.reward) == ("abc123", 4.0)
    assert isinstance(request.reward, float)


@pytest.mark.parametrize(
    "body, message",
    [
        (b"[", "request body: not valid JSON"),
        (b'"reward"', "request body: expected a JSON object, got string"),
        (b'{"reward": 1}', "event_id: required field is missing"),
        (b'{"event_id": "e"}', "reward: required field is missing"),
        (b'{"event_id": "e", "reward": 1, "user_id": 3}', "user_id: unexpected field"),
        (
            b'{"event_id": 17, "reward": 1}',
            "event_id: expected a string of 1 to 128 characters, got number",
        ),
        (
            b'{"event_id": "", "reward": 1}',
            "event_id: expected a string of 1 to 128 characters, got a string of 0",
        ),
        (
            json.dumps({"event_id": "e" * 129, "reward": 1}).encode(),
            "event_id: expected a string of 1 to 128",
        ),
        (b'{"event_id": "e", "reward": "5"}', "reward: expected a number, got string"),
        (b'{"event_id": "e", "reward": false}', "reward: expected a number, got boolean"),
        (b'{"event_id": "e", "reward": null}', "reward: expected a number, got null"),
        (b'{"event_id": "e", "reward": NaN}', "reward: expected a finite number, got nan"),
        (b'{"event_id": "e", "reward": -Infinity}', "reward: expected a finite number, got -inf"),
        (b'{"event_id": "e", "reward": 1' + b"0" * 400 + b"}", "reward: expected a finite number"),
        (b'{"event_id": "e", "reward": 1' + b"0" * 5000 + b"}", "request body: not valid JSON"),
    ],
)
def test_bad_reward_request_names_the_field(body, message):
    with pytest.raises(RequestError) as raised:
        parse_reward_request(body)
    assert str(raised.value).startswith(message), str(raised.value)
