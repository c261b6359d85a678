"""Gate decisions on synthetic per-sample scores, through `llmops gate` (exit codes 0 / 3 / 2)."""

from __future__ import annotations

import json

import pytest

from llmops.cli import main
from llmops.evaluation import stats
from llmops.evaluation.gate import GatePolicy, decide, load_policy
from llmops.evaluation.results import load_evaluation
from llmops.exceptions import ConfigError

ACC_POLICY = """
confidence: 0.95
allow_equal: false
bootstrap_iterations: 2000
metrics:
  - {task: qa, metric: acc, floor: 0.25}
"""


def binary(n_right: int, n: int, offset: int = 0) -> list[float]:
    """n scores, n_right of them 1, starting at `offset` (wrapping): controls which samples overlap."""
    return [1.0 if (i - offset) % n < n_right else 0.0 for i in range(n)]


def gate(candidate, baseline, policy, report) -> int:
    return main(["gate", "--candidate", candidate, "--baseline", baseline, "--policy", policy, "--report", report])


def test_clearly_better_candidate_is_promoted(evaluation, policy_file, tmp_path, capsys):
    cand = evaluation("cand", {"qa": {"acc": binary(80, 100)}})
    champ = evaluation("champ", {"qa": {"acc": binary(30, 100)}})
    report = tmp_path / "gate.json"
    assert gate(cand, champ, policy_file(ACC_POLICY), str(report)) == 0
    data = json.loads(report.read_text())
    assert data["decision"] == "promote"
    m = data["metrics"][0]
    assert m["verdict"] == "better"
    assert m["difference"] == pytest.approx(0.5)
    assert m["ci_low"] > 0.3 and m["ci_high"] < 0.7
    # 50 discordant pairs, all for the candidate: McNemar chi-square (|50 - 0| - 1)^2 / 50.
    assert m["method"] == "McNemar chi-square"
    assert m["p_value"] == pytest.approx(stats.mcnemar(50, 0).p_value)
    md = (tmp_path / "gate.md").read_text()
    assert "| metric | candidate | champion | difference [CI] | p-value (Holm) | verdict | reason |" in md
    assert "| qa/acc | 0.800 | 0.300 | +0.500 [" in md
    assert "## Gate: PROMOTE" in capsys.readouterr().out


def test_worse_candidate_is_rejected_with_exit_3_and_reasons_on_stdout(evaluation, policy_file, tmp_path, capsys):
    cand = evaluation("cand", {"qa": {"acc": binary(30, 100)}})
    champ = evaluation("champ", {"qa": {"acc": binary(80, 100)}})
    assert gate(cand, champ, policy_file(ACC_POLICY), str(tmp_path / "gate.json")) == 3
    out = capsys.readouterr().out
    assert "REJECTED" in out and "significantly worse" in out
    assert json.loads((tmp_path / "gate.json").read_text())["metrics"][0]["verdict"] == "worse"


def test_same_model_never_passes_itself_when_a_gain_is_required(evaluation, policy_file, tmp_path):
    scores = {"qa": {"acc": binary(60, 100)}}
    a = evaluation("a", scores)
    b = evaluation("b", scores)
    assert gate(a, b, policy_file(ACC_POLICY), str(tmp_path / "r1.json")) == 3
    report = json.loads((tmp_path / "r1.json").read_text())
    assert report["metrics"][0]["verdict"] == "not significant"
    assert report["metrics"][0]["p_value"] == 1.0
    assert any("not significant" in r for r in report["reasons"])
    # ... and is promoted when the policy allows equal.
    allow = policy_file(ACC_POLICY.replace("allow_equal: false", "allow_equal: true"))
    assert gate(a, b, allow, str(tmp_path / "r2.json")) == 0


