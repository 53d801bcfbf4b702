"""Sums the OPE estimates and their Poisson-bootstrap intervals are made of, added over batches.

A batch of distinct rows (each with its multiplicity m_n and key) gives named
per-row values: a count column, each policy's OPE terms (`ope.per_row_terms`)
and any point-only quantity (e.g. the simulator's expected rewards). Their
point sums are sum_n m_n v_n and their replicate sums sum_n W_bn v_n; both add
up across batches and workers, so the estimates need no row in memory.
"""

import dataclasses
from typing import Dict, Sequence, Tuple

import numpy as np

from custom_components.policy_evaluator import ope, poisson_bootstrap

ROWS = "rows"
TERMS = ("weight", "ips", "dm", "dr")


def term_names(role: str) -> Tuple[str, ...]:
    """The columns of one policy's OPE terms, e.g. "candidate/ips"."""
    return tuple(f"{role}/{term}" for term in TERMS)


@dataclasses.dataclass(frozen=True)
class Sums:
    """Point sums of named per-row values, and replicate sums of the first `replicated` of them.

    Attributes:
      names: [T] what each column is; the first is ROWS (every row's 1).
      point: [T] sum_n m_n v_n.
      replicates: [B, R] sum_n W_bn v_n for the first R names.
    """

    names: Tuple[str, ...]
    point: np.ndarray
    replicates: np.ndarray

    def __add__(self, other: "Sums") -> "Sums":
        if self.names != other.names:
            raise ValueError(f"cannot add sums of {self.names} and {other.names}")
        return Sums(self.names, self.point + other.point, self.replicates + other.replicates)

    def value(self, name: str) -> float:
        return float(self.point[self.names.index(name)])

    def estimates(self, role: str, confidence: float) -> Dict[str, ope.Estimate]:
        """IPS, SNIPS, DM and DR of `role`'s terms with percentile intervals.

        A replicate that weighs every row 0 estimates nothing and is left out.
        """
        columns = [self.names.index(name) for name in (ROWS,) + term_names(role)]
        rows, *terms = self.point[columns]
        point = ope.estimates_from_sums(dict(zip(TERMS, terms)), rows)
        replicated = self.replicates[:, columns]
        replicated = replicated[replicated[:, 0] > 0.0]
        values = ope.estimates_from_sums(dict(zip(TERMS, replicated[:, 1:].T)), replicated[:, 0])
        return {
            name: ope.percentile_estimate(float(point[name]), values[name], confidence)
            for name in ope.ESTIMATORS
        }


def batch_sums(
    replicated: Dict[str, np.ndarray],
    point_only: Dict[str, np.ndarray],
    keys: np.ndarray,
    multiplicities: np.ndarray,
    seed: int,
    replicates: int,
) -> Sums:
    """The sums of one batch of distinct rows.

    Args:
      replicated: [N] values per name whose bootstrap replicates are needed
        (ROWS is added first).
      point_only: [N] values per name that need only their point sum.
      keys: [N] the rows' keys (`row_hashing.row_keys`), which fix their weights.
      multiplicities: [N] how many logged rows each distinct row stands for.
      seed: the bootstrap's seed.
      replicates: B.
    """
    m = np.asarray(multiplicities, dtype=np.float64)
    boot = np.column_stack([np.ones_like(m)] + list(replicated.values()))
    names: Sequence[str] = (ROWS,) + tuple(replicated) + tuple(point_only)
    values = np.column_stack([boot] + [np.asarray(v, np.float64) for v in point_only.values()])
    return Sums(
        tuple(names),
        m @ values,
        poisson_bootstrap.replicate_sums(keys, multiplicities, seed, replicates, boot),
    )
