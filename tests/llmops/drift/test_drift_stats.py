"""The permutation tests on synthetic Gaussian data, checked against direct computations."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.drift import stats


def _gauss(rng, n, d=8, shift=0.0):
    x = rng.normal(size=(n, d)).astype(np.float32)
    x[:, 0] += shift
    return x


def test_permutation_p_value_counts_the_observed_statistic():
    # Observed 5.0 is the largest of 1 + 4 statistics: p = (1 + 0) / (1 + 4).
    p = stats.permutation_p_values(np.array([5.0, 1.0, 2.0, 3.0, 4.0]))
    assert p[0] == pytest.approx(1 / 5)
    # Two permutations at least as large: p = (1 + 2) / 5; ties count as "at least as extreme".
    p = stats.permutation_p_values(np.array([3.0, 3.0, 4.0, 1.0, 2.0]))
    assert p[0] == pytest.approx(3 / 5)


def test_strong_shift_gets_the_smallest_possible_p_value():
    rng = np.random.default_rng(0)
    b = 99
    r = stats.two_sample_test(_gauss(rng, 60), _gauss(rng, 60, shift=2.0), permutations=b, seed=1)
    assert r.p_value_mmd == pytest.approx(1 / (b + 1))
    assert r.p_value_classifier == pytest.approx(1 / (b + 1))
    assert r.p_value == pytest.approx(1 / (b + 1))
    assert r.auc > 0.9 and r.partial_auc > 0.7


def test_no_drift_is_calibrated_and_shift_is_detected():
    rng = np.random.default_rng(42)
    null = [stats.two_sample_test(_gauss(rng, 40), _gauss(rng, 40), permutations=99, seed=s) for s in range(40)]
    p = np.array([[r.p_value, r.p_value_mmd, r.p_value_classifier] for r in null])
    # Under no drift p-values are uniform: mean near 0.5, few below alpha.
    assert 0.35 < p.mean() < 0.65
    assert (p[:, 0] <= 0.05).mean() <= 0.15
    shifted = [stats.two_sample_test(_gauss(rng, 40), _gauss(rng, 40, shift=1.5), permutations=99, seed=s) for s in range(10)]
    assert np.mean([r.p_value <= 0.05 for r in shifted]) >= 0.9


def test_same_seed_same_verdict_other_seed_other_permutations():
    rng = np.random.default_rng(3)
    x, y = _gauss(rng, 50), _gauss(rng, 50, shift=0.3)
    a = stats.two_sample_test(x, y, permutations=99, seed=7)
    b = stats.two_sample_test(x, y, permutations=99, seed=7)
    c = stats.two_sample_test(x, y, permutations=99, seed=8)
    assert (a.p_value, a.p_value_mmd, a.p_value_classifier) == (b.p_value, b.p_value_mmd, b.p_value_classifier)
    assert (a.p_value_mmd, a.p_value_classifier) != (c.p_value_mmd, c.p_value_classifier)


def test_mmd_quadratic_form_matches_the_textbook_statistic():
    rng = np.random.default_rng(5)
    x, y = _gauss(rng, 30, d=4), _gauss(rng, 20, d=4, shift=0.5)
    z = np.vstack([x, y])
    k, s = stats.rbf_kernel(z, np.random.default_rng(0))
    labels = stats.permuted_labels(30, 20, 3, np.random.default_rng(0))
    got = stats.mmd_statistics(k, labels)[0]
    d2 = ((z[:, None, :] - z[None, :, :]) ** 2).sum(-1)
    kk = np.exp(-d2 / (2 * s * s))
    expected = kk[:30, :30].mean() + kk[30:, 30:].mean() - 2 * kk[:30, 30:].mean()
    assert got == pytest.approx(expected, rel=1e-4)
    assert s == pytest.approx(np.sqrt(np.median(d2[np.triu_indices(50, 1)])), rel=1e-4)


def test_classifier_statistic_matches_sklearn_ridge():
    from sklearn.linear_model import Ridge
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(11)
    # 40 reference rows: an FPR of 0.1 falls exactly on the 4th one, as sklearn's interpolation assumes.
    x, y = _gauss(rng, 40, d=6), _gauss(rng, 30, d=6, shift=0.7)
    z = np.vstack([x, y])
    labels = stats.permuted_labels(40, 30, 4, np.random.default_rng(0))
    got = stats.classifier_statistics(z, labels, folds=5, ridge=3.0, rng=np.random.default_rng(1))
    folds = stats.stratified_folds(labels[:, 0], 5, np.random.default_rng(1))
    for col in (0, 3):
        target = np.where(labels[:, col], 1.0, -1.0)
        pooled = np.zeros(len(z))
        for f in range(5):
            te, tr = folds == f, folds != f
            xc = z[tr] - z[tr].mean(0)
            lam = 3.0 * float((xc.astype(np.float64) ** 2).sum()) / z.shape[1]
            model = Ridge(alpha=lam).fit(z[tr], target[tr])
            # Without the fold's intercept (the training class balance) and on a common scale.
            pooled[te] = (model.predict(z[te]) - target[tr].mean()) / lam
        assert got.partial_auc[col] == pytest.approx(roc_auc_score(labels[:, col], pooled, max_fpr=0.1), abs=1e-4)
        if col == 0:
            assert got.auc == pytest.approx(roc_auc_score(labels[:, 0], pooled), abs=1e-4)


def test_column_ranks_average_ties():
    from scipy.stats import rankdata

    a = np.random.default_rng(0).integers(0, 4, size=(30, 5)).astype(np.float32)
    assert np.allclose(stats.column_ranks(a), rankdata(a, axis=0))


def test_min_p_combination_is_not_more_liberal_than_each_test_alone():
    rng = np.random.default_rng(2)
    t1, t2 = rng.normal(size=200), rng.normal(size=200)
    combined, (p1, p2) = stats.min_p_combination(t1, t2)
    assert combined >= min(p1, p2)
    assert combined <= min(1.0, 2 * min(p1, p2) + 1 / 200)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="same width"):
        stats.two_sample_test(np.zeros((10, 3)), np.zeros((10, 4)))
