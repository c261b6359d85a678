"""The statistical tests against hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest

from llmops.evaluation import stats


def test_exact_binomial_matches_hand_computation():
    # b=15, c=5: 20 discordant pairs < 25 -> exact. P(X <= 5 | n=20, p=1/2) = sum_{k<=5} C(20,k) / 2^20
    # = (1 + 20 + 190 + 1140 + 4845 + 15504) / 1048576 = 21700 / 1048576; two-sided: twice that.
    result = stats.mcnemar(15, 5)
    assert result.method.startswith("exact binomial")
    assert result.p_value == pytest.approx(2 * 21700 / 1048576, rel=1e-12)
    # Symmetric in direction.
    assert stats.mcnemar(5, 15).p_value == pytest.approx(result.p_value, rel=1e-12)


def test_mcnemar_chi_square_matches_hand_computation():
    # b=40, c=20: statistic (|40-20| - 1)^2 / 60 = 361/60; p = P(chi2_1 >= 361/60) = erfc(sqrt(361/120)).
    result = stats.mcnemar(40, 20)
    assert result.method == "McNemar chi-square"
    assert result.statistic == pytest.approx(361 / 60)
    assert result.p_value == pytest.approx(math.erfc(math.sqrt(361 / 120)), rel=1e-9)
    assert 0.014 < result.p_value < 0.0143


def test_mcnemar_without_discordant_pairs_is_not_significant():
    assert stats.mcnemar(0, 0).p_value == 1.0
    # A single discordant pair can never be significant: p = 2 * P(X <= 0 | n=1) = 1.
    assert stats.mcnemar(1, 0).p_value == 1.0


def test_holm_adjustment_hand_computed():
    # sorted: 0.01 (x3 = 0.03), 0.02 (x2 = 0.04), 0.04 (x1 = 0.04, monotone max) ; 0.5 -> min(1, 4*.5)
    p = [0.04, 0.01, 0.5, 0.02]
    # m = 4: 0.01*4 = 0.04; 0.02*3 = 0.06; 0.04*2 = 0.08; 0.5*1 = 0.5
    assert stats.holm(p) == pytest.approx([0.08, 0.04, 0.5, 0.06])
    # Monotone: 0.01*3 = 0.03, 0.011*2 = 0.022 -> 0.03, 0.012*1 -> 0.03.
    assert stats.holm([0.012, 0.01, 0.011]) == pytest.approx([0.03, 0.03, 0.03])
    assert stats.holm([0.9, 0.8]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert stats.holm([]) == []


def test_bootstrap_is_seeded_and_interval_brackets_the_difference():
    rng = np.random.default_rng(0)
    a = rng.normal(0.6, 0.1, size=200)
    b = a - 0.05 + rng.normal(0, 0.02, size=200)
    r1 = stats.bootstrap_mean_differences(a, b, iterations=2000, seed=7)
    r2 = stats.bootstrap_mean_differences(a, b, iterations=2000, seed=7)
    r3 = stats.bootstrap_mean_differences(a, b, iterations=2000, seed=8)
    assert np.array_equal(r1, r2)
    assert not np.array_equal(r1, r3)
    low, high = stats.percentile_interval(r1, 0.95)
    assert low < float(np.mean(a - b)) < high
    assert low > 0.04 and high < 0.06
    assert stats.bootstrap_p_value(r1, 0.0).p_value == pytest.approx(2 / 2001)
    # Testing at the observed difference: nowhere near significant.
    assert stats.bootstrap_p_value(r1, float(np.mean(a - b))).p_value > 0.5


def test_bootstrap_identical_scores_gives_zero_width_and_p_one():
    a = np.array([0.2, 0.5, 0.9, 0.1])
    r = stats.bootstrap_mean_differences(a, a.copy(), iterations=1000, seed=1)
    assert stats.percentile_interval(r, 0.95) == (0.0, 0.0)
    assert stats.bootstrap_p_value(r, 0.0).p_value == 1.0


def test_seed_for_is_stable_across_processes():
    assert stats.seed_for(1, "corpus_mc/acc") == stats.seed_for(1, "corpus_mc/acc")
    assert stats.seed_for(1, "corpus_mc/acc") != stats.seed_for(1, "corpus_qa/rougeL")
    # A fixed value: Python's salted hash() would change from one process to the next.
    assert stats.seed_for(1, "x") == 0x553F121D1ECEF2A1
