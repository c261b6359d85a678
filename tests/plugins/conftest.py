"""Report files as the pipeline writes them, under the session's data root: a gate report from real
(sliced) evaluations, a trainer step log, a drift report folder with its plots, and a model version
registered in MLflow (SQLite) with the lineage tags `llmops register` sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.llmops.evaluation.test_gate_slices import POLICY, ones, sliced_evaluation


@pytest.fixture(scope="session")
def reports_root(data_root) -> Path:
    root = data_root / "runs" / "llmops_finetune" / "ui-test"
    root.mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="session")
def gate_report(reports_root) -> Path:
    """`llmops gate` on a candidate better on `new` and equal on `retained`."""
    from llmops.cli import main

    out = reports_root / "eval"
    if not (out / "gate.json").exists():
        champ = sliced_evaluation(out / "champion", new=ones(10, 60), retained=ones(50, 60))
        cand = sliced_evaluation(out / "candidate", new=ones(45, 60), retained=ones(50, 60))
        policy = out / "policy.yaml"
        policy.write_text(POLICY)
        code = main(["gate", "--candidate", cand, "--baseline", champ, "--policy", str(policy),
                     "--report", str(out / "gate.json")])
        assert code == 0
    return out / "gate.json"


@pytest.fixture(scope="session")
def train_output(reports_root) -> Path:
    """A training output folder with the trainer's step log (a resumed run repeats steps 3-4)."""
    out = reports_root / "train"
    (out / "adapter").mkdir(parents=True, exist_ok=True)
    lines = [{"step": s, "loss": round(3.0 / s, 4), "lr": 0.001} for s in range(1, 5)]
    lines += [{"step": s, "loss": round(2.5 / s, 4), "lr": 0.001} for s in range(3, 9)]
    (out / "steps.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return out


@pytest.fixture(scope="session")
def drift_report(data_root) -> Path:
    """A drift report folder written by `llmops.drift.report.write_report` (PCA plot and history)."""
    import tempfile

    import numpy as np

    from llmops.drift.report import write_report

    folder = data_root / "drift" / "reports" / "20990101T000000Z"
    if (folder / "report.html").exists():
        return folder
    rng = np.random.default_rng(0)
    report = {
        "status": "drift", "drift": True, "p_value": 0.001, "alpha": 0.05, "seed": 0, "created_at": "2099-01-01T00:00:00+00:00",
        "reference": {"uri": "ref.jsonl", "kind": "rows", "records": 40},
        "current": {"uri": "traffic", "kind": "rows", "records": 40, "sampled_from": 40, "skipped": 0}, "embedding_model": "all-MiniLM-L6-v2", "field": "prompt",
        "min_samples": 10, "permutations": 100, "window_hours": 24, "n_current": 40, "n_reference": 40,
        "uncovered_share": 0.4, "expected_share": 0.1, "excess": 0.3, "min_effect": 0.05, "report_uri": str(folder),
    }
    with tempfile.TemporaryDirectory() as tmp:
        write_report(report, str(folder), rng.normal(size=(40, 8)), rng.normal(1.0, size=(40, 8)), Path(tmp))
    return folder


@pytest.fixture(scope="session")
def model_version(gate_report, train_output) -> tuple[str, str]:
    """A registered model version with the tags `llmops register` sets (MLflow on SQLite under data_root)."""
    from llmops.registry import ensure_experiment, mlflow_client
    from llmops.settings import load_settings

    settings = load_settings()
    client = mlflow_client(settings)
    name = "llmops-ui-test"
    existing = client.search_model_versions(f"name = '{name}'")
    if existing:
        return name, str(existing[0].version)
    experiment = ensure_experiment(settings)
    run = client.create_run(experiment, run_name="train ui-test", tags={"llmops.step": "train"})
    client.create_registered_model(name)
    tags = {
        "llmops.corpus_snapshot_id": "snap-20260101-abcdef",
        "llmops.dataset": "/data/datasets/versions/abc",
        "llmops.dataset_hash": "abc123",
        "llmops.training_run_id": run.info.run_id,
        "llmops.adapter_uri": f"runs:/{run.info.run_id}/adapter",
        "llmops.adapter_source": str(train_output / "adapter"),
        "llmops.gate.decision": "promote",
        "llmops.gate.report_uri": str(gate_report),
        "llmops.airflow.dag_id": "llmops_finetune",
        "llmops.airflow.run_id": "manual__2026-01-01T00:00:00+00:00",
    }
    mv = client.create_model_version(name, source=f"runs:/{run.info.run_id}/adapter", run_id=run.info.run_id, tags=tags)
    client.create_run(experiment, run_name="evaluate candidate", tags={
        "llmops.step": "evaluate", "llmops.airflow.run_id": tags["llmops.airflow.run_id"],
        "llmops.evaluated_model": str(train_output / "adapter"),
    })
    return name, str(mv.version)
