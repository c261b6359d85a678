"""The fine-tune DAG: Params with bounds, a run-keyed checkpoint location, and a real dag.test() in
local mode (tiny model, a few steps)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import task_states


@pytest.fixture(scope="module")
def tiny_inputs(tmp_path_factory):
    from llmops.sample_data import write_sample_data
    from llmops.training.base_model import build_base_model

    root = tmp_path_factory.mktemp("finetune-dag")
    write_sample_data(root / "sample")
    return build_base_model(root / "tiny-llama", pretrain_steps=0), root / "sample" / "finetune.jsonl"


def test_params_and_wiring(dagbag):
    dag = dagbag.get_dag("llmops_finetune")
    assert dag is not None, dagbag.import_errors
    assert [t.task_id for t in dag.topological_sort()] == ["resolve_inputs", "train"]
    for name in ("base_model", "dataset", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate",
                 "max_steps", "epochs", "batch_size", "max_seq_len", "gpus"):
        param = dag.params.get_param(name)
        schema = param.schema
        assert schema.get("title") and (schema.get("description") or param.description), name
        if schema["type"] in ("integer", "number"):
            assert "minimum" in schema and "maximum" in schema, name
    train = dag.get_task("train")
    args = train.arguments
    assert args[args.index("--resume") + 1] == "auto"
    out = args[args.index("--output-dir") + 1]
    assert "{{ dag.dag_id }}" in out and "run_id" in out and out.endswith("/train")


@pytest.mark.slow
def test_dag_trains_in_local_mode(run_dag, tiny_inputs, data_root):
    model, dataset = tiny_inputs
    dr = run_dag(
        "llmops_finetune",
        conf={"base_model": str(model), "dataset": str(dataset), "max_steps": 3, "batch_size": 4, "lora_r": 4,
              "target_modules": ["q_proj", "v_proj"]},
    )
    states = task_states(dr)
    assert states == {"resolve_inputs": "success", "train": "success"}, states
    ti = next(t for t in dr.get_task_instances() if t.task_id == "train")
    summary = ti.xcom_pull(task_ids="train")
    assert summary["steps"] == 3 and summary["base_model"] == str(model)
    run_key = dr.run_id.replace(":", "-").replace("+", "-")
    out = Path(data_root) / "runs" / "llmops_finetune" / run_key / "train"
    assert summary["adapter_dir"] == str(out / "adapter")
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
    assert (out / "checkpoints" / "step-000003" / "COMPLETE.json").exists()
    assert summary["mlflow_run_id"]
