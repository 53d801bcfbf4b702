"""Parses and validates request bodies; every error names the offending field.

Pure functions of the raw body, so each bad-input case is testable without a
server. A request that fails here gets HTTP 400 with the message as-is.
User ids and rewards are held to the data contract (`bandit_core.data_contract`)
that the pipeline checks too, so no accepted request logs a row that training
would refuse.

A predict body may instead carry reward reports, `{"instances": [{"event_id":
..., "reward": ...}]}`: a Vertex AI endpoint forwards only the predict route to
the container, so this is how rewards reach it there. Its instances are checked
as the reward route checks its body.
"""

import dataclasses
import json
from collections import Counter
from typing import Any, List, Optional, Tuple, Union

import numpy as np

from bandit_core import data_contract

# Observations are cast to float32 by the policy; larger magnitudes become inf.
FLOAT32_MAX = float(np.finfo(np.float32).max)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
MAX_EVENT_ID_LENGTH = data_contract.MAX_EVENT_ID_LENGTH
_INSTANCE_FIELDS = ("observation", "user_id")
_PER_ARM_INSTANCE_FIELDS = ("global_features", "candidates", "user_id")
_REWARD_FIELDS = ("event_id", "reward")


class RequestError(ValueError):
    """A request the server refuses; the message starts with the field's path."""


@dataclasses.dataclass(frozen=True)
class PredictRequest:
    """A validated batch: observations [N, observation_dim] and N optional user ids."""

    observations: np.ndarray
    user_ids: List[Optional[int]]


@dataclasses.dataclass(frozen=True)
class PerArmRequest:
    """A validated per-arm batch.

    Attributes:
      global_features: [N, global_dim] each round's user; the rows listed in
        `by_user_id` are zeros until the server fills them in.
      user_ids: N optional user ids, logged as given.
      candidates: N lists of distinct movie ids, or None where the server
        samples the candidates.
      by_user_id: instances that named their user by `user_id` alone, whose
        features the server looks up in the serving version's user table.
    """

    global_features: np.ndarray
    user_ids: List[Optional[int]]
    candidates: List[Optional[List[int]]]
    by_user_id: List[int] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class RewardRequest:
    event_id: str
    reward: float


@dataclasses.dataclass(frozen=True)
class RewardInstances:
    """A predict body whose instances are all reward reports, in request order."""

    rewards: List[RewardRequest]


def parse_predict_request(
    body: bytes, observation_dim: int, max_instances: int
) -> Union[PredictRequest, RewardInstances]:
    """`{"instances": [{"observation": [...], "user_id": int|null}, ...]}` -> PredictRequest.

    A top-level `parameters` is tolerated when null or empty because Vertex AI
    clients may send one; this model takes none. Reward instances give
    RewardInstances.
    """
    instances = _instances(_json_object(body), max_instances)
    if _reward_instances(instances):
        return _parse_reward_instances(instances)
    observations = np.empty((len(instances), observation_dim), dtype=np.float64)
    user_ids: List[Optional[int]] = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise RequestError(f"{where}: expected an object, got {_json_type(instance)}")
        _reject_unknown(instance, _INSTANCE_FIELDS, where + ".")
        if "observation" not in instance:
            raise RequestError(f"{where}.observation: required field is missing")
        observations[i] = _observation(
            instance["observation"], f"{where}.observation", observation_dim
        )
        user_ids.append(_user_id(instance.get("user_id"), f"{where}.user_id"))
    return PredictRequest(observations=observations, user_ids=user_ids)


