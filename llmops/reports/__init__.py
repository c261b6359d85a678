"""HTML pages of the pipeline's reports, as the Airflow plugin serves them (no Airflow import here).

- `gate_page`: the gate report (`gate.json` of `llmops gate`): verdict, reasons, one row per metric with
  its confidence interval and p-values, the `new`/`retained` slices as rows of their own;
- `drift_page`: the drift report's own self-contained `report.html` (plots inlined as PNG);
- `loss_page`: the training loss curve from the step log (`<output_dir>/steps.jsonl`), as inline SVG;
- `lineage_page` (in `llmops.reports.lineage`): one model version, from corpus snapshot to drift events.

Every location is checked by `check_allowed` first: only URIs under the configured storage roots
(`data_root` and the locations derived from or set beside it, local or `s3://`) are read.
"""

from __future__ import annotations

import html
import json
import os
from typing import Any

from llmops import storage
from llmops.exceptions import PathNotAllowed, StorageError
from llmops.settings import Settings

STEP_LOG = "steps.jsonl"
"""The trainer's step log in its output folder (`llmops.training.trainer.STEP_LOG`; not imported: torch)."""

STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#1b1b1b}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;text-align:left}
th{background:#f3f3f3}.pass{color:#0a7a2f}.fail{color:#b00020}.muted{color:#666}
code{background:#f6f6f6;padding:0 .2em}ol.lineage>li{margin:.6em 0}
"""


def page(title: str, body: str) -> str:
    """A complete HTML document."""
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{STYLE}</style></head><body>\n{body}\n</body></html>\n"
    )


# --- which locations may be read ----------------------------------------------------------------------


def allowed_roots(settings: Settings) -> list[str]:
    """The storage roots report pages may read from: the data root and every location configured
    beside it (runs, datasets, state, manifests, processed output, traffic, drift reports, MLflow
    artifacts)."""
    from llmops.drift.monitor import reports_root

    roots = [
        settings.storage.data_root, settings.runs, settings.state, settings.manifests, settings.processed,
        settings.dataset_root, settings.traffic, reports_root(settings), settings.mlflow_artifacts,
    ]
    out: list[str] = []
    for root in roots:
        norm = _normalize(root)
        if norm and norm not in out:
            out.append(norm)
    return out


def _normalize(uri: str) -> str:
    if storage.is_s3(uri):
        return uri.rstrip("/")
    if uri.startswith("file://"):
        uri = uri[len("file://"):]
    return os.path.realpath(os.path.expanduser(uri))


def check_allowed(uri: str, settings: Settings) -> str:
    """`uri` normalized (symlinks and `..` resolved for local paths) when it lies under one of
    `allowed_roots`, else `PathNotAllowed` naming it and the roots."""
    if not uri or "\x00" in uri:
        raise PathNotAllowed(f"report location {uri!r} is empty or malformed")
    scheme = storage.scheme(uri)
    if scheme not in ("", "file", "s3"):
        raise PathNotAllowed(f"report location {uri!r}: scheme {scheme!r} is not served (local paths and s3:// only)")
    if scheme == "s3" and any(part in ("..", ".") for part in uri[len("s3://"):].split("/")):
        raise PathNotAllowed(f"report location {uri!r}: '..' or '.' segments are not allowed in s3:// keys")
    target = _normalize(uri)
    roots = allowed_roots(settings)
    for root in roots:
        if storage.is_s3(root) != storage.is_s3(target):
            continue
        if target == root or target.startswith(root.rstrip("/") + "/"):
            return target
    raise PathNotAllowed(
        f"report location {uri!r} is outside the configured storage roots ({', '.join(roots)}): "
        "only reports under data_root and the locations configured beside it are served"
    )


def read_allowed(uri: str, settings: Settings) -> bytes:
    """The bytes at `uri` after `check_allowed`; `FileNotFoundError` when it does not exist."""
    target = check_allowed(uri, settings)
    try:
        return storage.read_bytes(target)
    except StorageError as exc:
        if "NoSuchKey" in str(exc) or "404" in str(exc) or "not found" in str(exc).lower():
            raise FileNotFoundError(target) from exc
        raise


# --- gate report --------------------------------------------------------------------------------------


def _num(x: Any, fmt: str = ".3f") -> str:
    return "–" if x is None else format(float(x), fmt)


def _p(x: Any) -> str:
    if x is None:
        return "–"
    return "&lt;0.0001" if float(x) < 1e-4 else f"{float(x):.4f}"


def _links(links: dict[str, str] | None) -> str:
    if not links:
        return ""
    items = "".join(
        f'<li><a href="{html.escape(url, quote=True)}">{html.escape(name)}</a></li>' for name, url in links.items() if url
    )
    return f"<h2>Links</h2><ul>{items}</ul>"


def gate_page(report: dict[str, Any], links: dict[str, str] | None = None, source: str | None = None) -> str:
    """The gate report as an HTML page: verdict, reasons, metrics with CI and p-values (raw and Holm),
    per slice; `links` ({name: URL}) are listed below."""
    if "passed" not in report or "metrics" not in report:
        raise StorageError(f"{source or 'the document'} is not a gate report (no `passed`/`metrics` fields)")
    passed = bool(report["passed"])
    verdict = '<span class="pass">PROMOTE</span>' if passed else '<span class="fail">REJECT</span>'
    cand = report.get("candidate") or {}
    base = report.get("baseline")
    rows = []
    for m in report["metrics"]:
        label = f"{m['task']}/{m['metric']}"
        if m.get("difference") is None:
            diff = "–"
        else:
            diff = (
                f"{float(m['difference']):+.3f} [{float(m['ci_low']):+.3f}, {float(m['ci_high']):+.3f}] "
                f"({float(m.get('confidence', 0)):.0%})"
            )
        rows.append(
            "<tr>" + "".join(
                f"<td>{c}</td>" for c in (
                    html.escape(label), html.escape(str(m.get("slice") or "all")), m.get("n", "–"),
                    _num(m.get("candidate")), _num(m.get("champion")), diff,
                    _p(m.get("p_value")), _p(m.get("p_value_holm")), _p(m.get("p_regression_holm")),
                    html.escape(str(m.get("verdict", ""))), html.escape(str(m.get("reason", ""))),
                )
            ) + "</tr>"
        )
    header = "".join(
        f"<th>{h}</th>" for h in (
            "metric", "slice", "n", "candidate", "champion", "difference [CI]", "p", "p (Holm)",
            "p regression (Holm)", "verdict", "reason",
        )
    )
    slices = sorted({str(m["slice"]) for m in report["metrics"] if m.get("slice")})
    body = [
        f"<h1>Gate: {verdict}</h1>",
        f'<p class="muted">{html.escape(source)}</p>' if source else "",
        "<ul>",
        f"<li>candidate: <code>{html.escape(str(cand.get('uri')))}</code> {html.escape(str(cand.get('label', '')))}</li>",
        f"<li>champion: <code>{html.escape(str(base.get('uri')))}</code> {html.escape(str(base.get('label', '')))}</li>"
        if base else "<li>champion: none (floors only)</li>",
        f"<li>slices: {html.escape(', '.join(slices))}</li>" if slices else "",
        "</ul>",
        "<h2>Reasons</h2><ul>" + "".join(f"<li>{html.escape(str(r))}</li>" for r in report.get("reasons", [])) + "</ul>",
        f'<h2>Metrics</h2><table id="metrics"><tr>{header}</tr>{"".join(rows)}</table>',
        _links(links),
    ]
    return page(f"Gate report: {'promote' if passed else 'reject'}", "\n".join(b for b in body if b))


# --- drift report -------------------------------------------------------------------------------------


def drift_page(report_uri: str, settings: Settings) -> str:
    """The drift report's own HTML page (`<report folder>/report.html`, plots inlined); `report_uri` is the
    report folder, its `report.json` or its `report.html`."""
    from llmops.drift.report import REPORT_HTML, REPORT_JSON

    folder = report_uri
    for name in (REPORT_HTML, REPORT_JSON):
        if folder.rstrip("/").endswith("/" + name):
            folder = folder.rstrip("/")[: -len(name) - 1]
    return read_allowed(storage.join(folder, REPORT_HTML), settings).decode()


# --- training loss ------------------------------------------------------------------------------------


def read_steps(text: str) -> list[dict[str, float]]:
    """(step, loss) records of a step log, in step order; the last record of a step wins (a resumed run
    repeats the steps after its checkpoint)."""
    by_step: dict[int, float] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict) and "step" in rec and rec.get("loss") is not None:
            by_step[int(rec["step"])] = float(rec["loss"])
    return [{"step": s, "loss": by_step[s]} for s in sorted(by_step)]


def loss_svg(points: list[dict[str, float]], width: int = 720, height: int = 320) -> str:
    """An SVG line chart of loss against step."""
    pad = 48
    if not points:
        return '<p class="muted">no steps logged</p>'
    steps = [p["step"] for p in points]
    losses = [p["loss"] for p in points]
    x0, x1 = min(steps), max(steps)
    y0, y1 = min(losses), max(losses)
    xs = (x1 - x0) or 1
    ys = (y1 - y0) or 1

    def xy(p: dict[str, float]) -> str:
        x = pad + (p["step"] - x0) / xs * (width - 2 * pad)
        y = height - pad - (p["loss"] - y0) / ys * (height - 2 * pad)
        return f"{x:.1f},{y:.1f}"

    poly = " ".join(xy(p) for p in points)
    return (
        f'<svg id="loss" xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" role="img" '
        f'aria-label="training loss by step">'
        f'<rect width="{width}" height="{height}" fill="white" stroke="#ccc"/>'
        f'<polyline fill="none" stroke="#1f77b4" stroke-width="2" points="{poly}"/>'
        f'<text x="{pad}" y="{pad - 12}" font-size="12">loss {y1:.4f}</text>'
        f'<text x="{pad}" y="{height - pad + 30}" font-size="12">step {x0}</text>'
        f'<text x="{width - pad}" y="{height - pad + 30}" font-size="12" text-anchor="end">step {x1}</text>'
        f'<text x="{width - pad}" y="{height - pad - 6}" font-size="12" text-anchor="end">loss {y0:.4f}</text>'
        "</svg>"
    )


def loss_page(output_dir: str, settings: Settings) -> str:
    """The training loss curve of a training output folder (`steps.jsonl`, the trainer's step log)."""
    uri = output_dir if output_dir.endswith(".jsonl") else storage.join(output_dir, STEP_LOG)
    points = read_steps(read_allowed(uri, settings).decode())
    last = points[-1] if points else None
    summary = f"<p>{len(points)} steps; last loss {last['loss']:.4f} at step {last['step']}</p>" if last else ""
    return page("Training loss", f"<h1>Training loss</h1><p class=\"muted\">{html.escape(uri)}</p>{summary}"
                f"{loss_svg(points)}")
