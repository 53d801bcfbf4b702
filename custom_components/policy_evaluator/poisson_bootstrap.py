"""The Poisson bootstrap: replicate sums any worker can add up without holding a row.

Replicate b weighs a row by a Poisson(1) draw instead of resampling N rows
with replacement (the multinomial bootstrap, which needs all N indices at
once). The draw is the inverse CDF of a uniform hashed from (row key, seed,
b), so every worker gives a row the same weights, and replicate b's sums are
`weights.T @ terms`: a matmul per batch, and only [B, terms] sums are kept.

Rows with equal content share a key, so they are first merged into one
distinct row of multiplicity m (see `distinct_rows`); its weight is then a
Poisson(m) draw, the sum of m independent Poisson(1) draws, exactly as if
each copy had been weighed on its own. Estimators are ratios of weighted
sums (e.g. IPS_b = sum_n W_bn w_n r_n / sum_n W_bn).
"""

import functools

import numpy as np

from custom_components.policy_evaluator import row_hashing

# Weights built at once: rows are taken in blocks of about this many row-replicate pairs.
_BLOCK_WEIGHTS = 1 << 22
# The CDF table of Poisson(m) stops where the remaining mass is below float64 resolution.
_TAIL_SDS, _TAIL_MARGIN = 12.0, 25


@functools.lru_cache(maxsize=256)
def _poisson_cdf(mean: int) -> np.ndarray:
    """CDF of Poisson(mean) at 0, 1, ..., its last entry set to 1 so every uniform maps."""
    ks = np.arange(int(mean + _TAIL_SDS * np.sqrt(mean)) + _TAIL_MARGIN)
    log_pmf = -mean + ks * np.log(mean) - np.cumsum(np.log(np.maximum(ks, 1)))
    cdf = np.cumsum(np.exp(log_pmf))
    cdf[-1] = 1.0
    return cdf


def poisson_weights(
    keys: np.ndarray, multiplicities: np.ndarray, seed: int, start: int, count: int
) -> np.ndarray:
    """[N, count] weights of replicates start..start+count-1: Poisson(m_n) draws per row."""
    draws = row_hashing.uniforms(
        row_hashing.stream_bases(keys, seed, row_hashing.BOOTSTRAP_STREAM), start, count
    )
    weights = np.empty_like(draws)
    m = np.asarray(multiplicities, dtype=np.int64)
    for mean in np.unique(m):
        rows = m == mean
        weights[rows] = np.searchsorted(_poisson_cdf(int(mean)), draws[rows], side="right")
    return weights


def replicate_sums(
    keys: np.ndarray, multiplicities: np.ndarray, seed: int, replicates: int, terms: np.ndarray
) -> np.ndarray:
    """[B, T] sum_n W_bn terms_nt for distinct rows' [N, T] terms, in blocks of rows."""
    terms = np.asarray(terms, dtype=np.float64)
    sums = np.zeros((replicates, terms.shape[1]))
    rows_per_block = max(1, _BLOCK_WEIGHTS // replicates)
    for start in range(0, len(terms), rows_per_block):
        block = slice(start, start + rows_per_block)
        weights = poisson_weights(keys[block], multiplicities[block], seed, 0, replicates)
        sums += weights.T @ terms[block]
    return sums


def distinct_rows(keys: np.ndarray):
    """(first row of each distinct key, sorted by key; [D] keys; [D] multiplicities)."""
    unique, first, counts = np.unique(keys, return_index=True, return_counts=True)
    return first, unique, counts
