"""`llmops train` under torchrun, and the cheap input checks that run before any heavy work."""

from __future__ import annotations

import sys

import pytest

from llmops.cli import build_parser
from llmops.exceptions import ConfigError, InputDataError, ModelLoadError
from llmops.training.inputs import base_model_kind, check_base_model, check_inputs, run_locations
from llmops.training.launch import gpus_from_env, torchrun_command, train_arguments


def _args(*argv):
    return build_parser().parse_args(["train", *argv])


def test_torchrun_command_for_more_than_one_gpu():
    args = _args("--config", "c.yaml", "--set", "max_steps=5", "--set", "lora_r=8", "--output-dir", "s3://b/run",
                 "--checkpoint-dir", "/checkpoints/d/r", "--summary-json", "/airflow/xcom/return.json")
    cmd = torchrun_command(train_arguments(args), gpus=4, environ={})
    assert cmd[:5] == [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=4"]
    assert cmd[5:8] == ["-m", "llmops", "train"]
    assert cmd[8:] == ["--config", "c.yaml", "--set", "max_steps=5", "--set", "lora_r=8", "--output-dir", "s3://b/run",
                       "--resume", "auto", "--checkpoint-dir", "/checkpoints/d/r",
                       "--summary-json", "/airflow/xcom/return.json"]
    # The workers parse to the same arguments: nothing is lost or added by the round trip.
    again = _args(*cmd[8:])
    assert vars(again) | {"handler": None} == vars(args) | {"handler": None}


@pytest.mark.parametrize(
    ("gpus", "environ"),
    [(0, {}), (1, {}), (2, {"LOCAL_RANK": "0"}), (8, {"TORCHELASTIC_RUN_ID": "x"})],
)
def test_no_torchrun_for_one_gpu_or_inside_a_worker(gpus, environ):
    assert torchrun_command(["--output-dir", "x"], gpus, environ) is None


def test_gpus_from_env():
    assert gpus_from_env({}) == 0
    assert gpus_from_env({"LLMOPS_GPUS": "2"}) == 2
    with pytest.raises(ConfigError, match="gpus = .two.: .*; set LLMOPS_GPUS"):
        gpus_from_env({"LLMOPS_GPUS": "two"})


def test_base_model_checks(tmp_path):
    assert base_model_kind("meta-llama/Llama-3.2-1B") == "hub"
    assert base_model_kind("s3://models/llama") == "s3"
    with pytest.raises(ModelLoadError, match="does not exist: build the tiny local model"):
        check_base_model(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="has no config.json"):
        check_base_model(str(tmp_path / "empty"))
    (tmp_path / "empty" / "config.json").write_text("{not json")
    with pytest.raises(ModelLoadError, match="not valid JSON"):
        check_base_model(str(tmp_path / "empty"))
    with pytest.raises(ModelLoadError, match="neither an existing folder"):
        base_model_kind("not a model!")


def test_missing_inputs_fail_before_anything_heavy(tmp_path, capsys):
    """`llmops train` with a missing base model exits 2 with the fix, without importing torch."""
    import subprocess

    code = (
        "import sys; from llmops.cli import main; rc = main(sys.argv[1:]); "
        "assert 'torch' not in sys.modules, 'torch imported'; sys.exit(rc)"
    )
    data = tmp_path / "rows.jsonl"
    data.write_text('{"prompt": "a", "completion": "b"}\n')
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", "--set", f"base_model={tmp_path / 'missing'}", "--set", f"dataset={data}",
         "--output-dir", str(tmp_path / "out")],
        capture_output=True, text=True, check=False,
    )
    assert proc.returncode == 2, proc.stderr
    assert "base model folder" in proc.stderr and "llmops base-model build" in proc.stderr
    with pytest.raises(InputDataError, match="does not exist|no .jsonl"):
        check_inputs("meta-llama/Llama-3.2-1B", str(tmp_path / "nodata"))


def test_run_locations_keyed_by_dag_and_run():
    from llmops.settings import load_settings

    local = run_locations(load_settings(environ={}, data_root="/data"), "llmops_finetune", "manual-1")
    assert local == {"output_dir": "/data/runs/llmops_finetune/manual-1/train",
                     "checkpoint_dir": "/data/runs/llmops_finetune/manual-1/train/checkpoints"}
    pvc = run_locations(load_settings(environ={}, mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000",
                                      checkpoint_pvc="ckpt"), "d", "r")
    assert pvc == {"output_dir": "s3://b/llmops/runs/d/r/train", "checkpoint_dir": "/checkpoints/d/r"}
    s3 = run_locations(load_settings(environ={}, mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000"), "d", "r")
    assert s3["checkpoint_dir"] == "s3://b/llmops/runs/d/r/train/checkpoints"
