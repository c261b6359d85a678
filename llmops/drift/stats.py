"""Two-sample tests on embeddings, calibrated by permutation, combined into one verdict.

Both tests answer "are the reference and current samples draws from the same distribution?" and both
are evaluated on the **same** B random relabellings of the pooled sample (column 0 of the label matrix is
the observed labelling):

- **MMD** with an RBF kernel `k(a, b) = exp(-|a - b|^2 / (2 s^2))`, `s` = the median pairwise distance of
  the pooled sample (median heuristic; it ignores the labels, so permuting stays valid). With a weight
  vector `w` (`+1/n` on reference rows, `-1/m` on current rows) the biased MMD^2 is the quadratic form
  `w' K w`; stacking the B + 1 weight vectors as the columns of `W`, one product `K @ W` gives every
  permutation's statistic.
- **Domain classifier**: a ridge classifier predicts "current vs reference" with k-fold
  cross-validation, and the statistic is the standardized **partial** ROC AUC (false-positive rates up to
  0.1) of the pooled out-of-fold scores. Ridge scores are linear in the label vector (`scores_test =
  X_test (X_train' X_train + lambda I)^-1 X_train' y_train` with centred columns), so the out-of-fold
  scores of every permutation come from one matrix product per fold; the partial AUCs come from one
  column-wise sort. Why partial: when a share `s` of the traffic drifted, even a perfect classifier's full
  AUC is capped at `0.5 + s/2`, while the drifted rows crowd the top of the ranking, where the partial
  AUC looks (on the benchmark's 10% shift the full AUC detected 16-20% of splits, the partial AUC 58%).
  The full AUC is still reported.

p-values count the observed statistic among the permutations: `p = (1 + #{b: T_b >= T_obs}) / (1 + B)`,
so the smallest possible p is `1 / (B + 1)` and the test is exact (level alpha) under exchangeability.

**One verdict from two p-values** (Westfall-Young min-P): the combined statistic is `min(p_mmd, p_clf)`,
and its own p-value comes from the same permutations, where each permutation's two p-values are
computed against the same B + 1 statistics. Because the two tests share the relabellings, the
combination is exact at alpha whatever the correlation between the tests (Bonferroni's `2 min(p)` would
also be valid but conservative when, as here, the tests are strongly correlated). Drift is declared when
the combined p-value is at most alpha.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

DEFAULT_PERMUTATIONS = 500
DEFAULT_FOLDS = 5
DEFAULT_RIDGE = 100.0
"""Ridge penalty relative to the mean eigenvalue of the centred Gram matrix (`lambda = ridge * tr(X'X) / d`),
so it means the same for any embedding dimension and sample size. Strong on purpose: when only a share
of the traffic drifted, the direction between the class means is the stablest discriminant (measured on
the benchmark: power grows from penalty 1 to 100 and then flattens)."""
PARTIAL_AUC_MAX_FPR = 0.1
"""The classifier statistic is the partial AUC over false-positive rates up to this value."""
MEDIAN_SUBSAMPLE = 1000
"""Points used to estimate the median pairwise distance (the bandwidth does not need more)."""


@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of the combined test on one reference/current pair."""

    p_value: float
    """Combined (min-P) p-value: the verdict compares it with alpha."""
    p_value_mmd: float
    p_value_classifier: float
    mmd2: float
    """Observed biased MMD^2 (RBF kernel, median-heuristic bandwidth)."""
    auc: float
    """Observed out-of-fold ROC AUC of the ridge domain classifier (0.5 = indistinguishable); descriptive."""
    partial_auc: float
    """Observed standardized partial AUC (false-positive rates up to 0.1): the classifier test's statistic."""
    bandwidth: float
    """Kernel bandwidth s (median pairwise distance)."""
    n_reference: int
    n_current: int
    permutations: int
    seed: int
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def available_cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS
        return os.cpu_count() or 1


