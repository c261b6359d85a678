"""Mode `kubernetes` of the Spark step: a SparkApplication submitted by the cncf.kubernetes provider.

The SparkApplication comes from `llmops.rag.sparkapp` (template + values + settings); the job writes its
summary JSON to `<state>/spark-summaries/...` in object storage (a Spark driver pod has no XCom sidecar),
and this operator returns that file as the task's XCom, like the local mode's subprocess does, and puts
it on the task's asset events (as the step pods do).

Like the step pods, it is durable (a restarted worker finds the running driver instead of submitting a
second application) and deferrable (no worker slot held while Spark runs; the triggerer watches the
driver pod and the task resumes in `trigger_reentry`). The summary is read in both ends: `execute`
when the driver had already finished (or `deferrable=False`), `trigger_reentry` after a deferral.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from airflow.providers.cncf.kubernetes.operators.spark_kubernetes import SparkKubernetesOperator

from llmops import storage
from llmops.settings import Settings
from llmops_operators.base import airflow_settings, attach_summary_to_outlets
from llmops_operators.s3 import aws_connection

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
            "namespace": settings.kubernetes.namespace,
            "kubernetes_conn_id": settings.kubernetes.kubernetes_conn_id,
            "startup_timeout_seconds": settings.kubernetes.startup_timeout_s,
            "get_logs": True,
            "log_events_on_failure": True,
            "delete_on_termination": True,
            # `durable` replaces the deprecated `reattach_on_restart` (cncf.kubernetes 10.25 on Airflow 3.3).
            "durable": True,
            "deferrable": True,
        }
        defaults.update(kwargs)
        super().__init__(template_spec=spec, **defaults)
        # The Spark operator finds a running driver by its labels when its own `reattach_on_restart`
        # attribute is set; one knob (`durable`) decides both.
        self.reattach_on_restart = self.durable
        self.settings = settings
        # The parent defaults to no XCom; this operator's return value (the summary) is its XCom.
        self.do_xcom_push = summary

    def execute(self, context: Any) -> Any:
        from llmops.k8s.validate import require_valid

        require_valid([self.template_spec], f"SparkApplication of task {self.task_id}", settings=self.settings)
        # Deferred: this raises TaskDeferred and the task resumes in trigger_reentry.
        self._without_sidecar(super().execute, context)
        return self._summary(context)

    def trigger_reentry(self, context: Any, event: dict[str, Any]) -> Any:
        self._without_sidecar(super().trigger_reentry, context, event)
        return self._summary(context)

    def _without_sidecar(self, method: Any, *args: Any) -> None:
        """Run a parent method without its XCom sidecar extraction: the driver pod has no sidecar."""
        push = self.do_xcom_push
        self.do_xcom_push = False
        try:
            method(*args)
        finally:
            self.do_xcom_push = push

    def _summary(self, context: Any) -> Any:
        """The summary the job wrote (read with the Airflow S3 connection), also put on the asset events."""
        if not self.summary_uri:
            return None
        with aws_connection(self.settings.storage.aws_conn_id):
            summary = json.loads(storage.read_text(self.summary_uri))
        attach_summary_to_outlets(self, context, summary)
        return summary
