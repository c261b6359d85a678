"""`llmops bench drift`: calibration, power and speed of the drift test on real corpora.

Units are paragraphs of a documentation corpus (a folder the caller names, e.g. the Kubernetes docs):
every document is
split into paragraphs (front matter, code blocks, shortcodes and tables removed), all paragraphs are
embedded once with the embedding model and cached under `<data_root>/cache/embeddings/`, keyed by a hash
of the model name and the texts, so later runs skip the embedding.

- false-alarm rate, **paragraph-level null**: both sides are disjoint random samples of the pooled k8s
  paragraphs (exchangeable: the null the first version was calibrated on);
- false-alarm rate, **document-level null**: the documents are split at random into two halves, each
  side is drawn from its own half (same documentation set, different pages: what ordinary traffic about
  a subset of the training topics looks like). No drift in either case: the share of splits flagged
  must stay near alpha;
- power: on document-level splits, the current side mixes in a share (10%, 30%) of paragraphs from
  another corpus (`hf-hub-docs`); the share of splits flagged is the power;
- speed: seconds per check on the embeddings (the coverage verdict plus the descriptive MMD/classifier
  tests, all permutations) at 300 and 2,000 per side;
- the same splits through the distribution tests' min-P verdict (the first version's verdict) and
  Evidently's default embedding drift method (`EmbeddingsDriftMetric` without a
  `drift_method`: `model(bootstrap=n_reference < 1000)`, a SGD domain classifier whose ROC AUC is
  compared with the 95th percentile of random-score AUCs), imported only here.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from llmops.exceptions import ConfigError, InputDataError

if TYPE_CHECKING:
    from llmops.settings import Settings

log = logging.getLogger(__name__)

_FRONT_MATTER = re.compile(r"\A---\n.*?\n---\n", re.S)
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.S | re.M)
_SHORTCODE = re.compile(r"\{\{[<%].*?[%>]\}\}", re.S)
_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_TAG = re.compile(r"</?[A-Za-z][^>]*>")
_HEADING = re.compile(r"^#{1,6}\s.*$", re.M)
MIN_PARAGRAPH_CHARS = 80


def corpus_dir(folder: str) -> Path:
    """The folder of one benchmark corpus, as the caller named it (never a location outside the arguments)."""
    path = Path(folder).expanduser()
    if not path.is_dir():
        raise InputDataError(f"benchmark corpus {folder!r} is not a folder: name a folder of Markdown documents")
    return path


def markdown_paragraphs(text: str) -> list[str]:
    """Prose paragraphs of one Markdown document: blank-line separated blocks without front matter,
    code, shortcodes, HTML tags, headings and tables, whitespace collapsed, at least 80 characters."""
    text = _FRONT_MATTER.sub("", text.replace("\r\n", "\n"))
    text = _FENCE.sub("", text)
    text = _HTML_COMMENT.sub("", text)
    text = _SHORTCODE.sub("", text)
    text = _TAG.sub("", text)
    text = _HEADING.sub("", text)
    out = []
    for block in re.split(r"\n\s*\n", text):
        lines = [ln for ln in block.splitlines() if not ln.lstrip().startswith("|")]
        para = " ".join(" ".join(lines).split())
        if len(para) >= MIN_PARAGRAPH_CHARS:
            out.append(para)
    return out


def corpus_paragraphs(folder: Path) -> list[str]:
    """Distinct paragraphs of every `.md` file under a folder, in a stable order."""
    return corpus_paragraphs_with_documents(folder)[0]


def corpus_paragraphs_with_documents(folder: Path) -> tuple[list[str], np.ndarray]:
    """Distinct paragraphs of every `.md` file under a folder, in a stable order, and the index of the
    (first) document each one comes from."""
    seen: set[str] = set()
    out: list[str] = []
    docs: list[int] = []
    for d, path in enumerate(sorted(Path(folder).rglob("*.md"))):
        for para in markdown_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            if para not in seen:
                seen.add(para)
                out.append(para)
                docs.append(d)
    return out, np.asarray(docs, dtype=np.int64)


def corpus_embeddings(name: str, model_name: str, cache_root: str) -> tuple[np.ndarray, np.ndarray]:
    """Paragraph embeddings of one corpus (through the embedding cache) and each paragraph's document."""
    folder = corpus_dir(name)
    paragraphs, documents = corpus_paragraphs_with_documents(folder)
    if not paragraphs:
        raise InputDataError(f"no paragraphs found under {folder}: the benchmark needs Markdown documents there")
    from llmops.drift.inputs import cached_embeddings

    return cached_embeddings(paragraphs, model_name, cache_root), documents