def blas_threads() -> int:
    """BLAS threads for the tests: `LLMOPS_BLAS_THREADS`, else half the cores this process may use.

    Half, because the step shares its machine (an Airflow worker, other steps) and OpenBLAS threads
    busy-wait: on a busy 2-core machine, 2 threads made the 2,000 vs 2,000 test 3x slower than 1 thread
    (4.9 s vs 1.6 s), while on an idle one the second thread gains less than 2x."""
    from llmops.settings import process_settings

    threads = process_settings().blas_threads
    if threads:
        return threads
    return max(1, available_cores() // 2)


def limit_blas_threads(threads: int | None = None):
    """A context that caps BLAS/OpenMP pools (NumPy's OpenBLAS, torch's OpenMP) to `threads`: more
    threads than cores, or two libraries each spawning a pool per core, makes the products slower."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # optional: without it the libraries keep their defaults
        return contextlib.nullcontext()
    return threadpool_limits(limits=threads or blas_threads())


def permuted_labels(n_reference: int, n_current: int, permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Boolean matrix (n_reference + n_current, permutations + 1): True marks a "current" row. Column 0 is
    the observed labelling (reference rows first), the others are uniform random relabellings."""
    base = np.zeros(n_reference + n_current, dtype=bool)
    base[n_reference:] = True
    perms = rng.permuted(np.tile(base, (permutations, 1)), axis=1)
    return np.ascontiguousarray(np.column_stack([base, perms.T]))


def permutation_p_values(stats: np.ndarray, rtol: float = 1e-6) -> np.ndarray:
    """For every column b, `#{k: T_k >= T_b} / len(T)`: the permutation p-value of each statistic among all
    of them (the observed one included). Differences below `rtol` of the spread count as ties (float32
    products of the same labelling may differ in the last bits), which only makes p-values larger."""
    stats = np.asarray(stats, dtype=np.float64)
    tol = rtol * (float(np.max(np.abs(stats))) + 1e-30)
    ordered = np.sort(stats)
    below = np.searchsorted(ordered, stats - tol, side="left")
    return (len(stats) - below) / len(stats)


def min_p_combination(*stat_vectors: np.ndarray) -> tuple[float, list[float]]:
    """Westfall-Young min-P over tests evaluated on the same permutations (column 0 = observed).

    Returns the combined p-value and each test's own p-value."""
    pvals = np.vstack([permutation_p_values(s) for s in stat_vectors])
    min_p = pvals.min(axis=0)
    tol = 1e-12
    combined = float(np.count_nonzero(min_p <= min_p[0] + tol) / len(min_p))
    return combined, [float(p[0]) for p in pvals]


# --- MMD -------------------------------------------------------------------------------------------------


def squared_distances(z: np.ndarray) -> np.ndarray:
    """Pairwise squared Euclidean distances of the rows of `z` (float32, clipped at 0)."""
    sq = np.einsum("ij,ij->i", z, z)
    d2 = z @ z.T
    d2 *= -2.0
    d2 += sq[:, None]
    d2 += sq[None, :]
    np.maximum(d2, 0.0, out=d2)
    np.fill_diagonal(d2, 0.0)
    return d2


def median_bandwidth(d2: np.ndarray, rng: np.random.Generator) -> float:
    """Median heuristic: the median pairwise distance of (a subsample of) the pooled points."""
    n = d2.shape[0]
    idx = np.sort(rng.choice(n, size=MEDIAN_SUBSAMPLE, replace=False)) if n > MEDIAN_SUBSAMPLE else np.arange(n)
    sub = d2[np.ix_(idx, idx)]
    upper = sub[np.triu_indices(len(idx), k=1)]
    med = float(np.sqrt(np.median(upper))) if upper.size else 0.0
    # Identical points everywhere: any bandwidth gives K = 1 and MMD = 0; avoid dividing by zero.
    return med if med > 0 else 1.0


def rbf_kernel(z: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, float]:
    """The pooled RBF kernel matrix (float32, computed in place) and its bandwidth."""
    k = squared_distances(z)
    s = median_bandwidth(k, rng)
    k *= np.float32(-1.0 / (2.0 * s * s))
    np.exp(k, out=k)
    return k, s


def mmd_statistics(k: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Biased MMD^2 for every labelling (column of `labels`): `w' K w` with `w = +1/n` on reference rows
    and `-1/m` on current rows, all columns in one product."""
    m = labels[:, 0].sum()
    n = labels.shape[0] - m
    w = np.where(labels, np.float32(-1.0 / m), np.float32(1.0 / n)).astype(np.float32)
    kw = k @ w
    return np.einsum("ij,ij->j", w, kw, dtype=np.float64)


# --- domain classifier -----------------------------------------------------------------------------------


def stratified_folds(labels: np.ndarray, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold id per row, balanced within each class of the observed labels."""
    out = np.empty(len(labels), dtype=np.int64)
    for cls in (False, True):
        idx = np.flatnonzero(labels == cls)
        out[rng.permutation(idx)] = np.arange(len(idx)) % folds
    return out


def _ridge_scores(x_tr: np.ndarray, x_te: np.ndarray, y_tr: np.ndarray, lam: float) -> np.ndarray:
    """Test scores `X_te (X_tr'X_tr + lam I)^-1 X_tr' Y_tr` for every label column of `Y_tr` at once.

    The small linear system is solved in float64; the products that carry the permutations stay
    float32. Below `d` training rows the dual form (`X_te X_tr' (X_tr X_tr' + lam I)^-1 Y_tr`, the same
    value) has the smaller system."""
    n_tr, d = x_tr.shape
    if n_tr < d:
        gram = (x_tr @ x_tr.T).astype(np.float64)
        gram[np.diag_indices_from(gram)] += lam
        alpha = np.linalg.solve(gram, y_tr.astype(np.float64)).astype(np.float32)
        return (x_te @ x_tr.T) @ alpha
    cov = (x_tr.T @ x_tr).astype(np.float64)
    cov[np.diag_indices_from(cov)] += lam
    beta = np.linalg.solve(cov, (x_tr.T @ y_tr).astype(np.float64)).astype(np.float32)
    return x_te @ beta


def column_ranks(a: np.ndarray) -> np.ndarray:
    """Average ranks (1-based, ties share their mean rank) of every column, vectorized over columns."""
    n = a.shape[0]
    order = np.argsort(a, axis=0, kind="stable")
    s = np.take_along_axis(a, order, axis=0)
    new_group = np.ones_like(s, dtype=bool)
    new_group[1:] = s[1:] != s[:-1]
    pos = np.arange(n)[:, None]
    # First and last sorted position of each tie group, broadcast to its members.
    first = np.maximum.accumulate(np.where(new_group, pos, 0), axis=0)
    ends = np.ones_like(new_group)
    ends[:-1] = new_group[1:]
    last = np.minimum.accumulate(np.where(ends, pos, n - 1)[::-1], axis=0)[::-1]
    ranks = np.empty(a.shape, dtype=np.float64)
    np.put_along_axis(ranks, order, (first + last) / 2.0 + 1.0, axis=0)
    return ranks


def column_auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC of every column (Mann-Whitney U from average ranks); NaN where a class is empty."""
    ranks = column_ranks(scores)
    n_pos = positive.sum(axis=0).astype(np.float64)
    n_neg = positive.shape[0] - n_pos
    rank_sum = np.where(positive, ranks, 0.0).sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def column_partial_auc(
    scores: np.ndarray, positive: np.ndarray, max_fpr: float, tiebreak: np.ndarray
) -> np.ndarray:
    """Standardized partial ROC AUC over false-positive rates in [0, max_fpr] of every column.

    McClish's standardization maps chance to 0.5 and a perfect ranking to 1, like a full AUC. Tied
    scores are ordered by `tiebreak`, a label-free random order of the rows, so ties favour neither side
    (ordering them by row would put every reference duplicate first)."""
    # Rows first put in the tie-break order; a stable sort then keeps tied rows in that order.
    order = np.argsort(-scores[tiebreak], axis=0, kind="stable")
    pos = np.take_along_axis(positive[tiebreak], order, axis=0)
    n_pos = pos.sum(axis=0).astype(np.float64)
    n_neg = pos.shape[0] - n_pos
    tp = np.cumsum(pos, axis=0, dtype=np.float64)
    fp = np.cumsum(~pos, axis=0, dtype=np.float64)
    # Each negative met while the FPR is within max_fpr adds a strip of height TPR and width 1/n_neg.
    in_range = ~pos & (fp <= max_fpr * n_neg)
    with np.errstate(invalid="ignore", divide="ignore"):
        area = np.where(in_range, tp, 0.0).sum(axis=0) / (n_pos * n_neg)
        lo, hi = max_fpr * max_fpr / 2.0, max_fpr
        return 0.5 * (1.0 + (area - lo) / (hi - lo))


@dataclass(frozen=True)
class ClassifierStatistics:
    partial_auc: np.ndarray
    """Standardized partial AUC (FPR <= PARTIAL_AUC_MAX_FPR) of every labelling: the test statistic."""
    auc: float
    """Full out-of-fold ROC AUC of the observed labelling (descriptive)."""


def classifier_statistics(
    x: np.ndarray,
    labels: np.ndarray,
    folds: int,
    ridge: float,
    rng: np.random.Generator,
    max_fpr: float = PARTIAL_AUC_MAX_FPR,
) -> ClassifierStatistics:
    """Out-of-fold scores of a ridge domain classifier for every labelling, and their partial AUC.

    Every row is scored by the model fitted on the other folds; the scores of all folds are ranked
    together (divided by each fold's penalty, they share one scale), so the statistic sees the few
    most "current-like" rows of the whole sample, where a drift that affects a share of the traffic
    shows first."""
    fold_of = stratified_folds(labels[:, 0], folds, rng)
    x = x.astype(np.float32, copy=False)
    y = np.where(labels, np.float32(1.0), np.float32(-1.0))
    scores = np.zeros(labels.shape, dtype=np.float32)
    for f in range(folds):
        te = fold_of == f
        tr = ~te
        if not te.any() or tr.sum() < 2:
            continue
        mu = x[tr].mean(axis=0)
        x_tr = x[tr] - mu
        x_te = x[te] - mu
        lam = max(ridge * float(np.einsum("ij,ij->", x_tr, x_tr, dtype=np.float64)) / x.shape[1], 1e-6)
        y_tr = y[tr]
        y_tr = y_tr - y_tr.mean(axis=0)
        scores[te] = _ridge_scores(x_tr, x_te, y_tr, lam) / np.float32(lam)
    tiebreak = rng.permutation(len(x))
    pauc = column_partial_auc(scores, labels, max_fpr, tiebreak)
    auc = float(column_auc(scores[:, :1], labels[:, :1])[0])
    return ClassifierStatistics(partial_auc=np.nan_to_num(pauc, nan=0.5), auc=auc)


# --- both --------------------------------------------------------------------------------------------------


def two_sample_test(
    reference: np.ndarray,
    current: np.ndarray,
    *,
    permutations: int = DEFAULT_PERMUTATIONS,
    seed: int = 0,
    folds: int = DEFAULT_FOLDS,
    ridge: float = DEFAULT_RIDGE,
    threads: int | None = None,
) -> TwoSampleResult:
    """MMD and domain-classifier permutation tests on the same relabellings, and their min-P combination.

    The same inputs and seed give the same p-values (one seeded generator drives the permutations, the
    bandwidth subsample and the folds)."""
    start = time.perf_counter()
    reference = np.asarray(reference, dtype=np.float32)
    current = np.asarray(current, dtype=np.float32)
    if reference.ndim != 2 or current.ndim != 2 or reference.shape[1] != current.shape[1]:
        raise ValueError(
            f"embeddings must be 2-D with the same width; got {reference.shape} and {current.shape}"
        )
    if permutations < 1:
        raise ValueError(f"permutations must be at least 1, got {permutations}")
    rng = np.random.default_rng(seed)
    n, m = len(reference), len(current)
    z = np.vstack([reference, current])
    labels = permuted_labels(n, m, permutations, rng)
    with limit_blas_threads(threads):
        k, bandwidth = rbf_kernel(z, rng)
        mmd = mmd_statistics(k, labels)
        del k
        clf = classifier_statistics(z, labels, folds, ridge, rng)
    p_value, (p_mmd, p_clf) = min_p_combination(mmd, clf.partial_auc)
    return TwoSampleResult(
        p_value=p_value,
        p_value_mmd=p_mmd,
        p_value_classifier=p_clf,
        mmd2=float(mmd[0]),
        auc=clf.auc,
        partial_auc=float(clf.partial_auc[0]),
        bandwidth=bandwidth,
        n_reference=n,
        n_current=m,
        permutations=permutations,
        seed=seed,
        seconds=time.perf_counter() - start,
    )