def test_small_real_gain_on_few_samples_is_not_significant(evaluation, policy_file, tmp_path):
    # 12 samples; the candidate gets 3 more right and 1 fewer: b=3, c=1, exact p = 2 * 5/16 = 0.625.
    champ_scores = [1.0] * 5 + [0.0] * 7
    cand_scores = list(champ_scores)
    cand_scores[0] = 0.0
    cand_scores[5] = cand_scores[6] = cand_scores[7] = 1.0
    cand = evaluation("cand", {"qa": {"acc": cand_scores}})
    champ = evaluation("champ", {"qa": {"acc": champ_scores}})
    assert gate(cand, champ, policy_file(ACC_POLICY), str(tmp_path / "gate.json")) == 3
    m = json.loads((tmp_path / "gate.json").read_text())["metrics"][0]
    assert m["difference"] > 0
    assert m["method"].startswith("exact binomial")
    assert m["p_value"] == pytest.approx(0.625)
    assert m["verdict"] == "not significant"
    assert m["reason"].startswith("not significant")


def test_holm_correction_turns_three_marginal_gains_into_no_gain(evaluation, policy_file, tmp_path):
    # Each metric alone: b=9, c=1 -> exact p = 2 * 11/1024 = 0.0215 < 0.05. Three of them: Holm x3 = 0.064.
    champ = [1.0] * 1 + [0.0] * 29
    cand = [0.0] + [1.0] * 9 + [0.0] * 20
    scores = {"qa": {"m1": cand, "m2": cand, "m3": cand}}
    base = {"qa": {"m1": champ, "m2": champ, "m3": champ}}
    c, b = evaluation("c", scores), evaluation("b", base)
    three = policy_file("metrics:\n" + "".join(f"  - {{task: qa, metric: m{i}}}\n" for i in (1, 2, 3)))
    assert gate(c, b, three, str(tmp_path / "three.json")) == 3
    ms = json.loads((tmp_path / "three.json").read_text())["metrics"]
    for m in ms:
        assert m["p_value"] == pytest.approx(2 * 11 / 1024)
        assert m["p_value_holm"] == pytest.approx(3 * 2 * 11 / 1024)
        assert m["verdict"] == "not significant"
        assert "after Holm (p=0.0215 before)" in m["reason"]
    one = policy_file("metrics:\n  - {task: qa, metric: m1}\n")
    assert gate(c, b, one, str(tmp_path / "one.json")) == 0


def test_without_champion_floors_alone_decide(evaluation, policy_file, tmp_path):
    policy = policy_file(ACC_POLICY)
    above = evaluation("above", {"qa": {"acc": binary(3, 10)}})
    below = evaluation("below", {"qa": {"acc": binary(2, 10)}})
    assert gate(above, "none", policy, str(tmp_path / "a.json")) == 0
    assert gate(below, "none", policy, str(tmp_path / "b.json")) == 3
    report = json.loads((tmp_path / "b.json").read_text())
    assert report["baseline"] is None
    assert report["metrics"][0]["verdict"] == "below floor"
    assert "below the floor 0.250" in report["reasons"][0]


def test_floor_rejects_even_a_significantly_better_candidate(evaluation, policy_file, tmp_path):
    cand = evaluation("cand", {"qa": {"acc": binary(20, 100)}})
    champ = evaluation("champ", {"qa": {"acc": [0.0] * 100}})
    assert gate(cand, champ, policy_file(ACC_POLICY), str(tmp_path / "g.json")) == 3
    assert json.loads((tmp_path / "g.json").read_text())["metrics"][0]["verdict"] == "below floor"


def test_allowed_regression_on_a_continuous_metric(evaluation, tmp_path):
    n = 200
    champ = [0.5 + 0.4 * ((i * 37) % 11) / 10 for i in range(n)]
    slight = [x - 0.01 for x in champ]  # a real but tolerated drop
    big = [x - 0.1 for x in champ]
    c0 = load_evaluation(evaluation("champ", {"qa": {"rougeL": champ}}))
    policy = GatePolicy(allow_equal=True, bootstrap_iterations=2000, metrics=[{"task": "qa", "metric": "rougeL", "max_regression": 0.02}])
    r = decide(load_evaluation(evaluation("slight", {"qa": {"rougeL": slight}})), c0, policy)
    assert r.passed and r.metrics[0].verdict == "within allowed regression"
    assert r.metrics[0].method == "paired bootstrap"
    r = decide(load_evaluation(evaluation("big", {"qa": {"rougeL": big}})), c0, policy)
    assert not r.passed and r.metrics[0].verdict == "worse"
    assert "allowed regression 0.02" in r.metrics[0].reason