# --- the benchmark ---------------------------------------------------------------------------------------

ANCHOR = {
    "source": "product owner, Evidently 0.7 default embedding drift, all-MiniLM-L6-v2 paragraphs of the same corpora",
    "false_alarms_300": "1/30",
    "power_30pct_300": "28/30",
    "power_30pct_100": "10/20",
    "power_10pct_300": "4/20",
    "seconds_300": 2.1,
    "seconds_1400": 9.7,
}
TARGETS = {
    "false_alarm_rate_max": 0.07,
    "power_30pct_300_min": 0.9,
    "power_30pct_100_min": 0.8,
    "seconds_2000_max": 5.0,
}
MIN_SPLITS = 50
NULLS = ("paragraph", "document")


@dataclass(frozen=True)
class BenchConfig:
    splits: int = 50
    sizes: tuple[int, ...] = (100, 300)
    shifts: tuple[float, ...] = (0.1, 0.3)
    timing_sizes: tuple[int, ...] = (300, 2000)
    alpha: float = 0.05
    resamples: int = 1000
    quantile: float = 0.9
    min_effect: float = 0.05
    permutations: int = 500
    distribution: bool = True
    evidently: bool = True
    base: str = ""
    """Folder of the no-drift corpus (`--base`)."""
    other: str = ""
    """Folder of the shift corpus (`--other`)."""
    embedding_model: str = "all-MiniLM-L6-v2"
    seed: int = 0

    @classmethod
    def from_args(cls, args: Any, settings: Settings) -> BenchConfig:
        def ints(text: str) -> tuple[int, ...]:
            return tuple(int(x) for x in str(text).split(",") if x.strip())

        def floats(text: str) -> tuple[float, ...]:
            return tuple(float(x) for x in str(text).split(",") if x.strip())

        cfg = cls(
            splits=args.splits,
            sizes=ints(args.sizes),
            shifts=floats(args.shifts),
            timing_sizes=ints(args.timing_sizes),
            alpha=args.alpha,
            resamples=args.resamples,
            quantile=settings.drift.drift_coverage_quantile if args.quantile is None else args.quantile,
            min_effect=settings.drift.drift_min_effect if args.min_effect is None else args.min_effect,
            permutations=args.permutations,
            distribution=not args.no_distribution,
            evidently=not args.no_evidently,
            base=args.base,
            other=args.other,
            embedding_model=args.embedding_model or settings.rag.embedding_model,
        )
        if cfg.splits < MIN_SPLITS:
            raise ConfigError(f"--splits = {cfg.splits}: the false-alarm rate needs at least {MIN_SPLITS} splits")
        if not cfg.sizes or min(cfg.sizes) < 10:
            raise ConfigError(f"--sizes = {args.sizes}: give per-side sizes of at least 10")
        if any(not 0 < s < 1 for s in cfg.shifts):
            raise ConfigError(f"--shifts = {args.shifts}: shares must lie between 0 and 1")
        if not 0.5 <= cfg.quantile < 1:
            raise ConfigError(f"--quantile = {cfg.quantile}: give a value in [0.5, 1)")
        if 1.0 / (cfg.resamples + 1) > cfg.alpha:
            raise ConfigError(f"--resamples = {cfg.resamples}: the smallest p-value would exceed alpha")
        return cfg


def evidently_default_method(n_reference: int):
    """What `EmbeddingsDriftMetric` runs without a `drift_method`: `model(bootstrap=n_reference < 1000)`
    (evidently/legacy/metrics/data_drift/embeddings_drift.py, `calculate`)."""
    from evidently.legacy.metrics.data_drift.embedding_drift_methods import model

    return model(bootstrap=n_reference < 1000)


