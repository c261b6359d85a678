"""Per-slice gate rules: "significantly better on `new`, not significantly worse on `retained`"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.cli import main
from llmops.evaluation.harness import slice_metrics
from llmops.evaluation.results import FORMAT_VERSION

POLICY = """
bootstrap_iterations: 2000
metrics:
  - {task: corpus_mc, metric: acc, floor: 0.25}
  - {task: corpus_mc, metric: acc, slice: new, must_improve: true}
  - {task: corpus_mc, metric: acc, slice: retained}
"""


def sliced_evaluation(out: Path, new: list[float], retained: list[float], data: str = "d" * 64) -> str:
    """An evaluation folder as `llmops evaluate --dataset` writes it: samples with item ids and slices,
    metrics overall and per slice (computed by the harness's own `slice_metrics`)."""
    (out / "samples").mkdir(parents=True)
    records = [
        {"sample_id": f"{name}-{i:03d}#0", "item_id": f"{name}-{i:03d}", "slice": name, "scores": {"acc,none": v}}
        for name, values in (("new", new), ("retained", retained))
        for i, v in enumerate(values)
    ]
    (out / "samples" / "corpus_mc.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    values = new + retained
    metrics = {"acc,none": {"value": sum(values) / len(values), "stderr": None, "higher_is_better": True}}
    task = {
        "n": len(values),
        "samples_file": "samples/corpus_mc.jsonl",
        "data_sha256": data,
        "dataset_uri": "/data/datasets/versions/abc",
        "metrics": metrics,
        "slices": slice_metrics(records, metrics),
    }
    (out / "results.json").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "model": {"uri": out.name}, "tasks": {"corpus_mc": task}})
    )
    return str(out)


def ones(k: int, n: int) -> list[float]:
    return [1.0] * k + [0.0] * (n - k)


def run_gate(tmp_path, cand, champ, policy=POLICY) -> tuple[int, dict]:
    policy_path = tmp_path / "policy.yaml"
    policy_path.write_text(policy)
    report = tmp_path / "gate.json"
    code = main(["gate", "--candidate", cand, "--baseline", champ, "--policy", str(policy_path), "--report", str(report)])
    return code, json.loads(report.read_text())


def by_label(report: dict) -> dict[str, dict]:
    return {f"{m['task']}[{m['slice']}]" if m["slice"] else m["task"]: m for m in report["metrics"]}


def test_slice_metrics_are_means_per_slice():
    records = [
        {"slice": "new", "scores": {"acc,none": 1.0}},
        {"slice": "new", "scores": {"acc,none": 0.0}},
        {"slice": "retained", "scores": {"acc,none": 1.0}},
    ]
    out = slice_metrics(records, {"acc,none": {"higher_is_better": True}})
    assert out["new"]["n"] == 2 and out["new"]["metrics"]["acc,none"]["value"] == 0.5
    assert out["new"]["metrics"]["acc,none"]["stderr"] == pytest.approx(0.5)
    assert out["retained"]["metrics"]["acc,none"] == {"value": 1.0, "stderr": None, "higher_is_better": True}


def test_better_on_new_and_equal_on_retained_is_promoted(tmp_path):
    champ = sliced_evaluation(tmp_path / "champ", new=ones(10, 60), retained=ones(50, 60))
    cand = sliced_evaluation(tmp_path / "cand", new=ones(45, 60), retained=ones(50, 60))
    code, report = run_gate(tmp_path, cand, champ)
    assert code == 0, report["reasons"]
    m = by_label(report)
    assert m["corpus_mc[new]"]["verdict"] == "better" and m["corpus_mc[new]"]["n"] == 60
    assert m["corpus_mc[new]"]["difference"] == pytest.approx(35 / 60)
    assert m["corpus_mc[retained]"]["verdict"] == "not significant"
    assert m["corpus_mc[retained]"]["candidate"] == pytest.approx(50 / 60)
    assert "corpus_mc[new]/acc" in report["reasons"][-1]
    assert "| corpus_mc[new]/acc | 0.750 | 0.167 |" in (tmp_path / "gate.md").read_text()


