"""The data contract: what one logged interaction may hold, defined once for every stage.

Serving refuses requests that would log anything else, the Generator never
writes anything else, the curated schema checks the same bounds and ingestion
quarantines the rows that break it, so a value accepted at one end is never
refused at the other. Each rule is written twice, side by side: as one SQL
condition over the ingestion query's columns (true when a row breaks it) and
as the same check of a logged row in Python; tests hold the two to the same
answers. Pure Python, no I/O.
"""

import dataclasses
import math
from typing import Any, Callable, Iterable, Iterator, List, Mapping, Tuple

from bandit_core import columns

INT64_MAX = 2**63 - 1
# The largest float32: the trainer reads features as float32, so larger magnitudes become inf.
FLOAT32_MAX = 3.4028234663852886e38
# MovieLens numbers its users from 1; serving logs whatever positive id a caller sends.
USER_ID_MIN, USER_ID_MAX = 1, INT64_MAX
# The default bounds of `validation.reward_min/reward_max`, and what serving accepts.
REWARD_MIN, REWARD_MAX = -5.0, 10.0
# Off-policy learning and evaluation divide by propensities: 0 is never acceptable.
MIN_PROPENSITY = 1e-6
# MovieLens 100K's catalogue: the movies the items table holds features for.
MOVIE_ID_MIN, MOVIE_ID_MAX = 1, 1682
MAX_EVENT_ID_LENGTH = 128


def describe_range(low: float, high: float) -> str:
    """`[low, high]` as error messages write an allowed range."""
    return f"[{low}, {high}]"


@dataclasses.dataclass(frozen=True)
class Rule:
    """One clause of the contract.

    Attributes:
      name: a short identifier, used for counts and in the quarantine table.
      reason: what the rule demands, in words.
      condition: SQL over the ingestion query's columns, true when a row
        breaks the rule.
      broken_by: the same check of a logged row (a dict as the tables hold it).
    """

    name: str
    reason: str
    condition: str
    broken_by: Callable[[Mapping[str, Any]], bool]

    @property
    def sql(self) -> str:
        """`condition` with NULL read as broken: a row ingestion cannot judge is quarantined,
        never silently lost between the accepted and the quarantined rows."""
        return f"COALESCE(({self.condition}), TRUE)"


class ContractViolation(ValueError):
    """A row breaks the contract; the message names the event and every broken rule."""


