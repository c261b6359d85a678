"""Report pages: rendered from the files the pipeline writes, served by the plugin's FastAPI app behind
Airflow's authentication, and only from the configured storage roots."""

from __future__ import annotations

import os
import time
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from llmops.exceptions import PathNotAllowed
from llmops.reports import check_allowed, gate_page, loss_page, read_steps
from llmops.settings import load_settings


def authenticated():
    """Stands in for Airflow's authentication (the boundary): every request is a logged-in user."""


@pytest.fixture(scope="module")
def client():
    from llmops_airflow_plugin.reports import create_app

    return TestClient(create_app(auth=authenticated))


def test_locations_outside_the_storage_roots_are_refused(data_root, tmp_path, gate_report):
    settings = load_settings()
    assert check_allowed(str(gate_report), settings) == str(gate_report.resolve())
    for bad in ("/etc/passwd", str(data_root / ".." / "escape.json"), "http://example.com/x", "", "s3://other/x"):
        with pytest.raises(PathNotAllowed):
            check_allowed(bad, settings)
    # A symlink under the data root that points outside it is refused too.
    link = data_root / "runs" / "link-out"
    if not link.exists():
        os.symlink("/etc", link)
    with pytest.raises(PathNotAllowed):
        check_allowed(str(link / "passwd"), settings)
    s3 = settings.with_overrides(data_root="s3://bucket/llmops")
    assert check_allowed("s3://bucket/llmops/runs/gate.json", s3) == "s3://bucket/llmops/runs/gate.json"
    for bad in ("s3://bucket/llmops-other/gate.json", "s3://bucket/llmops/../secret", "s3://bucket/other"):
        with pytest.raises(PathNotAllowed):
            check_allowed(bad, s3)


def test_gate_page_shows_metrics_cis_p_values_and_slices(gate_report):
    import json

    report = json.loads(gate_report.read_text())
    page = gate_page(report, links={"Lineage": "http://x/lineage"}, source=str(gate_report))
    assert "PROMOTE" in page and "<table" in page
    for m in report["metrics"]:
        assert f"[{m['ci_low']:+.3f}, {m['ci_high']:+.3f}]" in page
    assert ">new<" in page and ">retained<" in page
    assert "p (Holm)" in page and 'href="http://x/lineage"' in page


def test_loss_curve_keeps_the_last_record_of_each_step(train_output):
    points = read_steps((train_output / "steps.jsonl").read_text())
    assert [p["step"] for p in points] == list(range(1, 9))
    assert points[2]["loss"] == pytest.approx(2.5 / 3, abs=1e-4)  # the resumed run's value
    page = loss_page(str(train_output), load_settings())
    assert "<svg" in page and "<polyline" in page and "8 steps" in page


def test_pages_require_airflow_authentication(gate_report):
    from llmops_airflow_plugin.reports import create_app

    anonymous = TestClient(create_app())
    resp = anonymous.get(f"/gate?uri={quote(str(gate_report))}")
    assert resp.status_code == 401, resp.text


def test_served_pages(client, gate_report, drift_report, train_output):
    resp = client.get(f"/gate?uri={quote(str(gate_report))}")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    assert "Gate:" in resp.text
    resp = client.get(f"/drift?uri={quote(str(drift_report))}")
    assert resp.status_code == 200 and "data:image/png;base64," in resp.text
    resp = client.get(f"/loss?uri={quote(str(train_output))}")
    assert resp.status_code == 200 and "<svg" in resp.text
    assert client.get(f"/gate?uri={quote('/etc/passwd')}").status_code == 403
    assert client.get(f"/gate?uri={quote(str(gate_report.parent / 'missing.json'))}").status_code == 404


def test_lineage_page(client, model_version, drift_report, airflow_db):
    name, version = model_version
    started = time.perf_counter()
    resp = client.get(f"/lineage/{quote(name)}/{version}")
    elapsed = time.perf_counter() - started
    assert resp.status_code == 200, resp.text
    page = resp.text
    assert "snap-20260101-abcdef" in page and "abc123" in page
    for stage in ("corpus-snapshot", "dataset", "training-run", "adapter", "evaluations", "gate", "approval",
                  "manifests", "deployments", "drift-events"):
        assert f'id="{stage}"' in page
    assert "/dags/llmops_finetune/runs/manual__2026-01-01T00%3A00%3A00%2B00%3A00/tasks/gate" in page
    assert "/llmops/gate?uri=" in page and "/llmops/loss?uri=" in page and "/llmops/drift?uri=" in page
    assert "evaluate" in page and "#/experiments/" in page
    started = time.perf_counter()
    assert client.get(f"/lineage/{quote(name)}/{version}").status_code == 200
    warm = time.perf_counter() - started
    print(f"lineage page: first request {elapsed:.3f}s, next {warm:.3f}s")
    assert client.get(f"/lineage/{quote(name)}/999").status_code == 422


def test_lineage_shows_the_runs_manifests_and_deployment(model_version):
    """The plugin passes the registering Airflow run's step summaries (render_manifests, deploy)."""
    from llmops.contracts import DeploySummary, RenderSummary
    from llmops.reports.lineage import Urls, lineage_page, version_lineage

    name, version = model_version
    urls = Urls(airflow="http://af:8080", mlflow="http://mlflow:5000", report=lambda kind, uri: f"http://af:8080/{kind}")
    folder = "/data/manifests/llmops-ui-test/1"
    summaries = {
        "render_manifests": RenderSummary(
            manifests_uri=folder, out="/data/manifests", model=name, model_dir="llmops-ui-test", version=version,
            run_id=None, stable_version=None, name="llm", namespace="ml", files=["deployment.yaml"], changed=True,
            validated_by={}, render_validate_s=0.1, write_s=0.01,
        ).to_json(),
        "deploy": DeploySummary(
            manifests_uri=folder, model=name, version=version, previous_version=None, objects=["Deployment/llm"],
            applied=False, live_changed=True, live=version, deploy_s=0.1,
        ).to_json(),
    }
    stages = {s.name: s for s in version_lineage(load_settings(), name, version, urls, run_summaries=summaries)}
    assert [link.text for link in stages["manifests"].items][0] == "/data/manifests/llmops-ui-test/1"
    assert any(link.href and link.href.endswith("/tasks/render_manifests") for link in stages["manifests"].items)
    assert '"live": "1"' in stages["deployments"].details[0]
    assert any(link.href and link.href.endswith("/tasks/deploy") for link in stages["deployments"].items)
    page = lineage_page(name, version, list(stages.values()))
    assert "/data/manifests/llmops-ui-test/1" in page and "nothing recorded" not in page.split('id="deployments"')[1]
