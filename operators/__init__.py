"""Thin Airflow adapters around the `llmops` step commands.

A DAG asks for a step (`step_operator(task_id="train", step="train", arguments=[...])`); the mode in the
settings decides where the same command runs:

- `local`: `LocalStepOperator`, a subprocess on the worker (operators/local.py);
- `kubernetes`: `KubernetesStepOperator`, a KubernetesPodOperator pod (operators/kubernetes.py).

Only the chosen module is imported, so DAG files in local mode never import the Kubernetes provider.
"""

from llmops_operators.base import airflow_settings, step_operator

__all__ = ["airflow_settings", "step_operator"]