@dataclasses.dataclass(frozen=True)
class DataContract:
    """The bounds of one bandit problem's logged rows.

    Attributes:
      observation_dim: exact length of `observation` (the user's features).
      num_actions: classic: actions are in [0, num_actions); per-arm: every
        row offers exactly this many candidates and `action` is a position.
      reward_min, reward_max: rewards lie in [reward_min, reward_max].
      min_propensity: propensities lie in [min_propensity, 1].
      arm_dim: 0 for the classic problem; per-arm: exact length of the served
        movie's `arm_features`, joined from the items table at ingestion.
    """

    observation_dim: int
    num_actions: int
    reward_min: float = REWARD_MIN
    reward_max: float = REWARD_MAX
    min_propensity: float = MIN_PROPENSITY
    arm_dim: int = 0

    def __post_init__(self) -> None:
        checks = (
            (self.observation_dim >= 1, "observation_dim", "must be >= 1"),
            (self.num_actions >= 1, "num_actions", "must be >= 1"),
            (
                math.isfinite(self.reward_min)
                and math.isfinite(self.reward_max)
                and self.reward_min < self.reward_max,
                "reward_min/reward_max",
                "must be finite with reward_min < reward_max",
            ),
            (0.0 < self.min_propensity <= 1.0, "min_propensity", "must be in (0, 1]"),
            (self.arm_dim >= 0, "arm_dim", "must be 0 (classic) or the movie feature length"),
        )
        for holds, field, requirement in checks:
            if not holds:
                raise ValueError(f"data contract {field} {requirement}; got {self}")

    @property
    def per_arm(self) -> bool:
        return self.arm_dim > 0

    @property
    def parameters(self) -> dict:
        """The fields by name, as component parameters carry them."""
        return dataclasses.asdict(self)

    @classmethod
    def from_parameters(cls, values: Mapping[str, Any]) -> "DataContract":
        """The contract whose fields `values` (e.g. a component's exec properties) hold;
        a field missing or None takes its default."""
        fields = (f.name for f in dataclasses.fields(cls))
        return cls(**{name: values[name] for name in fields if values.get(name) is not None})

    @property
    def rules(self) -> Tuple[Rule, ...]:
        """Every rule of this problem, classic ones first."""
        rules = _common_rules(self)
        return rules + _per_arm_rules(self) if self.per_arm else rules

    def broken_rules(self, row: Mapping[str, Any]) -> List[Rule]:
        """The rules a logged row breaks; empty when it satisfies the contract."""
        return [rule for rule in self.rules if rule.broken_by(row)]

    def checked(self, rows: Iterable[Mapping[str, Any]]) -> Iterator[Mapping[str, Any]]:
        """Yields the rows, raising ContractViolation at the first that breaks a rule."""
        rules = self.rules
        for row in rows:
            broken = [rule for rule in rules if rule.broken_by(row)]
            if broken:
                raise ContractViolation(
                    f"event {row.get('event_id')!r} breaks the data contract: "
                    + "; ".join(f"{rule.name}: {rule.reason}" for rule in broken)
                )
            yield row

    def any_broken_sql(self) -> str:
        """One SQL condition, true when a row breaks any rule."""
        return " OR ".join(rule.sql for rule in self.rules)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _within(value: Any, low: float, high: float) -> bool:
    """False for non-numbers and NaN."""
    return _is_number(value) and low <= value <= high


def _finite_floats(values: Any) -> bool:
    """True unless a value is missing, NaN, infinite or beyond float32; a missing list
    holds no such value (its length rule catches it), as UNNEST(NULL) holds no row."""
    return not isinstance(values, list) or all(
        _is_number(x) and math.isfinite(x) and abs(x) <= FLOAT32_MAX for x in values
    )


def _finite_floats_sql(column: str) -> str:
    return (
        f"EXISTS(SELECT 1 FROM UNNEST({column}) AS x "
        f"WHERE x IS NULL OR IS_NAN(x) OR ABS(x) > {FLOAT32_MAX!r})"
    )


def _length_is(values: Any, length: int) -> bool:
    return isinstance(values, list) and len(values) == length


def _common_rules(contract: DataContract) -> Tuple[Rule, ...]:
    d, k = contract.observation_dim, contract.num_actions
    rewards = (contract.reward_min, contract.reward_max)
    propensities = (contract.min_propensity, 1.0)
    return (
        Rule(
            "event_id",
            f"event_id must be a string of 1 to {MAX_EVENT_ID_LENGTH} characters",
            f"event_id IS NULL OR LENGTH(event_id) < 1 OR LENGTH(event_id) > {MAX_EVENT_ID_LENGTH}",
            lambda row: not (
                isinstance(row.get("event_id"), str)
                and 1 <= len(row["event_id"]) <= MAX_EVENT_ID_LENGTH
            ),
        ),
        Rule(
            columns.USER_ID,
            "user_id, when given, must be an integer in "
            + describe_range(USER_ID_MIN, USER_ID_MAX),
            f"{columns.USER_ID} IS NOT NULL AND {columns.USER_ID} < {USER_ID_MIN}",
            lambda row: row.get(columns.USER_ID) is not None
            and not (
                _is_int(row[columns.USER_ID]) and USER_ID_MIN <= row[columns.USER_ID] <= USER_ID_MAX
            ),
        ),
        Rule(
            "observation_length",
            f"observation must hold exactly {d} numbers",
            f"ARRAY_LENGTH({columns.OBSERVATION}) != {d}",
            lambda row: not _length_is(row.get(columns.OBSERVATION), d),
        ),
        Rule(
            "observation_finite",
            "observation values must be finite and within float32 range",
            _finite_floats_sql(columns.OBSERVATION),
            lambda row: not _finite_floats(row.get(columns.OBSERVATION)),
        ),
        Rule(
            columns.ACTION,
            f"action must be an integer in [0, {k - 1}]",
            f"{columns.ACTION} IS NULL OR {columns.ACTION} < 0 OR {columns.ACTION} > {k - 1}",
            lambda row: not (_is_int(row.get(columns.ACTION)) and 0 <= row[columns.ACTION] < k),
        ),
        Rule(
            columns.REWARD,
            f"reward must be a number in {describe_range(*rewards)}",
            f"{columns.REWARD} IS NULL OR IS_NAN({columns.REWARD}) "
            f"OR {columns.REWARD} < {rewards[0]!r} OR {columns.REWARD} > {rewards[1]!r}",
            lambda row: not _within(row.get(columns.REWARD), *rewards),
        ),
        Rule(
            columns.PROPENSITY,
            f"propensity must be a number in {describe_range(*propensities)}",
            f"{columns.PROPENSITY} IS NULL OR IS_NAN({columns.PROPENSITY}) "
            f"OR {columns.PROPENSITY} < {propensities[0]!r} OR {columns.PROPENSITY} > 1.0",
            lambda row: not _within(row.get(columns.PROPENSITY), *propensities),
        ),
    )


