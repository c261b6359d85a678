"""`llmops evaluate` on a tiny model: lm-eval runs for real, offline, on the project's local tasks."""

from __future__ import annotations

import json

import pytest

from llmops.cli import main
from llmops.evaluation.data import DOMAIN_TASKS, mc_rows, qa_rows, read_eval_rows, write_task_data
from llmops.exceptions import EvaluationError
from tests.llmops.evaluation.conftest import eval_rows, write_dataset


def test_task_data_comes_from_the_eval_split_with_ids_and_slices(tmp_path, dataset_uri):
    first = write_task_data(tmp_path / "a", dataset_uri)
    second = write_task_data(tmp_path / "b", dataset_uri)
    assert {t: i["sha256"] for t, i in first.items()} == {t: i["sha256"] for t, i in second.items()}
    assert set(first) == set(DOMAIN_TASKS)
    assert first["corpus_mc"]["slices"] == {"new": 6, "retained": 4}
    rows, _ = read_eval_rows(dataset_uri)
    mc, qa = mc_rows(rows), qa_rows(rows)
    assert len(mc) == len(qa) == 10 == first["corpus_mc"]["rows"]
    source = {r["item_id"]: r for r in eval_rows()}
    for m, q in zip(mc, qa, strict=True):
        assert m["id"] == q["id"] == f"{m['item_id']}#0"
        assert m["prompt"] == q["prompt"] == source[m["item_id"]]["prompt"]
        assert m["choices"][m["gold"]] == q["answer"] == source[m["item_id"]]["answer"]
        assert m["slice"] == source[m["item_id"]]["slice"]
    assert len({r["gold"] for r in mc}) == 4


def test_phrasings_of_one_item_are_separate_samples_of_that_item(tmp_path):
    uri = write_dataset(tmp_path / "ds", eval_rows(2, 1, phrasings=2))
    rows, _ = read_eval_rows(uri)
    ids = [r["id"] for r in mc_rows(rows)]
    assert ids == ["item-000#0", "item-000#1", "item-001#0", "item-001#1", "item-002#0", "item-002#1"]


def test_bad_eval_rows_are_errors_naming_the_row(tmp_path):
    rows = eval_rows(2, 0)
    rows[1]["label"] = (rows[1]["label"] + 1) % 4
    uri = write_dataset(tmp_path / "bad", rows)
    with pytest.raises(EvaluationError, match="part-00000.parquet:2: label .* does not point at the answer"):
        read_eval_rows(uri)
    with pytest.raises(EvaluationError, match="has no evaluation split"):
        read_eval_rows(str(tmp_path / "nowhere"))
    rows = eval_rows(1, 0)
    rows[0]["slice"] = "old"
    with pytest.raises(EvaluationError, match="slice 'old' is not one of new, retained"):
        read_eval_rows(write_dataset(tmp_path / "bad2", rows))