def parse_per_arm_request(
    body: bytes,
    global_dim: int,
    candidate_counts: Tuple[int, int],
    max_instances: int,
) -> Union[PerArmRequest, RewardInstances]:
    """`{"instances": [{"global_features": [...], "candidates": [ids], "user_id": int}]}`.

    An instance carries the user's features, or names the user by `user_id`
    alone for the server to look the features up in the serving version's
    user table (`by_user_id`); with both, the features are used and the id
    is only logged. `candidates` is optional
    and, when given, holds `candidate_counts` (min, max) distinct movie ids;
    whether the catalogue knows them is the caller's check. Reward instances
    give RewardInstances.
    """
    instances = _instances(_json_object(body), max_instances)
    if _reward_instances(instances):
        return _parse_reward_instances(instances)
    features = np.zeros((len(instances), global_dim), dtype=np.float64)
    user_ids: List[Optional[int]] = []
    candidates: List[Optional[List[int]]] = []
    by_user_id: List[int] = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise RequestError(f"{where}: expected an object, got {_json_type(instance)}")
        _reject_unknown(instance, _PER_ARM_INSTANCE_FIELDS, where + ".")
        user_ids.append(_user_id(instance.get("user_id"), f"{where}.user_id"))
        if instance.get("global_features") is not None:
            features[i] = _observation(
                instance["global_features"], f"{where}.global_features", global_dim
            )
        elif user_ids[-1] is not None:
            by_user_id.append(i)
        else:
            raise RequestError(
                f"{where}.global_features: required field is missing; send the user's "
                "features, or a user_id the serving model version knows"
            )
        candidates.append(
            _candidates(instance.get("candidates"), f"{where}.candidates", candidate_counts)
        )
    return PerArmRequest(features, user_ids, candidates, by_user_id)


def parse_reward_request(body: bytes) -> RewardRequest:
    """`{"event_id": str, "reward": number}` -> RewardRequest."""
    return _reward(_json_object(body), "")


def _reward_instances(instances: list) -> bool:
    """Whether the instances are reward reports; refuses a batch that mixes them with predictions.

    An object with an `event_id` or a `reward` reports a reward; any other
    object asks for a prediction.
    """
    objects = [(i, instance) for i, instance in enumerate(instances) if isinstance(instance, dict)]
    rewards = [i for i, instance in objects if not instance.keys().isdisjoint(_REWARD_FIELDS)]
    predictions = [i for i, instance in objects if instance.keys().isdisjoint(_REWARD_FIELDS)]
    if rewards and predictions:
        raise RequestError(
            f"instances: instances[{rewards[0]}] reports a reward (event_id, reward) but "
            f"instances[{predictions[0]}] asks for a prediction; a request holds either "
            "predictions or rewards: send the rewards in a request of their own"
        )
    return bool(rewards)


def _parse_reward_instances(instances: list) -> RewardInstances:
    rewards = []
    for i, instance in enumerate(instances):
        where = f"instances[{i}]"
        if not isinstance(instance, dict):
            raise RequestError(f"{where}: expected an object, got {_json_type(instance)}")
        rewards.append(_reward(instance, where + "."))
    return RewardInstances(rewards=rewards)


def _reward(document: dict, prefix: str) -> RewardRequest:
    """A reward report's fields, checked against the data contract; errors start with `prefix`."""
    _reject_unknown(document, _REWARD_FIELDS, prefix)
    for field in _REWARD_FIELDS:
        if field not in document:
            raise RequestError(f"{prefix}{field}: required field is missing")
    event_id = document["event_id"]
    if not isinstance(event_id, str) or not 1 <= len(event_id) <= MAX_EVENT_ID_LENGTH:
        raise RequestError(
            f"{prefix}event_id: expected a string of 1 to {MAX_EVENT_ID_LENGTH} characters, "
            f"got {_describe(event_id)}"
        )
    reward = document["reward"]
    if not _is_number(reward):
        raise RequestError(f"{prefix}reward: expected a number, got {_json_type(reward)}")
    # False for NaN too; compares big ints exactly instead of overflowing.
    if not data_contract.REWARD_MIN <= reward <= data_contract.REWARD_MAX:
        raise RequestError(
            f"{prefix}reward: {_short(reward)} is outside the allowed range "
            f"{data_contract.describe_range(data_contract.REWARD_MIN, data_contract.REWARD_MAX)}"
        )
    return RewardRequest(event_id=event_id, reward=float(reward))


def _json_object(body: bytes) -> dict:
    try:
        document = json.loads(body)
    except ValueError as error:  # bad UTF-8, bad JSON, or an int of over 4300 digits
        raise RequestError(f"request body: not valid JSON ({error})") from None
    if not isinstance(document, dict):
        raise RequestError(f"request body: expected a JSON object, got {_json_type(document)}")
    return document


