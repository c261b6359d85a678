"""`llmops drift` and `llmops sample-traffic` as the acceptance checks call them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.cli import main

END = "2026-11-23T12:00:00Z"


def _traffic(out: Path, kind: str, n: int, seed: int = 5) -> Path:
    assert main(["sample-traffic", "--out", str(out), "--kind", kind, "--n", str(n), "--seed", str(seed),
                 "--end", END]) == 0
    return out


def test_sample_traffic_is_deterministic_and_documented_format(tmp_path):
    a = _traffic(tmp_path / "a", "in-domain", 30) / "traffic-in-domain-5.jsonl"
    b = _traffic(tmp_path / "b", "in-domain", 30) / "traffic-in-domain-5.jsonl"
    assert a.read_text() == b.read_text()
    rows = [json.loads(x) for x in a.read_text().splitlines()]
    assert len(rows) == 30 and rows[-1]["timestamp"] == END
    assert all("Larkspur" in r["prompt"] and r["model"] for r in rows)
    ood = [json.loads(x) for x in (_traffic(tmp_path / "c", "out-of-domain", 30) / "traffic-out-of-domain-5.jsonl")
           .read_text().splitlines()]
    assert not any("Larkspur" in r["prompt"] for r in ood)


def test_not_enough_data_exits_4_and_still_reports(sample_dir, tmp_path, capsys):
    current = _traffic(tmp_path / "traffic", "in-domain", 12)
    report = tmp_path / "reports" / "r1"
    args = ["drift", "--reference", str(sample_dir / "finetune.jsonl"), "--current", str(current),
            "--report", str(report), "--min-samples", "50", "--no-mlflow"]
    assert main(args) == 4
    rep = json.loads((report / "report.json").read_text())
    assert (rep["status"], rep["drift"], rep["n_current"], rep["p_value_mmd"]) == ("not_enough_data", False, 12, None)
    assert "not enough data" in rep["reason"]
    assert (report / "report.html").exists()
    capsys.readouterr()
    # The DAG's flag: the verdict travels in the summary, the exit code is 0.
    summary = tmp_path / "summary.json"
    assert main([*args, "--exit-zero", "--summary-json", str(summary)]) == 0
    assert json.loads(summary.read_text())["status"] == "not_enough_data"


def test_missing_reference_is_an_error(tmp_path, capsys):
    code = main(["drift", "--reference", str(tmp_path / "missing.jsonl"), "--current", str(tmp_path),
                 "--report", str(tmp_path / "r"), "--no-mlflow"])
    assert code == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_bad_settings_are_named(tmp_path, capsys):
    code = main(["drift", "--reference", "x", "--current", "y", "--report", str(tmp_path / "r"),
                 "--alpha", "0.01", "--permutations", "50", "--no-mlflow"])
    assert code == 2
    assert "permutations" in capsys.readouterr().err


@pytest.mark.slow
def test_in_domain_is_calm_out_of_domain_is_drift(sample_dir, tmp_path, data_root):
    reference = str(sample_dir / "finetune.jsonl")
    reports = tmp_path / "reports"
    common = ["--reference", reference, "--min-samples", "30", "--permutations", "299"]

    code = main(["drift", *common, "--current", str(_traffic(tmp_path / "in", "in-domain", 80)),
                 "--report", str(reports / "1-in"), "--no-mlflow"])
    calm = json.loads((reports / "1-in" / "report.json").read_text())
    assert code == 0, calm
    assert calm["drift"] is False and calm["p_value"] > 0.05
    assert (calm["n_reference"], calm["n_current"]) == (480, 80)

    code = main(["drift", *common, "--current", str(_traffic(tmp_path / "out", "out-of-domain", 80)),
                 "--report", str(reports / "2-out"), "--until", END])
    rep = json.loads((reports / "2-out" / "report.json").read_text())
    assert code == 3, rep
    assert rep["drift"] is True
    assert rep["p_value_mmd"] <= 0.05 and rep["p_value_classifier"] <= 0.05
    assert rep["signals"]["oov_rate"]["current_vs_reference"] > 0.3
    html = (reports / "2-out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # projection and history
    assert "Drift detected" in html

    from mlflow.tracking import MlflowClient

    from llmops.settings import load_settings

    client = MlflowClient(tracking_uri=load_settings().mlflow_uri)
    run = client.get_run(rep["mlflow_run_id"])
    assert run.data.metrics["drift"] == 1.0
    assert run.data.metrics["p_value_mmd"] == pytest.approx(rep["p_value_mmd"])
    assert {a.path for a in client.list_artifacts(rep["mlflow_run_id"], "drift")} == {
        "drift/report.json", "drift/report.html",
    }
