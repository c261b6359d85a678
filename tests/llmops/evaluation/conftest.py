"""Fixtures of the evaluation tests: synthetic evaluation folders (the format `llmops evaluate` writes),
a tiny base model and a LoRA adapter on it, MLflow on SQLite under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.evaluation.results import FORMAT_VERSION


def write_evaluation(
    out: Path,
    scores: dict[str, dict[str, list[float]]],
    *,
    label: str = "synthetic",
    higher_is_better: dict[str, bool] | None = None,
    ids: list[str] | None = None,
) -> Path:
    """An evaluation folder from per-sample scores: {task: {metric: [score per sample]}}."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    tasks = {}
    for task, metrics in scores.items():
        n = len(next(iter(metrics.values())))
        sample_ids = ids or [f"{task}-{i:04d}" for i in range(n)]
        lines = []
        for i, sid in enumerate(sample_ids):
            lines.append(json.dumps({"sample_id": sid, "doc_id": i, "scores": {f"{m},none": v[i] for m, v in metrics.items()}}))
        (out / "samples" / f"{task}.jsonl").write_text("\n".join(lines) + "\n")
        tasks[task] = {
            "n": n,
            "samples_file": f"samples/{task}.jsonl",
            "data_sha256": "d" * 64,
            "metrics": {
                f"{m},none": {
                    "value": sum(v) / len(v),
                    "stderr": None,
                    "higher_is_better": (higher_is_better or {}).get(m, True),
                }
                for m, v in metrics.items()
            },
        }
    (out / "results.json").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "model": {"uri": label, "label": label}, "tasks": tasks})
    )
    return out


@pytest.fixture
def evaluation(tmp_path):
    def make(name: str, scores, **kwargs) -> str:
        return str(write_evaluation(tmp_path / name, scores, **kwargs))

    return make


@pytest.fixture
def policy_file(tmp_path):
    def make(text: str) -> str:
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        return str(path)

    return make
