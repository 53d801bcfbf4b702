"""Every malformed request is refused with a message that names the field."""

import json

import numpy as np
import pytest

from serving.request_schema import (
    INT64_MAX,
    INT64_MIN,
    RequestError,
    parse_per_arm_request,
    parse_predict_request,
    parse_reward_request,
)

DIM = 4
MAX_INSTANCES = 5
OUTSIDE_REWARDS = "is outside the allowed range [-5.0, 10.0]"


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
            {"instances": [_instance(user_id=4.5)]},
            "instances[0].user_id: expected an integer or null, got number",
        ),
        (
            {"instances": [_instance(user_id=True)]},
            "instances[0].user_id: expected an integer or null, got boolean",
        ),
        (
            {"instances": [_instance(user_id=2**63)]},
            "instances[0].user_id: 9223372036854775808 is outside the allowed range "
            "[1, 9223372036854775807]",
        ),
        (
            {"instances": [_instance(user_id=0)]},
            "instances[0].user_id: 0 is outside the allowed range [1, 9223372036854775807]",
        ),
        (
            {"instances": [_instance(), _instance(user_id=-7)]},
            "instances[1].user_id: -7 is outside the allowed range [1, 9223372036854775807]",
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


@pytest.mark.parametrize("reward", [-5, -5.0, 10, 10.0, 0])
def test_rewards_at_the_contract_bounds_are_accepted(reward):
    body = json.dumps({"event_id": "e", "reward": reward}).encode()
    assert parse_reward_request(body).reward == reward


@pytest.mark.parametrize("user_id", [1, 943, 10**12, 2**63 - 1])
def test_user_ids_in_the_contract_range_are_accepted(user_id):
    body = _predict({"instances": [_instance(user_id=user_id)]})
    assert parse_predict_request(body, DIM, MAX_INSTANCES).user_ids == [user_id]


@pytest.mark.parametrize("user_id, expected", [(42.0, 42), (1.0, 1), (2.0**62, 2**62)])
def test_a_whole_float_user_id_is_the_integer_vertex_clients_meant(user_id, expected):
    """aiplatform's clients send numbers as protobuf doubles: a user id arrives as 42.0."""
    body = _predict({"instances": [_instance(user_id=user_id)]})
    (parsed,) = parse_predict_request(body, DIM, MAX_INSTANCES).user_ids
    assert parsed == expected and type(parsed) is int


@pytest.mark.parametrize("user_id", [0.0, 2.0**63, -3.0])
def test_a_whole_float_user_id_outside_the_contract_is_refused(user_id):
    body = _predict({"instances": [_instance(user_id=user_id)]})
    outside = r"instances\[0\]\.user_id: .* is outside the allowed range"
    with pytest.raises(RequestError, match=outside):
        parse_predict_request(body, DIM, MAX_INSTANCES)


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
        (b'{"event_id": "e", "reward": NaN}', f"reward: nan {OUTSIDE_REWARDS}"),
        (b'{"event_id": "e", "reward": -Infinity}', f"reward: -inf {OUTSIDE_REWARDS}"),
        (b'{"event_id": "e", "reward": 1e300}', f"reward: 1e+300 {OUTSIDE_REWARDS}"),
        (b'{"event_id": "e", "reward": 10.000001}', f"reward: 10.000001 {OUTSIDE_REWARDS}"),
        (b'{"event_id": "e", "reward": -6}', f"reward: -6 {OUTSIDE_REWARDS}"),
        (
            b'{"event_id": "e", "reward": 1' + b"0" * 400 + b"}",
            f"reward: 100000000000...(401 digits) {OUTSIDE_REWARDS}",
        ),
        (b'{"event_id": "e", "reward": 1' + b"0" * 5000 + b"}", "request body: not valid JSON"),
    ],
)
def test_bad_reward_request_names_the_field(body, message):
    with pytest.raises(RequestError) as raised:
        parse_reward_request(body)
    assert str(raised.value).startswith(message), str(raised.value)


def _per_arm_candidates(candidates, counts=(1, 6)):
    """The parsed candidates of a one-instance per-arm body, or the RequestError's message."""
    body = json.dumps({"instances": [{"global_features": [0.5, 1], "candidates": candidates}]})
    try:
        return parse_per_arm_request(body.encode(), 2, counts, MAX_INSTANCES).candidates[0]
    except RequestError as error:
        return str(error)


