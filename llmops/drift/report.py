"""The drift report: `report.json`, a self-contained `report.html` with plots, and its MLflow run.

Reports of one monitor live side by side in one reports folder (`<reports>/<run stamp>/report.json`), so
the HTML page plots the score history across the earlier reports of the same folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
import logging
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops import storage

if TYPE_CHECKING:
    import numpy as np

    from llmops.settings import Settings

log = logging.getLogger(__name__)

REPORT_JSON = "report.json"
REPORT_HTML = "report.html"
HISTORY_LIMIT = 200
PLOT_POINTS = 1500


def parent_uri(uri: str) -> str:
    return uri.rstrip("/").rsplit("/", 1)[0]


def earlier_reports(report_uri: str) -> list[dict[str, Any]]:
    """report.json of the sibling folders of `report_uri` (same reports folder), oldest first."""
    parent = parent_uri(report_uri)
    own = storage.join(report_uri, REPORT_JSON)
    if storage.is_s3(parent):
        uris = [
            f.uri for f in storage.list_files(parent)
            if f.uri.endswith("/" + REPORT_JSON) and f.uri[len(parent) + 1:].count("/") == 1
        ]
    else:
        # Only one level down: the parent of a report folder could be a large directory.
        root = storage.local_path(parent)
        uris = [str(p) for p in sorted(root.glob(f"*/{REPORT_JSON}"))] if root.is_dir() else []
    out = []
    for uri in uris:
        if _same(uri, own):
            continue
        try:
            report = json.loads(storage.read_text(uri))
        except (ValueError, FileNotFoundError):
            continue
        if isinstance(report, dict) and report.get("created_at"):
            out.append(report)
    out.sort(key=lambda r: str(r["created_at"]))
    return out[-HISTORY_LIMIT:]


def _same(a: str, b: str) -> bool:
    if storage.is_s3(a) or storage.is_s3(b):
        return a.rstrip("/") == b.rstrip("/")
    return storage.local_path(a).resolve() == storage.local_path(b).resolve()


# --- plots ---------------------------------------------------------------------------------------------


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=96, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def pca_2d(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray, list[float]]:
    """Both sides projected on the first two principal components of the pooled sample, and the share
    of variance each component explains."""
    import numpy as np

    z = np.vstack([reference, current]).astype(np.float64)
    z -= z.mean(axis=0)
    _, s, vt = np.linalg.svd(z, full_matrices=False)
    proj = z @ vt[:2].T
    var = (s**2) / max(float((s**2).sum()), 1e-30)
    return proj[: len(reference)], proj[len(reference):], [float(v) for v in var[:2]]


def projection_plot(reference: np.ndarray, current: np.ndarray, seed: int = 0) -> str:
    import numpy as np
    from matplotlib.figure import Figure

    ref2, cur2, var = pca_2d(reference, current)
    rng = np.random.default_rng(seed)
    if len(ref2) > PLOT_POINTS:
        ref2 = ref2[rng.choice(len(ref2), PLOT_POINTS, replace=False)]
    if len(cur2) > PLOT_POINTS:
        cur2 = cur2[rng.choice(len(cur2), PLOT_POINTS, replace=False)]
    fig = Figure(figsize=(6.4, 5.0))
    ax = fig.add_subplot()
    ax.scatter(ref2[:, 0], ref2[:, 1], s=8, alpha=0.45, label=f"reference (n={len(reference)})", color="#1f77b4")
    ax.scatter(cur2[:, 0], cur2[:, 1], s=8, alpha=0.45, label=f"current (n={len(current)})", color="#d62728")
    ax.set_xlabel(f"PC 1 ({var[0]:.0%} of variance)")
    ax.set_ylabel(f"PC 2 ({var[1]:.0%} of variance)" if len(var) > 1 else "PC 2")
    ax.set_title("Embeddings, 2-D PCA projection of both samples")
    ax.legend(loc="best")
    return _png(fig)


def history_plot(history: list[dict[str, Any]], alpha: float) -> str | None:
    """p-values (log scale) and the uncovered share / classifier AUC of every report in the folder, this
    one last. Reports before version 2 carry the distribution tests' combined p-value as `p_value`."""
    from datetime import datetime

    from matplotlib.figure import Figure

    rows = [r for r in history if r.get("created_at")]
    if not rows:
        return None
    times = [datetime.fromisoformat(str(r["created_at"])) for r in rows]
    fig = Figure(figsize=(8.0, 5.2))
    ax, ax2 = fig.subplots(2, 1, sharex=True)
    floor = 1e-4
    for key, label, style in (
        ("p_value", "coverage (verdict)", "-o"),
        ("p_value_mmd", "MMD", "--."),
        ("p_value_classifier", "classifier", ":."),
    ):
        pts = [(t, max(float(r[key]), floor)) for t, r in zip(times, rows, strict=True) if r.get(key) is not None]
        if pts:
            ax.plot([p[0] for p in pts], [p[1] for p in pts], style, label=label, markersize=4)
    ax.axhline(alpha, color="grey", linewidth=1, label=f"alpha = {alpha:g}")
    drift_t = [t for t, r in zip(times, rows, strict=True) if r.get("drift")]
    if drift_t:
        ax.scatter(drift_t, [floor * 1.5] * len(drift_t), marker="^", color="#d62728", label="drift", zorder=3)
    thin_t = [t for t, r in zip(times, rows, strict=True) if r.get("status") == "not_enough_data"]
    if thin_t:
        ax.scatter(thin_t, [floor * 1.5] * len(thin_t), marker="x", color="grey", label="not enough data")
    ax.set_yscale("log")
    ax.set_ylim(floor, 1.1)
    ax.set_ylabel("p-value")
    ax.legend(loc="lower left", fontsize="small", ncol=3)
    ax.set_title("Score history of this reports folder")
    for key, label, color in (
        ("uncovered_share", "uncovered share", "#d62728"),
        ("partial_auc", "partial AUC", "#9467bd"),
        ("auc", "AUC", "#8c564b"),
    ):
        pts = [(t, float(r[key])) for t, r in zip(times, rows, strict=True) if r.get(key) is not None]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], "-o", markersize=4, color=color, label=label)
    ax2.axhline(0.5, color="grey", linewidth=1)
    ax2.set_ylabel("effect / classifier")
    if ax2.get_legend_handles_labels()[0]:
        ax2.legend(loc="upper left", fontsize="small")
    fig.autofmt_xdate()
    return _png(fig)