def test_lower_is_better_metric_is_oriented(evaluation):
    low = [0.1] * 50 + [0.2] * 50
    high = [0.9] * 50 + [0.7] * 50
    policy = GatePolicy(bootstrap_iterations=2000, metrics=[{"task": "qa", "metric": "error"}])
    hib = {"error": False}
    cand = load_evaluation(evaluation("c", {"qa": {"error": low}}, higher_is_better=hib))
    champ = load_evaluation(evaluation("p", {"qa": {"error": high}}, higher_is_better=hib))
    r = decide(cand, champ, policy)
    assert r.passed and r.metrics[0].verdict == "better"
    assert r.metrics[0].difference == pytest.approx(0.65)  # positive = better


def test_report_is_deterministic(evaluation, policy_file, tmp_path):
    rough = [((i * 7) % 10) / 10 for i in range(60)]
    cand = evaluation("c", {"qa": {"rougeL": [min(1.0, x + 0.05) for x in rough]}})
    champ = evaluation("p", {"qa": {"rougeL": rough}})
    policy = policy_file("bootstrap_iterations: 2000\nmetrics:\n  - {task: qa, metric: rougeL}\n")
    gate(cand, champ, policy, str(tmp_path / "1.json"))
    gate(cand, champ, policy, str(tmp_path / "2.json"))
    assert (tmp_path / "1.json").read_text() == (tmp_path / "2.json").read_text()


def test_different_samples_are_an_error(evaluation, policy_file, tmp_path, capsys):
    cand = evaluation("c", {"qa": {"acc": binary(5, 10)}})
    champ = evaluation("p", {"qa": {"acc": binary(5, 20)}})
    assert gate(cand, champ, policy_file(ACC_POLICY), str(tmp_path / "g.json")) == 2
    assert "same --limit" in capsys.readouterr().err


def test_missing_evaluation_and_bad_policy_are_errors(evaluation, policy_file, tmp_path, capsys):
    cand = evaluation("c", {"qa": {"acc": binary(5, 10)}})
    assert gate(str(tmp_path / "nothing"), "none", policy_file(ACC_POLICY), str(tmp_path / "g.json")) == 2
    assert "results.json does not exist" in capsys.readouterr().err
    bad = policy_file("confidence: 1.5\nmetrics:\n  - {task: qa, metric: acc, max_regression: -1}\n")
    assert gate(cand, "none", bad, str(tmp_path / "g.json")) == 2
    err = capsys.readouterr().err
    assert "confidence = 1.5" in err and "metrics.0.max_regression = -1" in err
    with pytest.raises(ConfigError, match="metrics"):
        load_policy(policy_file("confidence: 0.9\n"))
    assert gate(cand, "none", policy_file("metrics:\n  - {task: qa, metric: f1}\n"), str(tmp_path / "g.json")) == 2
    assert "reports no value for f1,none" in capsys.readouterr().err


def test_example_policy_is_valid(tmp_path, monkeypatch):
    # Relative to the checkout, whatever the working directory (a local step runs in the worker's).
    monkeypatch.chdir(tmp_path)
    policy = load_policy("examples/local/gate.yaml")
    assert policy.allow_equal is False
    assert {(r.task, r.metric) for r in policy.metrics} >= {("corpus_mc", "acc"), ("corpus_qa", "rougeL")}
    assert [(r.task, r.metric) for r in policy.metrics if r.slice == "new" and r.must_improve] == [
        ("corpus_qa", "exact_match")
    ]
    assert any(r.slice == "retained" and not r.must_improve for r in policy.metrics)


def test_every_reason_is_reported(evaluation, policy_file, tmp_path):
    # Below the floor *and* no gain over the champion: both reasons are listed.
    low = evaluation("low", {"qa": {"acc": binary(2, 10)}})
    assert gate(low, low, policy_file(ACC_POLICY), str(tmp_path / "g.json")) == 3
    reasons = json.loads((tmp_path / "g.json").read_text())["reasons"]
    assert any("below the floor" in r for r in reasons)
    assert any(r.startswith("not significant") for r in reasons)