def _one_by_one(value, counts=(1, 6)):
    """The per-id validation the whole-list checks replaced: what they must still answer."""
    where = "instances[0].candidates"
    if value is None:
        return None
    if not isinstance(value, list):
        return f"{where}: expected an array of 1 to 6 movie ids, got {_kind(value)}"
    if not counts[0] <= len(value) <= counts[1]:
        return f"{where}: expected 1 to 6 movie ids, got {len(value)}"
    value = [int(v) if type(v) is float and v.is_integer() else v for v in value]  # Vertex's 17.0
    for j, movie_id in enumerate(value):
        if type(movie_id) is not int:
            return f"{where}[{j}]: expected an integer movie id, got {_kind(movie_id)}"
        if not INT64_MIN <= movie_id <= INT64_MAX:
            return f"{where}[{j}]: {movie_id!r} is outside the INT64 range"
    if len(set(value)) != len(value):
        repeated = sorted({movie_id for movie_id in value if value.count(movie_id) > 1})
        return f"{where}: movie ids {repeated} occur more than once"
    return value


def _kind(value) -> str:
    kinds = {bool: "boolean", int: "number", float: "number", str: "string", list: "array"}
    return "null" if value is None else kinds.get(type(value), "object")


@pytest.mark.parametrize(
    "candidates, expected",
    [
        ([3, 17, 1], [3, 17, 1]),
        ([-4, 0, 2], [-4, 0, 2]),  # the schema's range is INT64; the catalogue refuses these
        ([INT64_MIN, INT64_MAX], [INT64_MIN, INT64_MAX]),
        (None, None),
        ("3,17", "instances[0].candidates: expected an array of 1 to 6 movie ids, got string"),
        ({"3": 1}, "instances[0].candidates: expected an array of 1 to 6 movie ids, got object"),
        ([], "instances[0].candidates: expected 1 to 6 movie ids, got 0"),
        (list(range(7)), "instances[0].candidates: expected 1 to 6 movie ids, got 7"),
        ([3, True], "instances[0].candidates[1]: expected an integer movie id, got boolean"),
        ([False], "instances[0].candidates[0]: expected an integer movie id, got boolean"),
        ([3, 17.0], [3, 17]),  # aiplatform's clients send every number as a double
        ([3, 17.5], "instances[0].candidates[1]: expected an integer movie id, got number"),
        ([3, float("inf")], "instances[0].candidates[1]: expected an integer movie id, got number"),
        ([3, 2.0**63], "instances[0].candidates[1]: 9223372036854775808 is outside the INT64 range"),
        ([3, "17"], "instances[0].candidates[1]: expected an integer movie id, got string"),
        ([3, None], "instances[0].candidates[1]: expected an integer movie id, got null"),
        ([[3]], "instances[0].candidates[0]: expected an integer movie id, got array"),
        ([3, {}], "instances[0].candidates[1]: expected an integer movie id, got object"),
        ([3, 2**63], "instances[0].candidates[1]: 9223372036854775808 is outside the INT64 range"),
        (
            [-(2**63) - 1, 3],
            "instances[0].candidates[0]: -9223372036854775809 is outside the INT64 range",
        ),
        # The first bad id is named, whichever check it fails.
        ([3, 2**64, "x"], "instances[0].candidates[1]: 18446744073709551616 is outside the INT64 range"),
        ([3, "x", 2**64], "instances[0].candidates[1]: expected an integer movie id, got string"),
        ([3, 2**64, 3], "instances[0].candidates[1]: 18446744073709551616 is outside the INT64 range"),
        ([3, 3, True], "instances[0].candidates[2]: expected an integer movie id, got boolean"),
        ([5, 3, 5, 3, 9], "instances[0].candidates: movie ids [3, 5] occur more than once"),
        ([-1, -1], "instances[0].candidates: movie ids [-1] occur more than once"),
    ],
)
def test_candidates_are_refused_like_one_id_at_a_time(candidates, expected):
    assert _per_arm_candidates(candidates) == expected == _one_by_one(candidates)


def test_random_candidate_lists_get_the_per_id_answer():
    """Mixed lists of good and bad ids: the same list or the same message as checking each id."""
    rng = np.random.default_rng(0)
    pool = [0, 1, 2, 3, -5, 2**63 - 1, 2**63, -(2**63), -(2**63) - 1, True, False, 1.0, 1.5, "1",
            None]
    for _ in range(2000):
        picks = rng.integers(len(pool), size=rng.integers(0, 8))
        candidates = [pool[i] if rng.random() < 0.3 else int(rng.integers(4, 10**6)) for i in picks]
        assert _per_arm_candidates(candidates) == _one_by_one(candidates), candidates


def test_a_whole_catalogue_of_ids_is_parsed_as_the_same_list():
    ids = np.random.default_rng(1).permutation(np.arange(1, 1683)).tolist()
    parsed = _per_arm_candidates(ids, (1, 1682))
    assert parsed == ids and all(type(movie_id) is int for movie_id in parsed)
    assert _per_arm_candidates(ids[:-1] + [ids[0]], (1, 1682)).endswith(
        f"movie ids [{ids[0]}] occur more than once"
    )
