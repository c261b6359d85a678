"""The evaluation-gate tasks of the fine-tune DAG: wiring, and one real first run under dag.test()."""

from __future__ import annotations

import json

import pendulum
import pytest
from airflow.sdk import DAG

from llmops.settings import load_settings
from llmops_operators.evaluation import gate_tasks
from llmops_operators.local import LocalStepOperator
from tests.llmops.evaluation.conftest import mlflow_settings, mlflow_store, tiny_adapter, tiny_base  # noqa: F401

START = pendulum.datetime(2026, 1, 1, tz="UTC")


def _build(dag_id: str, **kwargs):
    with DAG(dag_id, schedule=None, start_date=START) as dag:
        tasks = gate_tasks(settings=kwargs.pop("settings", load_settings()), **kwargs)
    return dag, tasks


def test_wiring_trigger_rules_and_arguments():
    dag, t = _build("llmops_test_gate_wiring", eval_root="/data/eval/{{ run_id }}", policy="gate.yaml", limit=20,
                    training_config="train.yaml", dataset="{{ ds_uri }}", training_params_sha256="{{ sha }}")
    assert set(t) == {"evaluate_candidate", "evaluate_champion", "gate", "register", "promote"}
    assert all(isinstance(op, LocalStepOperator) for op in t.values())
    assert t["gate"].upstream_task_ids == {"evaluate_candidate", "evaluate_champion"}
    assert t["register"].upstream_task_ids == {"gate"}
    assert t["promote"].upstream_task_ids == {"gate", "register"}
    assert t["gate"].trigger_rule == "none_failed"
    assert t["register"].trigger_rule == "none_failed"
    assert t["promote"].trigger_rule == "all_success"
    assert t["evaluate_champion"].skip_on_exit_code == (3,)
    assert t["gate"].skip_on_exit_code == (3,)
    assert t["evaluate_candidate"].skip_on_exit_code == ()
    cand = t["evaluate_candidate"].arguments
    assert cand[:4] == ["--model", "{{ ti.xcom_pull(task_ids='train')['adapter_dir'] }}", "--output", "/data/eval/{{ run_id }}/candidate"]
    assert cand[cand.index("--limit"):cand.index("--limit") + 2] == ["--limit", "20"]
    champ = t["evaluate_champion"].arguments
    assert champ[1] == "models:/llmops-assistant@champion" and "--skip-if-missing" in champ
    # Both models are evaluated on the candidate's dataset (the same items, paired by id).
    for args in (cand, champ):
        assert args[args.index("--dataset") + 1] == "{{ ds_uri }}"
    reg = t["register"].arguments
    assert reg[reg.index("--training-params-sha256") + 1] == "{{ sha }}"
    assert "/data/eval/{{ run_id }}/gate.json" in t["register"].arguments
    assert "train.yaml" in t["register"].arguments
    _, only_passed = _build("llmops_test_gate_wiring2", eval_root="/e", policy="p.yaml", register_rejected=False)
    assert only_passed["register"].trigger_rule == "all_success"


def test_kubernetes_mode_runs_evaluations_as_gpu_pods():
    from llmops_operators.kubernetes import KubernetesStepOperator

    settings = load_settings(mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000")
    _, t = _build("llmops_test_gate_k8s", eval_root="s3://b/eval/{{ run_id }}", policy="/etc/llmops/gate.yaml",
                  settings=settings, gpus=1)
    assert isinstance(t["evaluate_candidate"], KubernetesStepOperator)
    assert t["evaluate_candidate"].gpus == 1 and t["gate"].gpus == 0
    assert t["gate"].arguments[:2] == ["gate", "--candidate"]


def _run_in_db(dag):
    """dag.test() runs only DAGs found in a bundle: register this in-memory one as the dag-processor would."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.collection import update_dag_parsing_results_in_db
    from airflow.serialization.serialized_objects import LazyDeserializedDAG
    from airflow.utils.session import create_session

    DagBundlesManager().sync_bundles_to_db()
    with create_session() as session:
        update_dag_parsing_results_in_db(
            "dags-folder", None, [LazyDeserializedDAG.from_dag(dag)], {}, None, set(), session=session
        )
    return dag.test()


@pytest.mark.slow
def test_first_run_without_champion_registers_and_promotes(
    airflow_db, tiny_base, tiny_adapter, mlflow_settings, tmp_path  # noqa: F811
):
    import mlflow
    from airflow.sdk import task
    from mlflow import MlflowClient

    from llmops.contracts import TrainSummary
    from llmops.registry import ensure_experiment
    from tests.conftest import task_states

    mlflow.set_tracking_uri(mlflow_settings.mlflow_tracking)
    with mlflow.start_run(experiment_id=ensure_experiment(mlflow_settings), run_name="train") as run:
        mlflow.log_param("lr", 0.001)
    from tests.llmops.evaluation.conftest import eval_rows, write_dataset

    dataset = write_dataset(tmp_path / "datasets", eval_rows(2, 1), dataset_hash="ds1")
    # The train step's whole summary (`llmops register` reads it through its contract, TrainSummary).
    summary = TrainSummary(
        mlflow_run_id=run.info.run_id, steps=1, total_steps=1, steps_this_attempt=1, tokens=8, tokens_per_s=8.0,
        train_seconds=1.0, checkpoint_seconds=0.0, lease_verify_seconds=None, train_loss=None, eval_loss=None,
        checkpoints_written=[], checkpoint_dir=str(tmp_path / "ckpt"), resumed_from=None,
        adapter_dir=str(tiny_adapter), output_dir=str(tmp_path / "train"), base_model=str(tiny_base),
        dataset=dataset, dataset_hash="h1", rows=1, bad_rows=0, bad_reasons={},
    ).to_json()
    policy = tmp_path / "policy.yaml"
    policy.write_text("metrics:\n  - {task: corpus_mc, metric: acc}\n")  # no floor: a first model passes
    settings = mlflow_settings.with_overrides(registered_model_name="flow-model")

    with DAG("llmops_test_gate_flow", schedule=None, start_date=START) as dag:
        @task(task_id="train")
        def train():
            return summary

        t = gate_tasks(eval_root=str(tmp_path / "eval" / "{{ run_id }}"), policy=str(policy), limit=2,
                       tasks="corpus_mc", dataset=dataset, training_params_sha256="p1", settings=settings)
        train() >> [t["evaluate_candidate"], t["evaluate_champion"]]

    dr = _run_in_db(dag)
    assert task_states(dr) == {
        "train": "success",
        "evaluate_candidate": "success",
        "evaluate_champion": "skipped",  # no champion yet
        "gate": "success",  # floors only
        "register": "success",
        "promote": "success",
    }
    client = MlflowClient(mlflow_settings.mlflow_tracking, registry_uri=mlflow_settings.mlflow_tracking)
    champion = client.get_model_version_by_alias("flow-model", "champion")
    assert champion.tags["llmops.training_run_id"] == run.info.run_id
    assert champion.tags["llmops.airflow.dag_id"] == "llmops_test_gate_flow"
    assert champion.tags["llmops.airflow.run_id"] == dr.run_id
    # Lineage: the dataset version (hash, snapshot), the training files' sha256 and the training parameters.
    assert champion.tags["llmops.dataset_hash"] == "ds1"
    assert champion.tags["llmops.dataset.snapshot_id"] == "snap-1"
    assert champion.tags["llmops.training_data_sha256"] == "h1"
    assert champion.tags["llmops.training_params_sha256"] == "p1"
    report = json.loads(next((tmp_path / "eval").glob("*/gate.json")).read_text())
    assert report["baseline"] is None and report["passed"] is True