def evidently_drift(reference: np.ndarray, current: np.ndarray) -> bool:
    import pandas as pd

    cols = [f"e{i}" for i in range(reference.shape[1])]
    method = evidently_default_method(len(reference))
    _, detected, _ = method(pd.DataFrame(current, columns=cols), pd.DataFrame(reference, columns=cols))
    return bool(detected)


def _split(rng: np.random.Generator, base_n: int, other_n: int, size: int, shift: float):
    """Paragraph-level split: `size` reference and `size` current base rows (disjoint, from the pooled
    paragraphs), of which the first `round(shift * size)` current rows are replaced by other-corpus rows."""
    idx = rng.choice(base_n, size=2 * size, replace=False)
    k = int(round(shift * size))
    other = rng.choice(other_n, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
    return idx[:size], idx[size + k:], other


def _document_split(rng: np.random.Generator, documents: np.ndarray, other_n: int, size: int, shift: float):
    """Document-level split: the base corpus's documents are split at random into two halves; `size`
    reference rows come from one half, the current rows from the other (the first `round(shift * size)`
    replaced by other-corpus rows): same documentation set, different pages."""
    n_docs = int(documents.max()) + 1
    first_half = np.zeros(n_docs, dtype=bool)
    first_half[rng.permutation(n_docs)[: n_docs // 2]] = True
    ref_pool = np.flatnonzero(first_half[documents])
    cur_pool = np.flatnonzero(~first_half[documents])
    k = int(round(shift * size))
    if len(ref_pool) < size or len(cur_pool) < size - k:
        raise InputDataError(f"a half of the documents has fewer than {size} paragraphs: use smaller --sizes")
    ref = rng.choice(ref_pool, size=size, replace=False)
    cur = rng.choice(cur_pool, size=size - k, replace=False)
    other = rng.choice(other_n, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
    return ref, cur, other


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _settings(cfg: BenchConfig) -> list[tuple[str, float]]:
    """(null, shift) of every row: both no-drift nulls, and the shifts on document-level splits."""
    return [("paragraph", 0.0), ("document", 0.0), *(("document", s) for s in cfg.shifts)]


def run_bench(cfg: BenchConfig, settings: Settings) -> dict[str, Any]:
    from llmops.drift.coverage import coverage_test
    from llmops.drift.inputs import embedding_cache_root
    from llmops.drift.stats import available_cores, blas_threads, limit_blas_threads, two_sample_test

    cache = embedding_cache_root(settings.storage.data_root, cfg.embedding_model)
    t0 = time.perf_counter()
    base, documents = corpus_embeddings(cfg.base, cfg.embedding_model, cache)
    other, _ = corpus_embeddings(cfg.other, cfg.embedding_model, cache)
    embed_s = time.perf_counter() - t0
    need = 2 * max([*cfg.sizes, *cfg.timing_sizes])
    if len(base) < need:
        raise InputDataError(f"{cfg.base} has {len(base)} paragraphs; the benchmark needs {need}")
    threads = blas_threads()
    rows = []
    seconds = {"coverage": 0.0, "distribution": 0.0, "evidently": 0.0}

    def check(ref_i, cur_i, oth_i, seed: int) -> dict[str, bool | float]:
        ref = base[ref_i]
        cur = np.vstack([other[oth_i], base[cur_i]]) if len(oth_i) else base[cur_i]
        start = time.perf_counter()
        cov = coverage_test(ref, cur, documents[ref_i], quantile=cfg.quantile, resamples=cfg.resamples, seed=seed)
        seconds["coverage"] += time.perf_counter() - start
        out: dict[str, bool | float] = {
            "drift": cov.p_value <= cfg.alpha and cov.excess >= cfg.min_effect,
            "significant": cov.p_value <= cfg.alpha,
            "excess": cov.excess,
        }
        if cfg.distribution:
            start = time.perf_counter()
            r = two_sample_test(ref, cur, permutations=cfg.permutations, seed=seed, threads=threads)
            seconds["distribution"] += time.perf_counter() - start
            out["distribution"] = r.p_value <= cfg.alpha
        if cfg.evidently:
            start = time.perf_counter()
            out["evidently"] = evidently_drift(ref, cur)
            seconds["evidently"] += time.perf_counter() - start
        return out

    with limit_blas_threads(threads):
        for size in cfg.sizes:
            for null, shift in _settings(cfg):
                # The same seeded splits for every method: a fair comparison.
                rng = np.random.default_rng([cfg.seed, size, int(round(shift * 1000)), NULLS.index(null)])
                outcomes = []
                for s in range(cfg.splits):
                    if null == "paragraph":
                        split = _split(rng, len(base), len(other), size, shift)
                    else:
                        split = _document_split(rng, documents, len(other), size, shift)
                    outcomes.append(check(*split, seed=s))
                row: dict[str, Any] = {
                    "per_side": size,
                    "null": null,
                    "shift": shift,
                    "splits": cfg.splits,
                    "rate": float(np.mean([o["drift"] for o in outcomes])),
                    "rate_without_floor": float(np.mean([o["significant"] for o in outcomes])),
                    "mean_excess": float(np.mean([o["excess"] for o in outcomes])),
                }
                if cfg.distribution:
                    row["distribution_rate"] = float(np.mean([o["distribution"] for o in outcomes]))
                if cfg.evidently:
                    row["evidently_rate"] = float(np.mean([o["evidently"] for o in outcomes]))
                rows.append(row)
                log.info("size %d %s null, shift %.2f: %s", size, null, shift, row)
        timings = {}
        rng = np.random.default_rng([cfg.seed, 7])
        # The default thread count, and every core: the lead compares both on a quiet machine.
        thread_counts = sorted({threads, available_cores()})
        for size in cfg.timing_sizes:
            ref_i, cur_i, _ = _document_split(rng, documents, len(other), size, 0.0)
            ref, cur, docs = base[ref_i], base[cur_i], documents[ref_i]
            repeats = 3 if size <= 500 else 2
            entry: dict[str, Any] = {}
            for t in thread_counts:
                with limit_blas_threads(t):
                    entry[f"coverage_s_{t}_threads"] = _timed(
                        lambda ref=ref, cur=cur, docs=docs: coverage_test(
                            ref, cur, docs, quantile=cfg.quantile, resamples=cfg.resamples
                        ),
                        repeats,
                    )
                    if cfg.distribution:
                        entry[f"distribution_s_{t}_threads"] = _timed(
                            lambda ref=ref, cur=cur, t=t: two_sample_test(
                                ref, cur, permutations=cfg.permutations, threads=t
                            ),
                            repeats,
                        )
            entry["coverage_s"] = entry[f"coverage_s_{threads}_threads"]
            # What `llmops drift` runs on the embeddings: the verdict and the descriptive tests.
            entry["ours_s"] = entry["coverage_s"] + entry.get(f"distribution_s_{threads}_threads", 0.0)
            if cfg.evidently:
                entry["evidently_method_s"] = _timed(lambda ref=ref, cur=cur: evidently_drift(ref, cur), repeats)
            timings[str(size)] = entry

    def rate(size: int, null: str, shift: float, key: str = "rate") -> float | None:
        for row in rows:
            if row["per_side"] == size and row["null"] == null and abs(row["shift"] - shift) < 1e-9:
                return row.get(key)
        return None

    main_size = 300 if 300 in cfg.sizes else max(cfg.sizes)
    small = 100 if 100 in cfg.sizes else min(cfg.sizes)
    doc_rates = [r["rate"] for r in rows if r["null"] == "document" and r["shift"] == 0.0]
    out: dict[str, Any] = {
        "false_alarm_rate": rate(main_size, "document", 0.0),
        "false_alarm_rate_document_max": max(doc_rates) if doc_rates else None,
        "false_alarm_rate_document": {str(s): rate(s, "document", 0.0) for s in cfg.sizes},
        "false_alarm_rate_paragraph": {str(s): rate(s, "paragraph", 0.0) for s in cfg.sizes},
        "power": rate(main_size, "document", 0.3),
        "power_100_per_side": rate(small, "document", 0.3),
        "power_10pct_shift": rate(main_size, "document", 0.1),
        "power_10pct_shift_100_per_side": rate(small, "document", 0.1),
        "seconds_2000_vs_2000": timings.get("2000", {}).get("ours_s"),
        "seconds_300_vs_300": timings.get("300", {}).get("ours_s"),
        "distribution_false_alarm_rate_document": rate(main_size, "document", 0.0, "distribution_rate"),
        "distribution_false_alarm_rate_paragraph": rate(main_size, "paragraph", 0.0, "distribution_rate"),
        "evidently_false_alarm_rate_document": rate(main_size, "document", 0.0, "evidently_rate"),
        "evidently_false_alarm_rate_paragraph": rate(main_size, "paragraph", 0.0, "evidently_rate"),
        "evidently_power": rate(main_size, "document", 0.3, "evidently_rate"),
        "evidently_power_100_per_side": rate(small, "document", 0.3, "evidently_rate"),
        "evidently_power_10pct_shift": rate(main_size, "document", 0.1, "evidently_rate"),
        "main_per_side": main_size,
        "results": rows,
        "timings": timings,
        "alpha": cfg.alpha,
        "min_effect": cfg.min_effect,
        "quantile": cfg.quantile,
        "resamples": cfg.resamples,
        "permutations": cfg.permutations,
        "splits": cfg.splits,
        "blas_threads": threads,
        "embedding_model": cfg.embedding_model,
        "corpora": {
            cfg.base: {"paragraphs": len(base), "documents": int(documents.max()) + 1,
                       "folder": str(Path(cfg.base))},
            cfg.other: {"paragraphs": len(other), "folder": str(Path(cfg.other))},
        },
        "seconds": {
            "embeddings_load_or_compute": embed_s,
            "coverage_all_splits": seconds["coverage"],
            "distribution_all_splits": seconds["distribution"] if cfg.distribution else None,
            "evidently_all_splits": seconds["evidently"] if cfg.evidently else None,
        },
        "evidently_method": "EmbeddingsDriftMetric default: model(bootstrap=n_reference < 1000), method call only "
        "(no t-SNE plot)" if cfg.evidently else None,
        "anchor": ANCHOR,
        "targets": TARGETS,
    }
    out["checks"] = {
        "false_alarm_rate_document": _le(out["false_alarm_rate_document_max"], TARGETS["false_alarm_rate_max"]),
        "power_30pct_300": _ge(rate(300, "document", 0.3), TARGETS["power_30pct_300_min"]),
        "power_30pct_100": _ge(rate(100, "document", 0.3), TARGETS["power_30pct_100_min"]),
        "seconds_2000": _le(out["seconds_2000_vs_2000"], TARGETS["seconds_2000_max"]),
    }
    return out


def _le(value: float | None, bound: float) -> bool | None:
    return None if value is None else value <= bound


def _ge(value: float | None, bound: float) -> bool | None:
    return None if value is None else value >= bound


def text_summary(result: dict[str, Any]) -> str:
    """A human-readable table of the benchmark (printed before the JSON unless --json)."""
    lines = [
        f"drift benchmark: {result['splits']} splits per setting, alpha {result['alpha']}, coverage quantile "
        f"{result['quantile']}, effect floor {result['min_effect']}, {result['resamples']} document splits per "
        f"null, {result['blas_threads']} BLAS threads",
        f"{'per side':>8} {'null':>9} {'shift':>6} {'ours':>6} {'no floor':>8} {'excess':>7} {'mmd+clf':>8} "
        f"{'evidently':>10}",
    ]
    for row in result["results"]:
        ev = row.get("evidently_rate")
        dist = row.get("distribution_rate")
        lines.append(
            f"{row['per_side']:>8} {row['null']:>9} {row['shift']:>6.0%} {row['rate']:>6.2f} "
            f"{row['rate_without_floor']:>8.2f} {row['mean_excess']:>7.3f} "
            f"{'' if dist is None else f'{dist:.2f}':>8} {'' if ev is None else f'{ev:.2f}':>10}"
        )
    for size, t in result["timings"].items():
        ev = t.get("evidently_method_s")
        lines.append(
            f"seconds at {size} per side: ours {t['ours_s']:.2f} (coverage {t['coverage_s']:.2f})"
            + ("" if ev is None else f", evidently {ev:.2f}")
        )
    lines.append("checks: " + ", ".join(
        f"{k}={'ok' if v else ('n/a' if v is None else 'FAIL')}" for k, v in result["checks"].items()
    ))
    return "\n".join(lines)