def _candidates(row: Mapping[str, Any]) -> list:
    ids = row.get(columns.CANDIDATE_MOVIE_IDS)
    return ids if isinstance(ids, list) else []


def _served_at_slot(row: Mapping[str, Any]) -> bool:
    ids, slot = _candidates(row), row.get(columns.ACTION)
    return _is_int(slot) and 0 <= slot < len(ids) and ids[slot] == row.get(columns.MOVIE_ID)


def _per_arm_rules(contract: DataContract) -> Tuple[Rule, ...]:
    c, da = contract.num_actions, contract.arm_dim
    ids = columns.CANDIDATE_MOVIE_IDS
    movies = describe_range(MOVIE_ID_MIN, MOVIE_ID_MAX)
    return (
        Rule(
            "candidate_count",
            f"candidate_movie_ids must hold exactly {c} movie ids",
            f"ARRAY_LENGTH({ids}) != {c}",
            lambda row: not _length_is(row.get(ids), c),
        ),
        Rule(
            "candidate_ids",
            f"candidate movie ids must be integers in {movies}",
            f"EXISTS(SELECT 1 FROM UNNEST({ids}) AS m "
            f"WHERE m IS NULL OR m < {MOVIE_ID_MIN} OR m > {MOVIE_ID_MAX})",
            lambda row: not all(
                _is_int(m) and MOVIE_ID_MIN <= m <= MOVIE_ID_MAX for m in _candidates(row)
            ),
        ),
        Rule(
            "candidates_distinct",
            "candidate movie ids must be distinct",
            # The ingestion query counts the distinct candidates (NULLs not counted).
            f"{columns.DISTINCT_CANDIDATES} != ARRAY_LENGTH({ids})",
            lambda row: len({m for m in _candidates(row) if m is not None})
            != len(_candidates(row)),
        ),
        Rule(
            "served_movie",
            "movie_id must be the candidate at position `action`",
            # The ingestion query counts the candidates equal to movie_id at `action`.
            f"{columns.CHOSEN_AT_SLOT} != 1",
            lambda row: not _served_at_slot(row),
        ),
        Rule(
            columns.ARM_FEATURES,
            f"the served movie's arm_features must hold exactly {da} finite float32 numbers",
            f"ARRAY_LENGTH({columns.ARM_FEATURES}) != {da} OR "
            + _finite_floats_sql(columns.ARM_FEATURES),
            # Logged rows carry movie ids only; ingestion joins the features.
            lambda row: columns.ARM_FEATURES in row
            and not (
                _length_is(row[columns.ARM_FEATURES], da)
                and _finite_floats(row[columns.ARM_FEATURES])
            ),
        ),
    )
