"""Mode `kubernetes` of the Spark step: a SparkApplication submitted by the cncf.kubernetes provider.

The SparkApplication comes from `llmops.rag.sparkapp` (template + values + settings); the job writes its
summary JSON to `<state>/spark-summaries/...` in object storage (a Spark driver pod has no XCom sidecar),
and this operator returns that file as the task's XCom, like the local mode's subprocess does.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

from llmops import storage
from llmops.settings import Settings
from llmops_operators.base import airflow_settings

SUMMARY_NAME = "{{ dag.dag_id }}/{{ run_id | replace(':', '') | replace('+', '') }}/{{ ti.task_id }}-{{ ti.try_number }}.json"
"""Templated path of a run's summary under `<state>/spark-summaries/`: unique per try, readable by the worker."""


class SparkApplicationOperator(SparkKubernetesOperator):
    """Submit the preprocessing SparkApplication, wait for it, return the job's summary JSON."""

    template_fields: Sequence[str] = (*SparkKubernetesOperator.template_fields, "summary_uri")
    # The spec is passed as a dict, never as a file: without this, any argument ending in .json or
    # .yaml (the summary path) would be loaded as a Jinja template file.
    template_ext: Sequence[str] = ()

    def __init__(
        self,
        *,
        arguments: Sequence[str] = (),
        settings: Settings | None = None,
        summary: bool = True,
        name: str = "llmops-preprocess",
        **kwargs: Any,
    ) -> None:
        from llmops.rag.sparkapp import render_spark_application

        settings = settings or airflow_settings()
        self.summary_uri = storage.join(settings.state, "spark-summaries", SUMMARY_NAME) if summary else None
        words = [str(a) for a in arguments]
        if self.summary_uri:
            words += ["--summary-json", self.summary_uri]
        # Validated after templating, in execute(): `{{ params.* }}` are not values yet.
        spec = render_spark_application(settings, words, name=name, validate=False)
        defaults: dict[str, Any] = {
            "name": name,
            "namespace": settings.namespace,
            "kubernetes_conn_id": settings.kubernetes_conn_id,
            "startup_timeout_seconds": settings.startup_timeout_s,
            "get_logs": True,
            "log_events_on_failure": True,
            "reattach_on_restart": True,
            "delete_on_termination": True,
            # The summary is read from storage after the driver finishes, which the deferrable path skips.
            "deferrable": False,
        }
        defaults.update(kwargs)
        super().__init__(template_spec=spec, **defaults)
        self.settings = settings
        # The parent defaults to no XCom; this operator's return value (the summary) is its XCom.
        self.do_xcom_push = summary

    def execute(self, context: Any) -> Any:
        from llmops.k8s.validate import require_valid

        require_valid([self.template_spec], f"SparkApplication of task {self.task_id}")
        # The driver pod has no XCom sidecar: run the parent without its sidecar extraction, then return
        # the summary the job wrote, which Airflow pushes as this task's XCom.
        push = self.do_xcom_push
        self.do_xcom_push = False
        try:
            super().execute(context)
        finally:
            self.do_xcom_push = push
        if not self.summary_uri:
            return None
        return json.loads(storage.read_text(self.summary_uri))
