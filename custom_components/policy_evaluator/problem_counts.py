"""Counts of logged rows with each kind of problem, added up over batches.

Validation runs where the rows are (one batch at a time, on any worker), so a
refusal cannot point at "row i" of a split nobody holds: it says how many rows
of how many have which problem and, for a value out of its range, the lowest
and highest offending values seen, which any worker's counts combine into.
"""

import dataclasses
import math
from typing import Optional, Tuple

import numpy as np


@dataclasses.dataclass(frozen=True)
class Problem:
    """One check's offending rows: how many, and the range of their values when it has one."""

    what: str
    count: int = 0
    low: float = math.inf
    high: float = -math.inf

    def __add__(self, other: "Problem") -> "Problem":
        return Problem(
            self.what, self.count + other.count, min(self.low, other.low),
            max(self.high, other.high),
        )

    def describe(self, rows: int) -> str:
        observed = ""
        if math.isfinite(self.low):
            values = f"{self.low:g}" if self.low == self.high else f"{self.low:g} to {self.high:g}"
            observed = f" (observed {values})"
        return f"{self.count} of {rows} logged rows have {self.what}{observed}"


def problem(what: str, bad: np.ndarray, values: Optional[np.ndarray] = None) -> Problem:
    """The rows where `bad` holds; `values` (same shape) gives the observed range."""
    bad = np.asarray(bad, dtype=bool)
    count = int(np.count_nonzero(bad))
    if not count or values is None:
        return Problem(what, count)
    offending = np.asarray(values, dtype=np.float64)[bad]
    offending = offending[np.isfinite(offending)]
    if not offending.size:
        return Problem(what, count)
    return Problem(what, count, float(offending.min()), float(offending.max()))


@dataclasses.dataclass(frozen=True)
class ProblemCounts:
    """Every check's problem (in a fixed order, counts of 0 included) over `rows` rows."""

    rows: int
    problems: Tuple[Problem, ...]

    def __add__(self, other: "ProblemCounts") -> "ProblemCounts":
        if [p.what for p in self.problems] != [p.what for p in other.problems]:
            raise ValueError("problem counts of different checks cannot be added")
        return ProblemCounts(
            self.rows + other.rows,
            tuple(a + b for a, b in zip(self.problems, other.problems)),
        )

    @property
    def found(self) -> Tuple[Problem, ...]:
        return tuple(p for p in self.problems if p.count)

    def message(self) -> str:
        """Each problem found, in check order, e.g. "2 of 90 logged rows have propensities <= 0"."""
        return "; ".join(p.describe(self.rows) for p in self.found)