def test_forgetting_the_retained_documents_rejects_even_with_a_gain_on_new(tmp_path):
    champ = sliced_evaluation(tmp_path / "champ", new=ones(10, 60), retained=ones(55, 60))
    cand = sliced_evaluation(tmp_path / "cand", new=ones(55, 60), retained=ones(15, 60))
    code, report = run_gate(tmp_path, cand, champ)
    assert code == 3
    assert by_label(report)["corpus_mc[retained]"]["verdict"] == "worse"
    assert any(r.startswith("corpus_mc[retained]/acc: ") and "significantly worse" in r for r in report["reasons"])


def test_a_gain_only_on_retained_does_not_satisfy_must_improve_on_new(tmp_path):
    champ = sliced_evaluation(tmp_path / "champ", new=ones(30, 60), retained=ones(10, 60))
    cand = sliced_evaluation(tmp_path / "cand", new=ones(30, 60), retained=ones(55, 60))
    code, report = run_gate(tmp_path, cand, champ)
    assert code == 3
    assert by_label(report)["corpus_mc[retained]"]["verdict"] == "better"
    assert "corpus_mc[new]/acc: must be significantly better than the champion, is not significant" in report["reasons"]


def test_empty_slice_is_reported_not_tested(tmp_path):
    # The first dataset has no retained items: without a champion the floors decide, the slice says why.
    first = sliced_evaluation(tmp_path / "first", new=ones(40, 60), retained=[])
    code, report = run_gate(tmp_path, first, "none")
    assert code == 0
    retained = by_label(report)["corpus_mc[retained]"]
    assert retained["verdict"] == "no samples" and retained["candidate"] is None
    # A rebuild without new documents: nothing new was learnt, so a must_improve rule on `new` rejects.
    champ = sliced_evaluation(tmp_path / "champ", new=[], retained=ones(20, 60))
    cand = sliced_evaluation(tmp_path / "cand", new=[], retained=ones(50, 60))
    code, report = run_gate(tmp_path, cand, champ)
    assert code == 3
    assert "corpus_mc[new]/acc: must be significantly better than the champion, is no samples" in report["reasons"]


def test_champion_evaluated_on_other_data_is_an_error_naming_the_dataset(tmp_path, capsys):
    champ = sliced_evaluation(tmp_path / "champ", new=ones(10, 60), retained=ones(50, 60), data="e" * 64)
    cand = sliced_evaluation(tmp_path / "cand", new=ones(45, 60), retained=ones(50, 60))
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    assert main(["gate", "--candidate", cand, "--baseline", champ, "--policy", str(policy), "--report", str(tmp_path / "g.json")]) == 2
    assert "llmops evaluate --dataset /data/datasets/versions/abc" in capsys.readouterr().err


def test_slice_rule_on_an_evaluation_without_slices_is_an_error(evaluation, tmp_path, capsys):
    plain = evaluation("plain", {"corpus_mc": {"acc": ones(40, 60)}})
    policy = tmp_path / "p.yaml"
    policy.write_text("metrics:\n  - {task: corpus_mc, metric: acc, slice: new}\n")
    assert main(["gate", "--candidate", plain, "--baseline", "none", "--policy", str(policy), "--report", str(tmp_path / "g.json")]) == 2
    assert "reports no slices for corpus_mc" in capsys.readouterr().err


def test_a_rule_listed_twice_for_one_slice_is_invalid(tmp_path, capsys):
    policy = tmp_path / "p.yaml"
    policy.write_text("metrics:\n  - {task: t, metric: acc, slice: new}\n  - {task: t, metric: acc, slice: new}\n")
    assert main(["gate", "--candidate", str(tmp_path), "--baseline", "none", "--policy", str(policy), "--report", str(tmp_path / "g.json")]) == 2
    assert "t[new]/acc is listed twice" in capsys.readouterr().err