def test_domain_tasks_need_a_dataset(tiny_base, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("LLMOPS_DATA_ROOT", str(tmp_path / "empty-root"))
    code = main(["evaluate", "--model", str(tiny_base), "--output", str(tmp_path / "o"), "--no-mlflow"])
    assert code == 2
    assert "give --dataset <dataset_uri>" in capsys.readouterr().err


def test_unknown_domain_task_is_an_error(tiny_base, tmp_path, capsys, dataset_uri):
    code = main(["evaluate", "--model", str(tiny_base), "--tasks", "corpus_nope", "--dataset", dataset_uri, "--output", str(tmp_path / "o"), "--no-mlflow"])
    assert code == 2
    assert "unknown lm-eval task(s) corpus_nope" in capsys.readouterr().err


def test_negative_limit_is_an_error(tiny_base, tmp_path, capsys):
    assert main(["evaluate", "--model", str(tiny_base), "--limit", "-1", "--output", str(tmp_path / "o"), "--no-mlflow"]) == 2
    assert "--limit must be a number of samples per task (0: all), got -1" in capsys.readouterr().err


def test_missing_model_fails_or_skips(tmp_path, mlflow_settings, capsys, dataset_uri):
    args = ["evaluate", "--model", "models:/nobody@champion", "--dataset", dataset_uri, "--output", str(tmp_path / "o")]
    assert main(args) == 2
    assert "does not exist" in capsys.readouterr().err
    assert main([*args, "--skip-if-missing"]) == 3
    assert "skipped" in capsys.readouterr().out
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_evaluate_adapter_keeps_per_sample_scores_and_logs_to_mlflow(
    tiny_base, tiny_adapter, tmp_path, mlflow_settings, capsys, monkeypatch
):
    from mlflow import MlflowClient

    from llmops.evaluation import harness

    out = tmp_path / "eval"
    summary_file = tmp_path / "summary.json"
    # The dataset is the latest version under the dataset_root setting (no --dataset).
    dataset_uri = write_dataset(tmp_path / "root" / "datasets", eval_rows(3, 2))
    monkeypatch.setenv("LLMOPS_DATA_ROOT", str(tmp_path / "root"))
    args = ["evaluate", "--model", str(tiny_adapter), "--output", str(out), "--batch-size", "4"]
    assert main([*args, "--dag-id", "llmops_finetune", "--summary-json", str(summary_file)]) == 0

    results = json.loads((out / "results.json").read_text())
    assert results["model"]["kind"] == "adapter"
    assert results["model"]["base_model"] == str(tiny_base)
    assert set(results["tasks"]) == set(DOMAIN_TASKS)
    assert results["dataset"] == dataset_uri
    rows, _ = read_eval_rows(dataset_uri)
    expected_ids = [r["id"] for r in mc_rows(rows)]
    for task, metrics in (("corpus_mc", ("acc,none", "acc_norm,none")), ("corpus_qa", ("rougeL,none", "exact_match,none"))):
        t = results["tasks"][task]
        assert t["n"] == 5
        assert t["data_sha256"] == write_task_data(tmp_path / "d", dataset_uri)[task]["sha256"]
        assert t["dataset_uri"] == dataset_uri
        assert {s: v["n"] for s, v in t["slices"].items()} == {"new": 3, "retained": 2}
        records = [json.loads(line) for line in (out / t["samples_file"]).read_text().splitlines()]
        assert [r["sample_id"] for r in records] == expected_ids
        for key in metrics:
            value = t["metrics"][key]["value"]
            assert 0.0 <= value <= 1.0
            assert t["metrics"][key]["stderr"] is not None
            per_sample = [r["scores"][key] for r in records]
            assert value == pytest.approx(sum(per_sample) / len(per_sample))
            new = [r["scores"][key] for r in records if r["slice"] == "new"]
            assert t["slices"]["new"]["metrics"][key]["value"] == pytest.approx(sum(new) / len(new))
        assert [r["item_id"] for r in records] == [r["item_id"] for r in mc_rows(rows)]
        if task == "corpus_qa":
            # lm-eval's own sample logging is kept: the generation and the prompt it answered.
            assert records[0]["arguments"][0][0] == mc_rows(rows)[0]["prompt"]
            assert isinstance(records[0]["filtered_resps"][0], str)

    summary = json.loads(summary_file.read_text())
    run = MlflowClient(mlflow_settings.mlflow_tracking, registry_uri=mlflow_settings.mlflow_tracking).get_run(summary["mlflow_run_id"])
    assert run.data.metrics["corpus_mc.acc"] == pytest.approx(results["tasks"]["corpus_mc"]["metrics"]["acc,none"]["value"])
    assert "corpus_mc.acc_stderr" in run.data.metrics
    new_acc = results["tasks"]["corpus_mc"]["slices"]["new"]["metrics"]["acc,none"]["value"]
    assert run.data.metrics["corpus_mc.new.acc"] == pytest.approx(new_acc)
    assert summary["slices"]["corpus_mc"]["new"]["n"] == 3
    assert run.data.tags["llmops.airflow.dag_id"] == "llmops_finetune"
    artifacts = {f.path for f in MlflowClient(mlflow_settings.mlflow_tracking, registry_uri=mlflow_settings.mlflow_tracking).list_artifacts(run.info.run_id, "evaluation/samples")}
    assert artifacts == {"evaluation/samples/corpus_mc.jsonl", "evaluation/samples/corpus_qa.jsonl"}
    # A retried task logs into the same run (found by its output folder).
    assert harness._log_to_mlflow(str(out), out, results, {}, mlflow_settings) == (run.info.run_id, run.info.experiment_id)
    assert summary["mlflow_experiment_id"] == run.info.experiment_id

    # Two evaluations of one model never pass each other when the policy requires a gain.
    policy = tmp_path / "policy.yaml"
    policy.write_text("metrics:\n  - {task: corpus_mc, metric: acc}\n  - {task: corpus_qa, metric: rougeL, slice: new}\n")
    capsys.readouterr()
    code = main(["gate", "--candidate", str(out), "--baseline", str(out), "--policy", str(policy), "--report", str(tmp_path / "g.json")])
    assert code == 3
    assert "not significant" in capsys.readouterr().out
