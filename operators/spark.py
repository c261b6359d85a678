"""The Spark step: `llmops preprocess` as a local `local[*]` run or as a SparkApplication.

    spark_operator(task_id="preprocess", arguments=["--input", "{{ params.input_uri }}", ...])

- mode `local`: `LocalStepOperator` runs `llmops preprocess <arguments>` (Spark `local[*]`) in a
  subprocess and returns its summary JSON as XCom;
- mode `kubernetes`: `SparkApplicationOperator` (operators/spark_kubernetes.py, a
  `SparkKubernetesOperator`) submits the SparkApplication rendered from `k8s_templates/spark/` that runs
  `spark_jobs/preprocess.py <arguments>`, and returns the summary the job wrote to object storage.

Only the chosen module is imported: DAG files in local mode never import the cncf.kubernetes provider.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from llmops.settings import Settings
from llmops_operators.base import airflow_settings

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator

STEP = "preprocess"


def spark_operator(
    *,
    task_id: str,
    arguments: Sequence[str] = (),
    settings: Settings | None = None,
    summary: bool = True,
    **kwargs: Any,
) -> BaseOperator:
    """The operator that runs the preprocessing Spark job where the settings' mode says.

    :param arguments: `llmops preprocess` options, templated (`{{ params.chunk_size }}`).
    :param summary: return the job's summary JSON as the task's XCom.
    """
    settings = settings or airflow_settings()
    if settings.mode == "kubernetes":
        from llmops_operators.spark_kubernetes import SparkApplicationOperator

        return SparkApplicationOperator(
            task_id=task_id, arguments=list(arguments), settings=settings, summary=summary, **kwargs
        )
    from llmops_operators.local import LocalStepOperator

    return LocalStepOperator(
        task_id=task_id, step=STEP, arguments=list(arguments), settings=settings, summary=summary, **kwargs
    )
