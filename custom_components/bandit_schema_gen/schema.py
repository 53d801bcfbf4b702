"""The curated schema of logged bandit interactions.

An inferred schema would accept whatever the first batch looked like, bad rows
included; these constraints come from the bandit problem itself, so the first
batch is checked too.
"""

from tensorflow_metadata.proto.v0 import schema_pb2

from bandit_core import columns


def _required(
    schema: schema_pb2.Schema, name: str, kind: int, length: int = 1
) -> schema_pb2.Feature:
    feature = schema.feature.add(name=name, type=kind)
    feature.presence.min_fraction = 1.0
    feature.presence.min_count = 1
    feature.value_count.min = length
    feature.value_count.max = length
    return feature


def _finite(feature: schema_pb2.Feature) -> schema_pb2.Feature:
    feature.float_domain.disallow_nan = True
    feature.float_domain.disallow_inf = True
    return feature


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
    user = schema.feature.add(name=columns.USER_ID, type=schema_pb2.INT)
    user.value_count.max = 1
    user.int_domain.min = 1
    _finite(_required(schema, columns.OBSERVATION, schema_pb2.FLOAT, observation_dim))
    action = _required(schema, columns.ACTION, schema_pb2.INT)
    action.int_domain.min = 0
    action.int_domain.max = num_actions - 1
    reward = _finite(_required(schema, columns.REWARD, schema_pb2.FLOAT))
    reward.float_domain.min = reward_min
    reward.float_domain.max = reward_max
    propensity = _required(schema, columns.PROPENSITY, schema_pb2.FLOAT)
    propensity.float_domain.min = min_propensity
    propensity.float_domain.max = 1.0
    propensity.float_domain.disallow_nan = True
    _required(schema, columns.EVENT_TIME_US, schema_pb2.INT)
    return schema


def build_per_arm_schema(
    global_dim: int,
    arm_dim: int,
    num_candidates: int,
    reward_min: float,
    reward_max: float,
    min_propensity: float,
) -> schema_pb2.Schema:
    """The classic schema with candidate slots as actions, plus the per-arm columns.

    Args:
      global_dim: exact length of `observation`, the user's features.
      arm_dim: exact length of `arm_features`, the served movie's features.
      num_candidates: every row offers exactly this many distinct movies, and
        `action` is a position among them.
      reward_min, reward_max, min_propensity: as in `build_bandit_schema`.

    Movie ids are positive; `chosen_at_slot` must be 1 (the served movie is
    the candidate at the logged position) and `distinct_candidates` must equal
    `num_candidates` (see the ingestion query that computes both).
    """
    schema = build_bandit_schema(
        global_dim, num_candidates, reward_min, reward_max, min_propensity
    )
    candidates = _required(schema, columns.CANDIDATE_MOVIE_IDS, schema_pb2.INT, num_candidates)
    candidates.int_domain.min = 1
    movie = _required(schema, columns.MOVIE_ID, schema_pb2.INT)
    movie.int_domain.min = 1
    _finite(_required(schema, columns.ARM_FEATURES, schema_pb2.FLOAT, arm_dim))
    chosen = _required(schema, columns.CHOSEN_AT_SLOT, schema_pb2.INT)
    chosen.int_domain.min = 1
    chosen.int_domain.max = 1
    distinct = _required(schema, columns.DISTINCT_CANDIDATES, schema_pb2.INT)
    distinct.int_domain.min = num_candidates
    distinct.int_domain.max = num_candidates
    return schema
