"""The deploy step on the Airflow side: make a rendered version live, applying it when asked.

Thin by design: the work is `llmops.deploy.publish.deploy_folder`; this operator only chooses the
cluster client (the cncf.kubernetes provider's KubernetesHook) and turns a failure into a failed task
whose message is the reason (the rollout's, and what was rolled back to).

It runs on the worker, not in a pod: it needs the manifests (local folder or s3://) and the API
server, never the model, MLflow or torch. Rendering, which resolves `models:/` URIs, is the step
`llmops render` before it.

`ChooseRolloutOperator` is the branch before rendering: promote the registered version, or keep the
champion and send the version out as a canary (`llmops.deploy.canary.rollout_for`). A `BaseBranchOperator`,
not `@task.branch`: `airflow.sdk.task` imports the standard provider's PythonOperator module, about 15 ms
of every parse of the lifecycle DAG file.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from airflow.sdk import BaseBranchOperator, BaseOperator
from airflow.sdk.exceptions import AirflowException

from llmops.exceptions import LlmopsError
from llmops.settings import Settings
from llmops_operators.base import airflow_settings
from llmops_operators.s3 import uses_aws_connection

FIELD_MANAGER = "airflow-llmops"


def _as_bool(value: Any) -> bool | None:
    """Booleans from templates arrive as strings ("True", "false")."""
    if value is None or isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("", "none", "auto"):
        return None
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise AirflowException(f"apply={value!r}: use true, false or auto")


class DeployManifestsOperator(BaseOperator):
    """Validate a version folder written by `llmops render` and make it the live version.

    :param manifests_uri: the version folder, `OUT/<model>/<version>` (the render step's
        `manifests_uri` XCom value); templated.
    :param apply: server-side apply to the cluster and wait for the rollout (rolling back on failure).
        Default (None/"auto"): apply in mode `kubernetes`, only move the GitOps pointer in mode `local`.
        Set False to leave applying to Argo CD / Flux watching the manifests location.
    :param timeout_s: rollout timeout; default: the Deployment's progress deadline plus a minute.
    :param kubernetes_conn_id: Airflow connection of the cluster; default: the `kubernetes_conn_id` setting.
    """

    template_fields: Sequence[str] = ("manifests_uri", "apply", "timeout_s")
    ui_color = "#e6f5e6"

    def __init__(
        self,
        *,
        manifests_uri: str,
        apply: bool | str | None = None,
        timeout_s: float | None = None,
        kubernetes_conn_id: str | None = None,
        poll_s: float = 10.0,
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.manifests_uri = manifests_uri
        self.apply = apply
        self.timeout_s = timeout_s
        self.kubernetes_conn_id = kubernetes_conn_id
        self.poll_s = poll_s
        self.settings = settings

    def kube_api(self, settings: Settings):
        """The cluster client: the KubernetesHook's API client behind server-side apply."""
        from airflow.providers.cncf.kubernetes.hooks.kubernetes import KubernetesHook

        from llmops.deploy.apply import DynamicKubeApi

        hook = KubernetesHook(conn_id=self.kubernetes_conn_id or settings.kubernetes.kubernetes_conn_id)
        return DynamicKubeApi(hook.api_client, field_manager=FIELD_MANAGER)

    @uses_aws_connection
    def execute(self, context: Any) -> dict[str, Any]:
        from llmops.contracts import DeploySummary
        from llmops.deploy.publish import deploy_folder

        settings = self.settings or airflow_settings()
        apply = _as_bool(self.apply)
        if apply is None:
            apply = settings.mode == "kubernetes"
        timeout = float(self.timeout_s) if self.timeout_s not in (None, "", "None") else None
        api = self.kube_api(settings) if apply else None
        self.log.info("Deploying %s (%s)", self.manifests_uri, "apply and wait" if apply else "GitOps pointer only")
        try:
            summary = DeploySummary.model_validate(
                deploy_folder(self.manifests_uri, api=api, timeout_s=timeout, poll_s=self.poll_s)
            )
        except LlmopsError as exc:
            raise AirflowException(str(exc)) from exc
        self.log.info("Live version of %s: %s", summary.model, summary.live)
        return summary.to_json()


CHOOSE_ROLLOUT_DOC = """Canary (the deploy config's canary.enabled, and a stable version to serve beside): render the
registered version beside the champion and leave the `champion` alias alone. Else promote first."""


class ChooseRolloutOperator(BaseBranchOperator):
    """Follow `canary_task_id` when the deploy config sends the registered version out as a canary beside a
    stable version, else `promote_task_id`; the decision (`Rollout.to_json()`) is pushed as XCom `rollout`.

    :param deploy_config: the deploy config (local or s3://); templated.
    :param model_name: the registered model's name; templated.
    :param version: the registered version; templated.
    """

    template_fields: Sequence[str] = ("deploy_config", "model_name", "version")

    def __init__(
        self,
        *,
        deploy_config: str,
        model_name: str,
        version: str,
        promote_task_id: str = "promote",
        canary_task_id: str = "keep_champion",
        settings: Settings | None = None,
        **kwargs: Any,
    ) -> None:
        kwargs.setdefault("doc_md", CHOOSE_ROLLOUT_DOC)
        super().__init__(**kwargs)
        self.deploy_config = deploy_config
        self.model_name = model_name
        self.version = version
        self.promote_task_id = promote_task_id
        self.canary_task_id = canary_task_id
        self.settings = settings

    @uses_aws_connection
    def choose_branch(self, context: Any) -> str:
        from llmops.deploy.canary import rollout_for

        rollout = rollout_for(self.deploy_config, self.model_name, self.version, self.settings or airflow_settings())
        self.log.info("rollout: %s: %s", "canary" if rollout.canary else "promote", rollout.reason)
        context["ti"].xcom_push(key="rollout", value=rollout.to_json())
        return self.canary_task_id if rollout.canary else self.promote_task_id