# --- HTML ------------------------------------------------------------------------------------------------


def _fmt(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _table(rows: list[tuple[str, Any]]) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{_fmt(v)}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def render_html(report: dict[str, Any], projection_png: str | None, history_png: str | None) -> str:
    status = report["status"]
    banner = {
        "drift": ("#fde2e1", "Drift detected"),
        "no_drift": ("#e3f6e3", "No significant drift"),
        "not_enough_data": ("#eeeeee", "Not enough data for a verdict"),
    }[status]
    ref, cur = report["reference"], report["current"]
    cov = report.get("coverage") or {}
    verdict = _table([
        ("uncovered share of the traffic (effect)", report.get("uncovered_share")),
        ("expected share (the reference's own documents)", report.get("expected_share")),
        ("excess uncovered share", report.get("excess")),
        ("effect-size floor (min_effect)", report.get("min_effect")),
        ("coverage p-value (document bootstrap)", report.get("p_value")),
        ("alpha", report["alpha"]),
        ("coverage threshold (cosine distance)", cov.get("threshold")),
        ("coverage quantile", report.get("quantile")),
        ("reference documents", cov.get("reference_documents")),
        ("bootstrap draws", report.get("resamples")),
        ("reference / current samples", f"{report['n_reference']} / {report['n_current']}"),
        ("minimum samples per side", report["min_samples"]),
    ])
    distribution = _table([
        ("combined p-value (min-P)", report.get("p_value_distribution")),
        ("MMD p-value", report.get("p_value_mmd")),
        ("classifier p-value", report.get("p_value_classifier")),
        ("MMD² (biased, RBF)", report.get("mmd2")),
        ("classifier partial AUC, FPR ≤ 0.1 (test statistic)", report.get("partial_auc")),
        ("classifier AUC (out-of-fold, descriptive)", report.get("auc")),
        ("kernel bandwidth", report.get("bandwidth")),
        ("permutations", report["permutations"]),
        ("seed", report["seed"]),
    ])
    groups_html = _groups_html(report)
    inputs = _table([
        ("reference", ref["uri"]),
        ("reference kind", ref["kind"]),
        ("reference snapshot", ref.get("snapshot_id")),
        ("current", cur["uri"]),
        ("current records read / in window / skipped", f"{cur['records']} / {cur['sampled_from']} / {cur['skipped']}"),
        ("window", f"{report['window_hours']} h until {report.get('until') or 'the newest record'}"
         if report["window_hours"] else "all records"),
        ("text compared", report["field"]),
        ("embedding model", report["embedding_model"]),
        ("created at", report["created_at"]),
        ("MLflow run", report.get("mlflow_run_id")),
    ])
    sig = report.get("signals") or {}
    sig_rows: list[tuple[str, Any]] = []
    if sig:
        lw = sig["length_words"]
        sig_rows += [
            ("prompt length, words (mean ref / cur)", f"{lw['reference']['mean']:.1f} / {lw['current']['mean']:.1f}"),
            ("prompt length, words (p95 ref / cur)", f"{lw['reference']['p95']:.0f} / {lw['current']['p95']:.0f}"),
            ("length KS statistic (p)", f"{lw['ks_statistic']:.3f} ({lw['ks_p_value']:.3g})"),
            ("unknown-token share ref / cur", f"{sig['unknown_token_share']['reference']:.2%} / "
             f"{sig['unknown_token_share']['current']:.2%}"),
            ("words not in the reference vocabulary", f"{sig['oov_rate']['current_vs_reference']:.1%} "
             f"(reference half vs other half: {sig['oov_rate']['reference_half_vs_other_half']:.1%})"),
        ]

    def img(b64: str | None, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{b64}">' if b64 else ""

    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Drift report {_fmt(report['created_at'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; max-width: 1000px; color: #222; }}
.banner {{ background: {banner[0]}; padding: .8em 1.2em; border-radius: 6px; font-size: 1.3em; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ text-align: left; padding: .25em 1em .25em 0; border-bottom: 1px solid #eee; vertical-align: top; }}
th {{ font-weight: 600; }} img {{ max-width: 100%; }} .note {{ color: #555; font-size: .9em; }}
</style></head><body>
<h1>Drift report</h1>
<div class="banner">{banner[1]}</div>
<h2>Verdict</h2>
{verdict}
<p class="note">A current sample is <em>uncovered</em> when it is farther from every reference sample than
the coverage threshold: the {_fmt(report.get("quantile"))} quantile of the reference's own nearest-neighbour
distances with each sample's whole document left out. The p-value compares the uncovered share with
{report.get("resamples")} draws that resample reference <em>documents</em> on both sides, so the variation
between pages of the training data is not drift. The verdict is drift when p &le; alpha and the excess
uncovered share is at least the floor.</p>
{"<p><strong>" + html.escape(report["reason"]) + "</strong></p>" if report.get("reason") else ""}
{groups_html}
<h2>Distribution tests (descriptive, not part of the verdict)</h2>
{distribution}
<p class="note">MMD and a domain classifier on the same {report['permutations']} relabellings: they answer
"same distribution?", which traffic about a subset of the training topics already fails.</p>
<h2>Inputs</h2>
{inputs}
{"<h2>Side signals (not part of the verdict)</h2>" + _table(sig_rows) if sig_rows else ""}
{"<h2>Reference vs current</h2>" + img(projection_png, "PCA projection") if projection_png else ""}
{"<h2>History</h2>" + img(history_png, "score history") if history_png else ""}
</body></html>
"""


def _groups_html(report: dict[str, Any]) -> str:
    groups = report.get("groups") or []
    if not groups:
        return ""
    parts = ["<h2>Uncovered traffic, grouped (largest first)</h2>"]
    index = report.get("index") or {}
    if index.get("error"):
        parts.append(f'<p class="note">No corpus chunks: {html.escape(str(index["error"]))}</p>')
    if report.get("steer_uri"):
        parts.append(f'<p>Steer file for the next dataset build: <code>{html.escape(report["steer_uri"])}</code> '
                     f'(event {html.escape(str(report.get("drift_event")))})</p>')
    for g in groups:
        examples = "".join(f"<li>{html.escape(t)}</li>" for t in g["examples"])
        chunks = "".join(
            f"<li><code>{html.escape(str(c['chunk_id']))}</code> {html.escape(str(c.get('doc')))} "
            f"(score {c['score']:.3f}): {html.escape(c.get('text', '')[:160])}</li>"
            for c in g.get("nearest_chunks") or []
        )
        parts.append(
            f"<h3>Group {g['group'] + 1}: {g['size']} samples ({g['share']:.1%} of the traffic), mean distance "
            f"{g['mean_distance']:.3f}</h3><p>Examples:</p><ul>{examples}</ul>"
            + (f"<p>Nearest corpus chunks:</p><ul>{chunks}</ul>" if chunks else "")
        )
    return "\n".join(parts)


# --- writing and MLflow -------------------------------------------------------------------------------


def write_report(
    report: dict[str, Any],
    report_uri: str,
    reference_emb: np.ndarray | None,
    current_emb: np.ndarray | None,
    local_dir: Path,
) -> None:
    """Write report.json and report.html to `local_dir` (for MLflow) and to `report_uri`."""
    history = [*earlier_reports(report_uri), report]
    projection = None
    if reference_emb is not None and current_emb is not None and len(reference_emb) and len(current_emb):
        projection = projection_plot(reference_emb, current_emb, seed=int(report["seed"]))
    page = render_html(report, projection, history_plot(history, float(report["alpha"])))
    body = json.dumps(report, indent=2, sort_keys=True, default=str) + "\n"
    (local_dir / REPORT_JSON).write_text(body)
    (local_dir / REPORT_HTML).write_text(page)
    storage.write_text(storage.join(report_uri, REPORT_JSON), body)
    storage.write_text(storage.join(report_uri, REPORT_HTML), page)


def mlflow_client(settings: Settings):
    """An MLflow client on the configured tracking URI and the id of the configured experiment (created,
    with its artifact root at `mlflow_artifacts`, when missing: `llmops.registry.experiment_id`)."""
    from mlflow.tracking import MlflowClient

    from llmops.registry import experiment_id

    uri = settings.mlflow_tracking
    if uri.startswith("sqlite:///"):
        Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
    client = MlflowClient(tracking_uri=uri)
    return client, experiment_id(client, settings)


def start_mlflow_run(settings: Settings, run_name: str, tags: dict[str, str]) -> tuple[Any, str]:
    client, experiment_id = mlflow_client(settings)
    run = client.create_run(experiment_id, run_name=run_name, tags=tags)
    return client, run.info.run_id


def finish_mlflow_run(client, run_id: str, report: dict[str, Any], local_dir: Path) -> None:
    """Log the report's numbers, parameters and files to the run and close it."""
    from datetime import datetime

    from mlflow.entities import Metric, Param, RunTag

    # One point per metric, stamped with the report's time (not the wall clock) so a rerun is identical.
    now_ms = int(datetime.fromisoformat(str(report["created_at"])).timestamp() * 1000)
    metrics = {
        "p_value": report.get("p_value"),
        "uncovered_share": report.get("uncovered_share"),
        "expected_share": report.get("expected_share"),
        "excess": report.get("excess"),
        "p_value_distribution": report.get("p_value_distribution"),
        "p_value_mmd": report.get("p_value_mmd"),
        "p_value_classifier": report.get("p_value_classifier"),
        "mmd2": report.get("mmd2"),
        "auc": report.get("auc"),
        "partial_auc": report.get("partial_auc"),
        "n_reference": report["n_reference"],
        "n_current": report["n_current"],
        "drift": 1.0 if report["drift"] else 0.0,
    }
    sig = report.get("signals") or {}
    if sig:
        metrics["length_ks_statistic"] = sig["length_words"]["ks_statistic"]
        metrics["unknown_token_share_current"] = sig["unknown_token_share"]["current"]
        metrics["oov_rate_current"] = sig["oov_rate"]["current_vs_reference"]
    params = {
        "reference_uri": report["reference"]["uri"],
        "current_uri": report["current"]["uri"],
        "alpha": report["alpha"],
        "min_samples": report["min_samples"],
        "permutations": report["permutations"],
        "resamples": report.get("resamples"),
        "quantile": report.get("quantile"),
        "min_effect": report.get("min_effect"),
        "seed": report["seed"],
        "window_hours": report["window_hours"],
        "field": report["field"],
        "embedding_model": report["embedding_model"],
        "report_uri": report["report_uri"],
    }
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now_ms, 0) for k, v in metrics.items() if v is not None],
        params=[Param(k, str(v)[:6000]) for k, v in params.items()],
        tags=[RunTag("llmops.drift.status", report["status"])],
    )
    client.log_artifacts(run_id, str(local_dir), artifact_path="drift")
    client.set_terminated(run_id)


def fail_mlflow_run(client, run_id: str) -> None:
    try:
        client.set_terminated(run_id, status="FAILED")
    except Exception:  # best effort: the original error is what matters
        log.warning("could not mark MLflow run %s as failed", run_id)


def local_workdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="llmops-drift-")
