"""Paired tests on per-sample scores, and Holm's step-down correction.

Two models evaluated on the same samples give paired scores; the gate asks whether the mean difference
(candidate - champion) is distinguishable from zero (or from an allowed regression), not whether two
point estimates differ.

- Binary scores (accuracy, exact match): only discordant pairs carry information. With `b` samples the
  candidate gets right and the champion wrong, and `c` the other way round, McNemar's test (with
  continuity correction) compares `b` and `c`; for few discordant pairs (`b + c < exact_below`) the exact
  binomial test (`b ~ Binomial(b + c, 1/2)` under the null) replaces the chi-square approximation.
- Any score (ROUGE, a margin test on accuracy): a seeded paired bootstrap of the mean difference, which
  also gives the confidence interval shown in the report. Its p-value inverts the percentile interval,
  so "the interval excludes the threshold" and "p < alpha" always agree.

All tests are two-sided; the direction comes from the sign of the observed difference.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BOOTSTRAP_CHUNK = 1000
"""Bootstrap resamples drawn at once (bounds memory to `BOOTSTRAP_CHUNK x n` indices)."""


@dataclass(frozen=True)
class TestResult:
    """A p-value, the method that produced it and the statistic it was computed from."""

    p_value: float
    method: str
    statistic: float | None = None


def is_binary(values: np.ndarray) -> bool:
    """True when every score is 0 or 1 (accuracy-like metrics)."""
    return bool(values.size) and bool(np.isin(values, (0.0, 1.0)).all())


def discordant_counts(candidate: np.ndarray, champion: np.ndarray) -> tuple[int, int]:
    """(b, c): pairs only the candidate gets right, pairs only the champion gets right."""
    b = int(np.sum((candidate == 1) & (champion == 0)))
    c = int(np.sum((candidate == 0) & (champion == 1)))
    return b, c


def mcnemar(b: int, c: int, *, exact_below: int = 25) -> TestResult:
    """Two-sided McNemar test of `b` against `c` discordant pairs.

    Exact binomial (`2 * P(X <= min(b, c))`, X ~ Binomial(b + c, 1/2), capped at 1) below `exact_below`
    discordant pairs; otherwise the continuity-corrected chi-square `(|b - c| - 1)^2 / (b + c)` with one
    degree of freedom.
    """
    from scipy import stats

    if b < 0 or c < 0:
        raise ValueError(f"discordant counts must be non-negative, got b={b}, c={c}")
    n = b + c
    if n == 0:
        return TestResult(1.0, "McNemar (no discordant pairs)", 0.0)
    if n < exact_below:
        p = stats.binomtest(min(b, c), n, 0.5, alternative="two-sided").pvalue
        return TestResult(float(min(1.0, p)), "exact binomial (McNemar)", float(min(b, c)))
    statistic = (abs(b - c) - 1) ** 2 / n
    return TestResult(float(stats.chi2.sf(statistic, df=1)), "McNemar chi-square", float(statistic))


def seed_for(base_seed: int, key: str) -> int:
    """A per-metric seed derived from the policy seed and a stable key (no process-dependent hashing)."""
    digest = hashlib.sha256(f"{base_seed}:{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def bootstrap_mean_differences(
    candidate: np.ndarray, champion: np.ndarray, *, iterations: int, seed: int
) -> np.ndarray:
    """Means of `candidate - champion` over `iterations` paired resamples (samples drawn with replacement)."""
    if candidate.shape != champion.shape or candidate.ndim != 1:
        raise ValueError(f"paired scores must be two 1-d arrays of one length, got {candidate.shape} and {champion.shape}")
    n = candidate.size
    if n == 0:
        raise ValueError("no paired samples to bootstrap")
    diff = candidate.astype(np.float64) - champion.astype(np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty(iterations, dtype=np.float64)
    for start in range(0, iterations, BOOTSTRAP_CHUNK):
        size = min(BOOTSTRAP_CHUNK, iterations - start)
        idx = rng.integers(0, n, size=(size, n))
        out[start:start + size] = diff[idx].mean(axis=1)
    return out


def percentile_interval(resampled: np.ndarray, confidence: float) -> tuple[float, float]:
    """Two-sided percentile bootstrap interval at `confidence`."""
    tail = (1.0 - confidence) / 2.0
    low, high = np.quantile(resampled, [tail, 1.0 - tail])
    return float(low), float(high)


def bootstrap_p_value(resampled: np.ndarray, threshold: float = 0.0) -> TestResult:
    """Two-sided bootstrap p-value of "the mean difference equals `threshold`".

    `2 * min(P*(d <= t), P*(d >= t))` with the +1 correction of Davison & Hinkley (never exactly 0),
    capped at 1: the smallest alpha at which the percentile interval at `1 - alpha` excludes `t`.
    """
    b = resampled.size
    below = (1 + int(np.sum(resampled <= threshold))) / (b + 1)
    above = (1 + int(np.sum(resampled >= threshold))) / (b + 1)
    return TestResult(float(min(1.0, 2.0 * min(below, above))), "paired bootstrap", float(threshold))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order as given).

    Sorted ascending, the i-th smallest (0-based) of m becomes `max over j <= i of min(1, (m - j) p_(j))`;
    rejecting where the adjusted p-value is below alpha controls the family-wise error rate at alpha.
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda i: p_values[i])
    adjusted = [0.0] * m
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * float(p_values[i])))
        adjusted[i] = running
    return adjusted
