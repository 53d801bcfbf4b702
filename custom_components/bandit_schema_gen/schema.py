"""The curated schema of logged bandit interactions.

An inferred schema would accept whatever the first batch looked like, bad rows
included; these constraints come from the data contract of the bandit problem
(`bandit_core.data_contract`), so the first batch is checked too.
"""

from tensorflow_metadata.proto.v0 import schema_pb2

from bandit_core import columns, data_contract


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


def build_schema(contract: data_contract.DataContract) -> schema_pb2.Schema:
    """The schema every logged-interaction example of `contract`'s problem must satisfy.

    Its bounds are the data contract's, so ExampleValidator and the ingestion
    quarantine judge a row alike. `user_id` is optional: serving logs carry it
    only when the caller sent it. Propensities lie in [min_propensity, 1]:
    off-policy learning and evaluation divide by them, so 0 is never
    acceptable. A per-arm contract adds the per-arm columns.
    """
    schema = schema_pb2.Schema()
    user = schema.feature.add(name=columns.USER_ID, type=schema_pb2.INT)
    user.value_count.max = 1
    user.int_domain.min = data_contract.USER_ID_MIN
    _finite(_required(schema, columns.OBSERVATION, schema_pb2.FLOAT, contract.observation_dim))
    action = _required(schema, columns.ACTION, schema_pb2.INT)
    action.int_domain.min = 0
    action.int_domain.max = contract.num_actions - 1
    reward = _finite(_required(schema, columns.REWARD, schema_pb2.FLOAT))
    reward.float_domain.min = contract.reward_min
    reward.float_domain.max = contract.reward_max
    propensity = _required(schema, columns.PROPENSITY, schema_pb2.FLOAT)
    propensity.float_domain.min = contract.min_propensity
    propensity.float_domain.max = 1.0
    propensity.float_domain.disallow_nan = True
    _required(schema, columns.EVENT_TIME_US, schema_pb2.INT)
    if contract.per_arm:
        _add_per_arm_features(schema, contract)
    return schema


def _add_per_arm_features(schema: schema_pb2.Schema, contract: data_contract.DataContract) -> None:
    """Candidate slots as actions, plus the per-arm columns.

    Every row offers exactly `num_actions` distinct movies of the catalogue and
    `action` is a position among them; `arm_features` is the served movie's.
    `chosen_at_slot` must be 1 (the served movie is the candidate at the logged
    position) and `distinct_candidates` must equal the candidate count (see
    the ingestion query that computes both).
    """
    count = contract.num_actions
    candidates = _required(schema, columns.CANDIDATE_MOVIE_IDS, schema_pb2.INT, count)
    movie = _required(schema, columns.MOVIE_ID, schema_pb2.INT)
    for feature in (candidates, movie):
        feature.int_domain.min = data_contract.MOVIE_ID_MIN
        feature.int_domain.max = data_contract.MOVIE_ID_MAX
    _finite(_required(schema, columns.ARM_FEATURES, schema_pb2.FLOAT, contract.arm_dim))
    chosen = _required(schema, columns.CHOSEN_AT_SLOT, schema_pb2.INT)
    chosen.int_domain.min = 1
    chosen.int_domain.max = 1
    distinct = _required(schema, columns.DISTINCT_CANDIDATES, schema_pb2.INT)
    distinct.int_domain.min = count
    distinct.int_domain.max = count
