"""A one-task DAG for the approval test: the fine-tune DAG's `approve` task on a given gate report and
model version (from `dag_run.conf`), with its `approval` Param."""

from __future__ import annotations

import pendulum
from airflow.sdk import DAG, Param

from llmops_operators.approval import PromotionApprovalOperator

with DAG(
    dag_id="llmops_approval_test",
    schedule=None,
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    params={"approval": Param("required", type="string", enum=["none", "required"])},
) as dag:
    PromotionApprovalOperator(
        task_id="approve",
        subject="Promote {{ dag_run.conf['model_name'] }} version {{ dag_run.conf['version'] }}?",
        gate_report="{{ dag_run.conf['gate_report'] }}",
        version="{{ dag_run.conf['version'] }}",
        model_name="llmops-ui-test",
    )
