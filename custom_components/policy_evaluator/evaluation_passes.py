"""The evaluation as two passes of additive sums, run in memory or by the Beam pipeline.

Pass 1 (any batch of logged rows): problem counts, the logged reward's sum
and the reward model's per-fold statistics. Between the passes the reward
model is fitted from those sums. Pass 2 (a batch of distinct rows, each with
its multiplicity): both policies' pi, the out-of-fold reward predictions,
the OPE terms and their point and Poisson-bootstrap sums. Every result is a
sum, so the in-memory path (`run_in_memory`) and the Beam pipeline
(`beam_evaluation`) compute the same numbers up to the order of float
additions. The problem-specific work is a `Passes` (classic or per-arm).
"""

import dataclasses
from typing import Any, Generic, List, Optional, Protocol, Tuple, TypeVar

import numpy as np

from custom_components.policy_evaluator import ope_sums, poisson_bootstrap, row_hashing
from custom_components.policy_evaluator.problem_counts import ProblemCounts

# Rows of a batch handled at once in memory (the Beam path's batches are this size too).
BLOCK_ROWS = 8192

Columns = TypeVar("Columns")


@dataclasses.dataclass(frozen=True)
class FirstPass:
    """Pass 1's sums.

    Attributes:
      checks: problems that make the data unusable (a refusal).
      caveats: problems that only drop a part of the report (e.g. a baseline
        that does not know some logged movies, rows the simulator cannot
        value), in the same form.
      reward_sum: sum of the logged rewards.
      reward_model: the reward model's additive per-fold statistics; summed
        only over batches without checks failing.
    """

    checks: ProblemCounts
    caveats: ProblemCounts
    reward_sum: float
    reward_model: Any

    def __add__(self, other: "FirstPass") -> "FirstPass":
        return FirstPass(
            self.checks + other.checks,
            self.caveats + other.caveats,
            self.reward_sum + other.reward_sum,
            self.reward_model + other.reward_model,
        )

    @property
    def rows(self) -> int:
        return self.checks.rows


@dataclasses.dataclass(frozen=True)
class Fitted:
    """What pass 2 needs from pass 1: the reward model and which parts to compute.

    Attributes:
      coefficients: the reward model of each fold.
      roles: the policies to score, "candidate" first.
      with_simulator: whether to add up the simulator's values of the rows.
    """

    coefficients: np.ndarray
    roles: Tuple[str, ...]
    with_simulator: bool


class Passes(Protocol, Generic[Columns]):
    """One problem's (classic or per-arm) per-batch work."""

    def key_columns(self, columns: Columns) -> List[np.ndarray]:
        """The arrays a row's key is hashed from."""

    def first(self, columns: Columns, keys: np.ndarray) -> FirstPass:
        """Pass 1's sums over a batch of logged rows."""

    def fitted(self, first: FirstPass) -> Optional[Fitted]:
        """The fitted reward model, or None when pass 1 found the data unusable."""

    def second(
        self, columns: Columns, keys: np.ndarray, multiplicities: np.ndarray, fitted: Fitted
    ) -> ope_sums.Sums:
        """Pass 2's sums over a batch of distinct rows."""


def take(columns: Columns, rows: Any) -> Columns:
    """The `rows` (an index or a mask) of a columns dataclass."""
    return type(columns)(
        **{f.name: getattr(columns, f.name)[rows] for f in dataclasses.fields(columns)}
    )


def concatenate(parts: List[Columns]) -> Columns:
    """Columns dataclasses of one type, one after the other."""
    return type(parts[0])(
        **{
            f.name: np.concatenate([getattr(part, f.name) for part in parts])
            for f in dataclasses.fields(parts[0])
        }
    )


def _blocks(rows: int) -> List[slice]:
    return [slice(start, start + BLOCK_ROWS) for start in range(0, rows, BLOCK_ROWS)]


def first_pass(passes: Passes, columns: Columns, keys: np.ndarray) -> FirstPass:
    """Pass 1 over rows held in memory, a block at a time."""
    blocks = _blocks(len(keys)) or [slice(0, 0)]
    parts = [passes.first(take(columns, block), keys[block]) for block in blocks]
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


def second_pass(
    passes: Passes, columns: Columns, keys: np.ndarray, fitted: Fitted
) -> Optional[ope_sums.Sums]:
    """Pass 2 over logged rows: equal rows merged, then distinct rows a block at a time."""
    first_rows, distinct, multiplicities = poisson_bootstrap.distinct_rows(keys)
    rows = take(columns, first_rows)
    total = None
    for block in _blocks(len(distinct)):
        part = passes.second(take(rows, block), distinct[block], multiplicities[block], fitted)
        total = part if total is None else total + part
    return total


def run_in_memory(
    passes: Passes, columns: Columns
) -> Tuple[FirstPass, Optional[ope_sums.Sums]]:
    """Both passes over rows held in memory; no pass-2 sums when the data is unusable."""
    keys = row_hashing.row_keys(passes.key_columns(columns))
    first = first_pass(passes, columns, keys)
    fitted = passes.fitted(first)
    if fitted is None:
        return first, None
    return first, second_pass(passes, columns, keys, fitted)
