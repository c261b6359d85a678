"""`llmops evaluate` on a tiny model: lm-eval runs for real, offline, on the project's local tasks."""

from __future__ import annotations

import json

import pytest

from llmops.cli import main
from llmops.evaluation.data import DOMAIN_TASKS, mc_rows, qa_rows, write_task_data
from llmops.sample_data import facts, prompt_for


def test_task_data_is_deterministic_and_uses_the_finetuning_prompt(tmp_path):
    first = write_task_data(tmp_path / "a")
    second = write_task_data(tmp_path / "b")
    assert {t: i["sha256"] for t, i in first.items()} == {t: i["sha256"] for t, i in second.items()}
    assert set(first) == set(DOMAIN_TASKS)
    mc, qa = mc_rows(), qa_rows()
    assert len(mc) == len(qa) == len(facts()) == first["larkspur_mc"]["rows"]
    fact = facts()[0]
    assert mc[0]["prompt"] == qa[0]["prompt"] == prompt_for(fact.question)
    assert mc[0]["choices"][mc[0]["gold"]] == fact.answer
    assert sorted(mc[0]["choices"]) == sorted([fact.answer, *fact.distractors])
    assert len({r["id"] for r in mc}) == len(mc)
    # The answer is not always in the same position (the shuffle is seeded, not absent).
    assert len({r["gold"] for r in mc}) == 4


def test_unknown_domain_task_is_an_error(tiny_base, tmp_path, capsys):
    code = main(["evaluate", "--model", str(tiny_base), "--tasks", "larkspur_nope", "--output", str(tmp_path / "o"), "--no-mlflow"])
    assert code == 2
    assert "unknown lm-eval task(s) larkspur_nope" in capsys.readouterr().err


def test_negative_limit_is_an_error(tiny_base, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tiny_base), "--limit", "-1", "--output", str(tmp_path / "o"), "--no-mlflow"]) == 2
    assert "--limit must be a number of samples per task (0: all), got -1" in capsys.readouterr().err


def test_missing_model_fails_or_skips(tmp_path, mlflow_settings, capsys):
    args = ["evaluate", "--model", "models:/nobody@champion", "--output", str(tmp_path / "o")]
    assert main(args) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*args, "--skip-if-missing"]) == 3
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_evaluate_adapter_keeps_per_sample_scores_and_logs_to_mlflow(
    tiny_base, tiny_adapter, tmp_path, mlflow_settings, capsys
):
    from mlflow import MlflowClient

    from llmops.evaluation import harness

    out = tmp_path / "eval"
    summary_file = tmp_path / "summary.json"
    args = ["evaluate", "--model", str(tiny_adapter), "--output", str(out), "--limit", "4", "--batch-size", "4"]
    assert main([*args, "--dag-id", "llmops_finetune", "--summary-json", str(summary_file)]) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["model"]["kind"] == "adapter"
    assert results["model"]["base_model"] == str(tiny_base)
    assert set(results["tasks"]) == set(DOMAIN_TASKS)
    expected_ids = [r["id"] for r in mc_rows()[:4]]
    for task, metrics in (("larkspur_mc", ("acc,none", "acc_norm,none")), ("larkspur_qa", ("rougeL,none", "exact_match,none"))):
        t = results["tasks"][task]
        assert t["n"] == 4
        assert t["data_sha256"] == write_task_data(tmp_path / "d")[task]["sha256"]
        records = [json.loads(line) for line in (out / t["samples_file"]).read_text().splitlines()]
        assert [r["sample_id"] for r in records] == expected_ids
        for key in metrics:
            value = t["metrics"][key]["value"]
            assert 0.0 <= value <= 1.0
            assert t["metrics"][key]["stderr"] is not None
            per_sample = [r["scores"][key] for r in records]
            assert value == pytest.approx(sum(per_sample) / len(per_sample))
        if task == "larkspur_qa":
            # lm-eval's own sample logging is kept: the generation and the prompt it answered.
            assert records[0]["arguments"][0][0] == mc_rows()[0]["prompt"]
            assert isinstance(records[0]["filtered_resps"][0], str)

    summary = json.loads(summary_file.read_text())
    run = MlflowClient(mlflow_settings.mlflow_uri, registry_uri=mlflow_settings.mlflow_uri).get_run(summary["mlflow_run_id"])
    assert run.data.metrics["larkspur_mc.acc"] == pytest.approx(results["tasks"]["larkspur_mc"]["metrics"]["acc,none"]["value"])
    assert "larkspur_mc.acc_stderr" in run.data.metrics
    assert run.data.tags["llmops.airflow.dag_id"] == "llmops_finetune"
    artifacts = {f.path for f in MlflowClient(mlflow_settings.mlflow_uri, registry_uri=mlflow_settings.mlflow_uri).list_artifacts(run.info.run_id, "evaluation/samples")}
    assert artifacts == {"evaluation/samples/larkspur_mc.jsonl", "evaluation/samples/larkspur_qa.jsonl"}
    # A retried task logs into the same run (found by its output folder).
    assert harness._log_to_mlflow(str(out), out, results, {}, mlflow_settings) == (run.info.run_id, run.info.experiment_id)
    assert summary["mlflow_experiment_id"] == run.info.experiment_id

    # Two evaluations of one model never pass each other when the policy requires a gain.
    policy = tmp_path / "policy.yaml"
    policy.write_text("metrics:\n  - {task: larkspur_mc, metric: acc}\n  - {task: larkspur_qa, metric: rougeL}\n")
    capsys.readouterr()
    code = main(["gate", "--candidate", str(out), "--baseline", str(out), "--policy", str(policy), "--report", str(tmp_path / "g.json")])
    assert code == 3
    assert "not significant" in capsys.readouterr().out
