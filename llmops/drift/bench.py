"""`llmops bench drift`: calibration, power and speed of the drift test on real corpora.

Units are paragraphs of the Kubernetes documentation (`../shared/corpus/k8s-docs`): every document is
split into paragraphs (front matter, code blocks, shortcodes and tables removed), all paragraphs are
embedded once with the embedding model and cached under `<data_root>/cache/embeddings/`, keyed by a hash
of the model name and the texts, so later runs skip the embedding.

- false-alarm rate: both sides are disjoint random samples of k8s paragraphs (no drift by construction);
  the share of splits flagged as drift must stay near alpha;
- power: the current side mixes in a share (10%, 30%) of paragraphs from another corpus
  (`hf-hub-docs`), the share of splits flagged is the power;
- speed: seconds per test (both tests, all permutations) at 300 and 2,000 embeddings per side;
- the same splits through Evidently's default embedding drift method (`EmbeddingsDriftMetric` without a
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


def corpus_root() -> Path:
    """`../shared/corpus` next to the checkout (or next to the folder holding a git worktree of it);
    `LLMOPS_CORPUS_DIR` overrides."""
    import os

    from llmops.settings import PROJECT_ROOT

    if os.environ.get("LLMOPS_CORPUS_DIR"):
        return Path(os.environ["LLMOPS_CORPUS_DIR"])
    candidates = [PROJECT_ROOT.parent / "shared" / "corpus", PROJECT_ROOT.parent.parent / "shared" / "corpus"]
    return next((c for c in candidates if c.is_dir()), candidates[0])


def corpus_dir(name: str) -> Path:
    """One corpus folder under the shared corpus root."""
    return corpus_root() / name


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
    seen: set[str] = set()
    out: list[str] = []
    for path in sorted(Path(folder).rglob("*.md")):
        for para in markdown_paragraphs(path.read_text(encoding="utf-8", errors="replace")):
            if para not in seen:
                seen.add(para)
                out.append(para)
    return out


def corpus_embeddings(name: str, model_name: str, cache_root: str) -> np.ndarray:
    folder = corpus_dir(name)
    paragraphs = corpus_paragraphs(folder)
    if not paragraphs:
        raise InputDataError(f"no paragraphs found under {folder}: the benchmark needs ../shared/corpus/{name}")
    from llmops.drift.inputs import cached_embeddings

    return cached_embeddings(paragraphs, model_name, cache_root)


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
    "power_10pct_300_min": 0.4,
    "seconds_2000_max": 5.0,
}
MIN_SPLITS = 50


@dataclass(frozen=True)
class BenchConfig:
    splits: int = 50
    sizes: tuple[int, ...] = (100, 300)
    shifts: tuple[float, ...] = (0.1, 0.3)
    timing_sizes: tuple[int, ...] = (300, 2000)
    alpha: float = 0.05
    permutations: int = 500
    evidently: bool = True
    base: str = "k8s-docs"
    other: str = "hf-hub-docs"
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
            permutations=args.permutations,
            evidently=not args.no_evidently,
            base=args.base,
            other=args.other,
            embedding_model=args.embedding_model or settings.embedding_model,
        )
        if cfg.splits < MIN_SPLITS:
            raise ConfigError(f"--splits = {cfg.splits}: the false-alarm rate needs at least {MIN_SPLITS} splits")
        if not cfg.sizes or min(cfg.sizes) < 10:
            raise ConfigError(f"--sizes = {args.sizes}: give per-side sizes of at least 10")
        if any(not 0 < s < 1 for s in cfg.shifts):
            raise ConfigError(f"--shifts = {args.shifts}: shares must lie between 0 and 1")
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
    """Indices of one split: `size` reference and `size` current base rows (disjoint), of which the first
    `round(shift * size)` current rows are replaced by other-corpus rows."""
    idx = rng.choice(base_n, size=2 * size, replace=False)
    k = int(round(shift * size))
    other = rng.choice(other_n, size=k, replace=False) if k else np.empty(0, dtype=np.int64)
    return idx[:size], idx[size + k:], other


def _timed(fn, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def run_bench(cfg: BenchConfig, settings: Settings) -> dict[str, Any]:
    from llmops.drift.inputs import embedding_cache_root
    from llmops.drift.stats import available_cores, blas_threads, limit_blas_threads, two_sample_test

    cache = embedding_cache_root(settings.data_root, cfg.embedding_model)
    t0 = time.perf_counter()
    base = corpus_embeddings(cfg.base, cfg.embedding_model, cache)
    other = corpus_embeddings(cfg.other, cfg.embedding_model, cache)
    embed_s = time.perf_counter() - t0
    need = 2 * max([*cfg.sizes, *cfg.timing_sizes])
    if len(base) < need:
        raise InputDataError(f"{cfg.base} has {len(base)} paragraphs; the benchmark needs {need}")
    threads = blas_threads()
    settings_list = [0.0, *cfg.shifts]
    rows = []
    ours_s = 0.0
    ev_s = 0.0
    with limit_blas_threads(threads):
        for size in cfg.sizes:
            for shift in settings_list:
                # The same seeded splits for every method: a fair comparison.
                rng = np.random.default_rng([cfg.seed, size, int(round(shift * 1000))])
                hits = {"combined": 0, "mmd": 0, "classifier": 0, "evidently": 0}
                for s in range(cfg.splits):
                    ref_i, cur_i, oth_i = _split(rng, len(base), len(other), size, shift)
                    ref = base[ref_i]
                    cur = np.vstack([other[oth_i], base[cur_i]]) if len(oth_i) else base[cur_i]
                    start = time.perf_counter()
                    r = two_sample_test(ref, cur, permutations=cfg.permutations, seed=s, threads=threads)
                    ours_s += time.perf_counter() - start
                    hits["combined"] += r.p_value <= cfg.alpha
                    hits["mmd"] += r.p_value_mmd <= cfg.alpha
                    hits["classifier"] += r.p_value_classifier <= cfg.alpha
                    if cfg.evidently:
                        start = time.perf_counter()
                        hits["evidently"] += evidently_drift(ref, cur)
                        ev_s += time.perf_counter() - start
                row = {
                    "per_side": size,
                    "shift": shift,
                    "splits": cfg.splits,
                    "rate": hits["combined"] / cfg.splits,
                    "rate_mmd_alone": hits["mmd"] / cfg.splits,
                    "rate_classifier_alone": hits["classifier"] / cfg.splits,
                }
                if cfg.evidently:
                    row["evidently_rate"] = hits["evidently"] / cfg.splits
                rows.append(row)
                log.info("size %d shift %.2f: %s", size, shift, row)
        timings = {}
        rng = np.random.default_rng([cfg.seed, 7])
        # The default thread count, and every core: the lead compares both on a quiet machine.
        thread_counts = sorted({threads, available_cores()})
        for size in cfg.timing_sizes:
            idx = rng.choice(len(base), size=2 * size, replace=False)
            ref, cur = base[idx[:size]], base[idx[size:]]
            repeats = 3 if size <= 500 else 2
            entry: dict[str, Any] = {}
            for t in thread_counts:
                with limit_blas_threads(t):
                    entry[f"ours_s_{t}_threads"] = _timed(
                        lambda ref=ref, cur=cur, t=t: two_sample_test(
                            ref, cur, permutations=cfg.permutations, threads=t
                        ),
                        repeats,
                    )
            entry["ours_s"] = entry[f"ours_s_{threads}_threads"]
            if cfg.evidently:
                entry["evidently_method_s"] = _timed(lambda ref=ref, cur=cur: evidently_drift(ref, cur), repeats)
            timings[str(size)] = entry

    def rate(size: int, shift: float, key: str = "rate") -> float | None:
        for row in rows:
            if row["per_side"] == size and abs(row["shift"] - shift) < 1e-9:
                return row.get(key)
        return None

    main_size = 300 if 300 in cfg.sizes else max(cfg.sizes)
    out: dict[str, Any] = {
        "false_alarm_rate": rate(main_size, 0.0),
        "power": rate(main_size, 0.3),
        "power_100_per_side": rate(100, 0.3),
        "power_10pct_shift": rate(main_size, 0.1),
        "seconds_2000_vs_2000": timings.get("2000", {}).get("ours_s"),
        "seconds_300_vs_300": timings.get("300", {}).get("ours_s"),
        "evidently_false_alarm_rate": rate(main_size, 0.0, "evidently_rate") if cfg.evidently else None,
        "evidently_power": rate(main_size, 0.3, "evidently_rate") if cfg.evidently else None,
        "evidently_power_100_per_side": rate(100, 0.3, "evidently_rate") if cfg.evidently else None,
        "evidently_power_10pct_shift": rate(main_size, 0.1, "evidently_rate") if cfg.evidently else None,
        "main_per_side": main_size,
        "results": rows,
        "timings": timings,
        "alpha": cfg.alpha,
        "permutations": cfg.permutations,
        "splits": cfg.splits,
        "blas_threads": threads,
        "embedding_model": cfg.embedding_model,
        "corpora": {
            cfg.base: {"paragraphs": len(base), "folder": str(corpus_dir(cfg.base))},
            cfg.other: {"paragraphs": len(other), "folder": str(corpus_dir(cfg.other))},
        },
        "seconds": {
            "embeddings_load_or_compute": embed_s,
            "ours_all_splits": ours_s,
            "evidently_all_splits": ev_s if cfg.evidently else None,
        },
        "evidently_method": "EmbeddingsDriftMetric default: model(bootstrap=n_reference < 1000), method call only "
        "(no t-SNE plot)" if cfg.evidently else None,
        "anchor": ANCHOR,
        "targets": TARGETS,
    }
    out["checks"] = {
        "false_alarm_rate": _le(out["false_alarm_rate"], TARGETS["false_alarm_rate_max"]),
        "power_30pct_300": _ge(out["power"], TARGETS["power_30pct_300_min"]),
        "power_30pct_100": _ge(out["power_100_per_side"], TARGETS["power_30pct_100_min"]),
        "power_10pct_300": _ge(out["power_10pct_shift"], TARGETS["power_10pct_300_min"]),
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
        f"drift benchmark: {result['splits']} splits per setting, alpha {result['alpha']}, "
        f"{result['permutations']} permutations, {result['blas_threads']} BLAS threads",
        f"{'per side':>8} {'shift':>6} {'ours':>6} {'mmd':>6} {'clf':>6} {'evidently':>10}",
    ]
    for row in result["results"]:
        ev = row.get("evidently_rate")
        lines.append(
            f"{row['per_side']:>8} {row['shift']:>6.0%} {row['rate']:>6.2f} {row['rate_mmd_alone']:>6.2f} "
            f"{row['rate_classifier_alone']:>6.2f} {'' if ev is None else f'{ev:.2f}':>10}"
        )
    for size, t in result["timings"].items():
        ev = t.get("evidently_method_s")
        lines.append(f"seconds at {size} per side: ours {t['ours_s']:.2f}" + ("" if ev is None else f", evidently {ev:.2f}"))
    lines.append("checks: " + ", ".join(f"{k}={'ok' if v else ('n/a' if v is None else 'FAIL')}" for k, v in result["checks"].items()))
    return "\n".join(lines)
