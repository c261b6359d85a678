"""Cheap side signals that help a human read a drift report.

They describe *how* the current traffic differs (longer prompts, words the training data never had,
text the embedding tokenizer cannot represent) but do not enter the verdict: the verdict's false-alarm
rate is controlled by the permutation tests alone, and adding more tests would need a correction.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

_WORD = re.compile(r"[^\W_]+", re.UNICODE)


def ks_statistic(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov statistic and its asymptotic p-value."""
    a = np.sort(np.asarray(a, dtype=np.float64))
    b = np.sort(np.asarray(b, dtype=np.float64))
    if len(a) == 0 or len(b) == 0:
        return float("nan"), float("nan")
    grid = np.concatenate([a, b])
    d = float(np.max(np.abs(np.searchsorted(a, grid, "right") / len(a) - np.searchsorted(b, grid, "right") / len(b))))
    n_eff = len(a) * len(b) / (len(a) + len(b))
    from scipy.special import kolmogorov

    return d, float(kolmogorov(math.sqrt(n_eff) * d)) if d > 0 else 1.0


def _describe(values: np.ndarray) -> dict[str, float]:
    if len(values) == 0:
        return {"mean": float("nan"), "median": float("nan"), "p95": float("nan")}
    return {
        "mean": float(np.mean(values)),
        "median": float(np.median(values)),
        "p95": float(np.percentile(values, 95)),
    }


def length_signal(reference: list[str], current: list[str]) -> dict[str, Any]:
    """Length in words of both sides, and a KS test between the two distributions."""
    ref = np.array([len(_WORD.findall(t)) for t in reference], dtype=np.float64)
    cur = np.array([len(_WORD.findall(t)) for t in current], dtype=np.float64)
    d, p = ks_statistic(ref, cur)
    return {"reference": _describe(ref), "current": _describe(cur), "ks_statistic": d, "ks_p_value": p}


def unknown_token_share(texts: list[str], model_name: str) -> float:
    """Share of the embedding tokenizer's tokens that are its unknown token (`[UNK]`)."""
    from llmops.embedding import tokenizer

    tok = tokenizer(model_name)
    unk = tok.unk_token_id
    if unk is None or not texts:
        return 0.0
    ids = tok(list(texts), add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    return float(sum(row.count(unk) for row in ids) / total) if total else 0.0


def _words(texts: list[str]) -> list[str]:
    return [w.lower() for t in texts for w in _WORD.findall(t)]


def oov_rate(texts: list[str], vocabulary: set[str]) -> float:
    """Share of word occurrences in `texts` that are not in `vocabulary`."""
    words = _words(texts)
    return float(sum(w not in vocabulary for w in words) / len(words)) if words else 0.0


def text_signals(reference: list[str], current: list[str], model_name: str, seed: int = 0) -> dict[str, Any]:
    """All side signals of one comparison."""
    vocab = set(_words(reference))
    # Baseline for the OOV rate: one half of the reference against the other half's vocabulary.
    order = np.random.default_rng(seed).permutation(len(reference))
    half = len(reference) // 2
    first = [reference[i] for i in order[:half]]
    second = [reference[i] for i in order[half:]]
    return {
        "length_words": length_signal(reference, current),
        "unknown_token_share": {
            "reference": unknown_token_share(reference, model_name),
            "current": unknown_token_share(current, model_name),
        },
        "oov_rate": {
            "current_vs_reference": oov_rate(current, vocab),
            "reference_half_vs_other_half": oov_rate(second, set(_words(first))) if half else 0.0,
            "reference_vocabulary": len(vocab),
        },
    }
