"""Real CPU training runs of the tiny model: checkpoints, SIGTERM/SIGKILL and exact resume, MLflow."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from llmops.cli import main
from llmops.dev.bench.training import preemption_trial, read_step_log, train_command

# Dropout on: resuming must restore the RNG too, not only weights and optimizer.
OVERRIDES = ["max_steps=8", "save_every=3", "batch_size=4", "threads=1", "seed=3", "lora_dropout=0.1",
             "eval_fraction=0.05", "log_every=2"]


def test_resume_true_with_nothing_to_resume_fails_loudly(tmp_path, tiny_model, sample_dir, capsys):
    rc = main(["train", "--set", f"base_model={tiny_model}", "--set", f"dataset={sample_dir / 'finetune.jsonl'}",
               "--output-dir", str(tmp_path / "run"), "--resume", "true", "--no-tracking"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "--resume true but" in err and "holds no checkpoint" in err and "--resume auto" in err


@pytest.mark.slow
def test_sigterm_and_sigkill_resume_to_the_identical_adapter(tmp_path, tiny_model, sample_dir):
    import subprocess

    from mlflow.tracking import MlflowClient

    dataset = str(sample_dir / "finetune.jsonl")
    mlflow_uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LLMOPS_MLFLOW_TRACKING_URI": mlflow_uri,
           "LLMOPS_MLFLOW_ARTIFACTS_URI": str(tmp_path / "artifacts")}
    ref_cmd = train_command(str(tiny_model), dataset, tmp_path / "reference", OVERRIDES, resume="false",
                            tracking=False)
    ref = subprocess.run(ref_cmd, env=env, capture_output=True, text=True, check=False, timeout=600)
    assert ref.returncode == 0, ref.stderr[-3000:]

    # One run: SIGTERM at step 2 (the step in flight finishes and is checkpointed), resumed and
    # SIGKILLed at step 6 (steps after checkpoint 3 or 6 are redone), resumed to the end.
    result = preemption_trial(str(tiny_model), dataset, tmp_path / "run", OVERRIDES,
                              [(2, signal.SIGTERM), (6, signal.SIGKILL)], tmp_path / "reference" / "adapter", env)
    term, kill = result["kills"]
    assert term["exit_code"] == 143 and kill["exit_code"] == -signal.SIGKILL
    assert result["max_abs_diff"] <= 1e-6, result
    # After SIGTERM the next attempt starts right after the last finished step: none is trained twice.
    assert result["sigterm_retrained"] == [] and result["sigterm_handoffs"][0]["next_attempt_starts_at"] == (
        result["sigterm_handoffs"][0]["last_step"] + 1
    )
    assert result["distinct_steps"] == 8
    assert set(result["retrained_steps"]) <= set(range(kill["at_step"] - 3, kill["at_step"] + 2))

    out = tmp_path / "run"
    summary = json.loads((out / "train_summary.json").read_text())
    assert summary["steps"] == 8 and summary["resumed_from"].startswith(str(out / "checkpoints" / "step-"))
    assert summary["dataset_hash"] and summary["tokens"] > 0 and summary["eval_loss"] > 0
    assert summary["adapter_dir"] == str(out / "adapter")
    adapter_config = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == str(Path(tiny_model).resolve())
    # Last K=2 complete checkpoints kept, the final step among them.
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == ["step-000006", "step-000008"]

    # The resumed attempts continued the first attempt's MLflow run: one run, every step logged.
    client = MlflowClient(tracking_uri=mlflow_uri)
    run = client.get_run(summary["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert {m.step for m in client.get_metric_history(run.info.run_id, "train_loss")} == set(range(1, 9))
    assert run.data.params["lora_r"] and run.data.params["dataset_sha256"] == summary["dataset_hash"]
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"loss_curve.png", "train_config.json", "adapter"} <= artifacts
    runs = client.search_runs([run.info.experiment_id])
    assert len(runs) == 1
    assert [r["step"] for r in read_step_log(out)][-1] == 8


@pytest.mark.slow
def test_bad_rows_over_the_limit_fail_the_run(tmp_path, tiny_model, sample_dir, capsys):
    rows = (sample_dir / "finetune.jsonl").read_text().splitlines()[:40]
    rows += ['{"prompt": "", "completion": "x"}'] * 5
    data = tmp_path / "rows.jsonl"
    data.write_text("\n".join(rows) + "\n")
    rc = main(["train", "--set", f"base_model={tiny_model}", "--set", f"dataset={data}", "--set", "max_steps=1",
               "--output-dir", str(tmp_path / "run"), "--no-tracking"])
    assert rc == 2
    err = capsys.readouterr().err
    assert "5 of 45 rows" in err and "5 empty prompt or completion" in err


@pytest.mark.slow
@pytest.mark.s3
def test_s3_output_checkpoints_and_idempotent_retry(s3_bucket, tiny_model, sample_dir):
    """Outputs and checkpoints on S3; a retry of a finished run resumes at its end and trains nothing."""
    from llmops import storage
    from llmops.settings import load_settings
    from llmops.training.config import load_config
    from llmops.training.trainer import RunOptions, train

    out = f"s3://{s3_bucket}/runs/llmops_finetune/r1/train"
    cfg = load_config(None, [f"base_model={tiny_model}", f"dataset={sample_dir / 'finetune.jsonl'}", "max_steps=4",
                             "save_every=2", "batch_size=4", "threads=1", "lora_r=4", "target_modules=q_proj,v_proj"])
    first = train(cfg, RunOptions(output_dir=out, resume="auto", tracking=False), load_settings())
    assert first["steps_this_attempt"] == 4 and first["resumed_from"] is None
    assert storage.exists(f"{out}/adapter/adapter_model.safetensors")
    assert storage.exists(f"{out}/checkpoints/step-000004/COMPLETE.json")
    again = train(cfg, RunOptions(output_dir=out, resume="true", tracking=False), load_settings())
    assert again["steps_this_attempt"] == 0 and again["resumed_from"] == f"{out}/checkpoints/step-000004"
    assert again["steps"] == 4 and again["tokens"] == first["tokens"]
