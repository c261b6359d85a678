"""The lifecycle DAG: Params with bounds, a run-keyed checkpoint location, and real dag.test() runs in
local mode (tiny model, a few steps, a dataset version built from the sample corpus): first through
promotion and deployment; then the same dataset again, skipped as "no new data"; then, forced, a rejection
that skips deployment."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import jinja2
import pytest

from llmops.training.inputs import run_key
from tests.conftest import task_states

LIFECYCLE = [
    "check_trigger", "resolve_inputs", "train", "evaluate_candidate", "evaluate_champion", "gate",
    "register", "approve", "choose_rollout", "keep_champion", "promote", "render_manifests", "smoke_test",
    "canary_verify", "deploy",
]


@pytest.fixture(scope="module")
def tiny_inputs(data_root):
    from llmops.dataset.build import build_dataset
    from llmops.dataset.generators import make_generator
    from llmops.dev.base_model import build_base_model
    from tests.llmops.dataset.conftest import write_corpus, write_processed

    # Under the data root: the local deployment config serves weights from a PVC mirroring it.
    root = Path(data_root) / "finetune-dag-test"
    processed = write_processed(write_corpus(root / "corpus"), root / "processed")
    summary = build_dataset(processed, str(root / "datasets"), make_generator("extractive"))
    return build_base_model(root / "tiny-llama", pretrain_steps=0), summary["dataset_uri"]


def test_params_and_wiring(dagbag):
    dag = dagbag.get_dag("llmops_finetune")
    assert dag is not None, dagbag.import_errors
    assert [t.task_id for t in dag.topological_sort()] == LIFECYCLE
    for name in ("base_model", "dataset", "lora_r", "lora_alpha", "lora_dropout", "target_modules", "learning_rate",
                 "max_steps", "epochs", "batch_size", "max_seq_len", "gpus", "eval_limit", "gate_policy",
                 "deploy_config", "deploy_apply", "approval"):
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
    # A gate rejection (skip) must skip promotion and everything after it.
    assert "gate" in dag.get_task("promote").upstream_task_ids
    # The human approval sits between register and promote, and is skipped with them on a rejection.
    assert dag.get_task("approve").upstream_task_ids == {"gate", "register"}
    assert "approve" in dag.get_task("choose_rollout").upstream_task_ids
    assert dag.params["approval"] == "none"
    assert dag.get_task("check_trigger").downstream_task_ids == {"resolve_inputs"}
    # The rollout is decided after approval: promote (no canary) or keep_champion (canary: the alias stays),
    # and the manifests are rendered after whichever ran; nothing after a rejection (both skipped).
    assert dag.get_task("choose_rollout").upstream_task_ids == {"approve"}
    assert dag.get_task("choose_rollout").downstream_task_ids == {"promote", "keep_champion"}
    assert "choose_rollout" in dag.get_task("promote").upstream_task_ids
    render = dag.get_task("render_manifests")
    assert render.upstream_task_ids == {"promote", "keep_champion"}
    assert render.trigger_rule == "none_failed_min_one_success"
    args = render.arguments
    assert args[args.index("--model-uri") + 1].startswith("models:/{{ ti.xcom_pull(task_ids='register')")
    flag = jinja2.Template(args[args.index("--set") + 1])
    promoted = SimpleNamespace(xcom_pull=lambda task_ids: {"version": "2"} if task_ids == "promote" else None)
    skipped = SimpleNamespace(xcom_pull=lambda task_ids: None)
    assert flag.render(ti=promoted) == "canary.enabled=false" and flag.render(ti=skipped) == "canary.enabled=true"
    assert dag.get_task("deploy").upstream_task_ids == {"canary_verify"}


class _TI:
    def __init__(self, registered: dict):
        self.registered, self.pushed = registered, {}

    def xcom_pull(self, task_ids: str):
        assert task_ids == "register"
        return self.registered

    def xcom_push(self, key: str, value):
        self.pushed[key] = value


@pytest.mark.parametrize("canary", [False, True])
def test_choose_rollout_follows_the_deploy_config(dagbag, tmp_path, canary):
    """The branch task as the DAG builds it, its templates rendered (a fake TaskInstance at the XCom
    boundary): without a canary it follows promote; with one (a stable URI configured, so no registry is
    asked) keep_champion, and the render step gets the registered version and the canary flag from its XCom."""
    dag = dagbag.get_dag("llmops_finetune")
    config = tmp_path / "deploy.yaml"
    config.write_text(f"route:\n  gateway: gw\ncanary:\n  enabled: {str(canary).lower()}\n  stable_model_uri: models:/m/1\n")
    ti = _TI({"registered_model_name": "m", "version": "2"})
    task = copy.copy(dag.get_task("choose_rollout"))
    context = {"params": {"deploy_config": str(config)}, "ti": ti}
    task.render_template_fields(context)
    assert (task.deploy_config, task.model_name, task.version) == (str(config), "m", "2")
    followed = task.choose_branch(context)
    assert followed == ("keep_champion" if canary else "promote")
    decided = ti.pushed["rollout"]
    assert decided["canary"] is canary and decided["model_uri"] == "models:/m/2"
    assert decided["stable"] == ("models:/m/1" if canary else None)


@pytest.mark.slow
def test_lifecycle_promotes_then_a_no_better_candidate_skips_deployment(run_dag, tiny_inputs, data_root, tmp_path):
    model, dataset = tiny_inputs
    lenient = tmp_path / "floors-only.yaml"
    lenient.write_text(
        "confidence: 0.95\nallow_equal: true\nmetrics:\n"
        "  - {task: corpus_mc, metric: acc, floor: 0.0, max_regression: 0.0}\n"
    )
    conf = {"base_model": str(model), "dataset": str(dataset), "max_steps": 3, "batch_size": 4, "lora_r": 4,
            "target_modules": ["q_proj", "v_proj"], "eval_limit": 12, "gate_policy": str(lenient)}

    # First run: no champion yet, so the floors alone decide; the version is promoted and deployed.
    dr = run_dag("llmops_finetune", conf=conf)
    states = task_states(dr)
    # The local example deploys without a canary: promote runs, keep_champion is skipped by the branch.
    assert states == {**dict.fromkeys(LIFECYCLE, "success"), "evaluate_champion": "skipped",
                      "keep_champion": "skipped"}, states
    ti = {t.task_id: t for t in dr.get_task_instances()}
    summary = ti["train"].xcom_pull(task_ids="train")
    assert summary["steps"] == 3 and summary["base_model"] == str(model) and summary["dataset"] == dataset
    out = Path(data_root) / "runs" / "llmops_finetune" / run_key(dr.run_id) / "train"
    assert summary["adapter_dir"] == str(out / "adapter")
    assert json.loads((out / "adapter" / "adapter_config.json").read_text())["r"] == 4
    assert (out / "checkpoints" / "step-000003" / "COMPLETE.json").exists()
    promoted = ti["promote"].xcom_pull(task_ids="promote")
    rendered = ti["render_manifests"].xcom_pull(task_ids="render_manifests")
    assert rendered["version"] == promoted["version"]
    assert Path(rendered["manifests_uri"], "deployment.yaml").exists()
    assert ti["smoke_test"].xcom_pull(task_ids="smoke_test")["generate_s"] > 0
    registered = ti["register"].xcom_pull(task_ids="register")
    assert registered["version"] == promoted["version"]
    evaluated = json.loads((Path(data_root) / "runs" / "llmops_finetune" / run_key(dr.run_id) / "eval" / "candidate"
                            / "results.json").read_text())
    assert evaluated["dataset"] == dataset and set(evaluated["tasks"]["corpus_mc"]["slices"]) == {"new", "retained"}

    # Second run, same dataset and recipe: nothing to learn, so it is skipped and recorded in the ledger.
    dr = run_dag("llmops_finetune", conf=conf)
    states = task_states(dr)
    assert states["check_trigger"] == "success" and set(states.values()) - {"success"} == {"skipped"}, states
    assert all(states[t] == "skipped" for t in LIFECYCLE[1:]), states
    decided = next(t for t in dr.get_task_instances() if t.task_id == "check_trigger").xcom_pull(task_ids="check_trigger")
    assert decided["decision"] == "skipped"
    assert decided["reason"].startswith(f"no new data since v{promoted['version']}")
    ledger = [json.loads(x) for x in (Path(data_root) / "state" / "triggers.jsonl").read_text().splitlines()]
    assert ledger[-1]["run_id"] == dr.run_id and ledger[-1]["decision"] == "skipped"

    # Third run, forced, strict policy (a significant gain on `new` is required): the same recipe is not
    # better than the champion, so the gate rejects and nothing is promoted or deployed.
    strict = {**conf, "gate_policy": "examples/local/gate.yaml", "force": True}
    dr = run_dag("llmops_finetune", conf=strict)
    states = task_states(dr)
    assert states["evaluate_champion"] == "success" and states["register"] == "success", states
    assert {states[t] for t in ("gate", "choose_rollout", "promote", "keep_champion", "render_manifests", "smoke_test",
                                "deploy")} == {"skipped"}, states
    # The rejecting gate's report stays reachable (the plugin's "Report" link reads this XCom).
    gate = next(t for t in dr.get_task_instances() if t.task_id == "gate")
    rejected = gate.xcom_pull(task_ids="gate", key="skipped_summary")
    assert rejected["report_uri"].endswith("gate.json") and gate.xcom_pull(task_ids="gate") is None