def _instances(document: dict, max_instances: int) -> list:
    """The `instances` array of a predict body, after checking the top-level fields."""
    _reject_unknown(document, ("instances", "parameters"), "")
    if document.get("parameters") not in (None, {}):
        raise RequestError("parameters: this model takes no parameters; omit the field")
    if "instances" not in document:
        raise RequestError("instances: required field is missing")
    instances = document["instances"]
    if not isinstance(instances, list):
        raise RequestError(f"instances: expected an array, got {_json_type(instances)}")
    if not 1 <= len(instances) <= max_instances:
        raise RequestError(
            f"instances: expected 1 to {max_instances} instances, got {len(instances)}"
        )
    return instances


def _reject_unknown(document: dict, allowed: tuple, prefix: str) -> None:
    for field in document:
        if field not in allowed:
            raise RequestError(f"{prefix}{field}: unexpected field (allowed: {', '.join(allowed)})")


def _observation(value: Any, where: str, observation_dim: int) -> List[float]:
    if not isinstance(value, list):
        raise RequestError(
            f"{where}: expected an array of {observation_dim} numbers, got {_json_type(value)}"
        )
    if len(value) != observation_dim:
        raise RequestError(f"{where}: expected {observation_dim} numbers, got {len(value)}")
    for j, number in enumerate(value):
        if not _is_number(number):
            raise RequestError(f"{where}[{j}]: expected a number, got {_json_type(number)}")
        # False for NaN too; compares big ints exactly instead of overflowing.
        if not -FLOAT32_MAX <= number <= FLOAT32_MAX:
            raise RequestError(
                f"{where}[{j}]: expected a finite number within float32 range, got {_short(number)}"
            )
    return value


def _user_id(value: Any, where: str) -> Optional[int]:
    """An integer or null; a whole float such as 42.0 is the integer it writes.

    Vertex AI's clients send every number through protobuf's Value, a double,
    so a user id reaches the server as 42.0.
    """
    if value is None:
        return None
    if type(value) is float and value.is_integer():
        value = int(value)
    if type(value) is not int:
        raise RequestError(f"{where}: expected an integer or null, got {_json_type(value)}")
    if not data_contract.USER_ID_MIN <= value <= data_contract.USER_ID_MAX:
        allowed = data_contract.describe_range(data_contract.USER_ID_MIN, data_contract.USER_ID_MAX)
        raise RequestError(f"{where}: {_short(value)} is outside the allowed range {allowed}")
    return value


def _candidates(value: Any, where: str, counts: Tuple[int, int]) -> Optional[List[int]]:
    if value is None:
        return None
    low, high = counts
    wanted = f"{low}" if low == high else f"{low} to {high}"
    if not isinstance(value, list):
        raise RequestError(
            f"{where}: expected an array of {wanted} movie ids, got {_json_type(value)}"
        )
    if not low <= len(value) <= high:
        raise RequestError(f"{where}: expected {wanted} movie ids, got {len(value)}")
    if list(map(type, value)).count(int) != len(value):  # Vertex sends ids as 42.0, see _user_id
        value = [int(v) if type(v) is float and v.is_integer() else v for v in value]
    # Whole-list passes in C: a 1,682-id list costs tens of microseconds, not a
    # Python loop's hundreds. Only a bad list is walked, to name its first bad id.
    if list(map(type, value)).count(int) != len(value) or (
        value and not (INT64_MIN <= min(value) and max(value) <= INT64_MAX)
    ):
        _check_ids_one_by_one(value, where)
    if len(set(value)) != len(value):
        repeated = sorted(movie_id for movie_id, n in Counter(value).items() if n > 1)
        raise RequestError(f"{where}: movie ids {repeated} occur more than once")
    return value


def _check_ids_one_by_one(value: list, where: str) -> None:
    """The exact check: raises for the first id that is no integer or lies outside INT64."""
    for j, movie_id in enumerate(value):
        if type(movie_id) is not int:
            raise RequestError(
                f"{where}[{j}]: expected an integer movie id, got {_json_type(movie_id)}"
            )
        if not INT64_MIN <= movie_id <= INT64_MAX:
            raise RequestError(f"{where}[{j}]: {_short(movie_id)} is outside the INT64 range")


def _is_number(value: Any) -> bool:
    return type(value) in (int, float)


def _short(number: float) -> str:
    text = repr(number)
    return text if len(text) <= 32 else f"{text[:12]}...({len(text)} digits)"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _describe(value: Any) -> str:
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return _json_type(value)
