"""The curated schema of logged bandit interactions.

An inferred schema would accept whatever the first batch looked like, bad rows
included; these constraints come from the bandit problem itself, so the first
batch is checked too.
"""

from tensorflow_metadata.proto.v0 import schema_pb2

from bandit_core import columns


def build_bandit_schema(
    observation_dim: int,
    num_actions: int,
    reward_min: float,
    reward_max: float,
    min_propensity: float,
) -> schema_pb2.Schema:
    """Returns a schema every logged-interaction example must satisfy.

    Args:
      observation_dim: exact length of the `observation` vector.
      num_actions: actions are integers in [0, num_actions).
      reward_min: lowest plausible reward.
      reward_max: highest plausible reward.
      min_propensity: propensities must lie in [min_propensity, 1]; off-policy
        learning and evaluation divide by them, so 0 is never acceptable.

    `user_id` is optional: serving logs carry it only when the caller sent it.
    """
    schema = schema_pb2.Schema()

    def required(name: str, kind: int, length: int = 1) -> schema_pb2.Feature:
        feature = schema.feature.add(name=name, type=kind)
        feature.presence.min_fraction = 1.0
        feature.presence.min_count = 1
        feature.value_count.min = length
        feature.value_count.max = length
        return feature

    user = schema.feature.add(name=columns.USER_ID, type=schema_pb2.INT)
    user.value_count.max = 1
    user.int_domain.min = 1
    observation = required(columns.OBSERVATION, schema_pb2.FLOAT, observation_dim)
    observation.float_domain.disallow_nan = True
    observation.float_domain.disallow_inf = True
    action = required(columns.ACTION, schema_pb2.INT)
    action.int_domain.min = 0
    action.int_domain.max = num_actions - 1
    reward = required(columns.REWARD, schema_pb2.FLOAT)
    reward.float_domain.min = reward_min
    reward.float_domain.max = reward_max
    reward.float_domain.disallow_nan = True
    reward.float_domain.disallow_inf = True
    propensity = required(columns.PROPENSITY, schema_pb2.FLOAT)
    propensity.float_domain.min = min_propensity
    propensity.float_domain.max = 1.0
    propensity.float_domain.disallow_nan = True
    required(columns.EVENT_TIME_US, schema_pb2.INT)
    return schema
