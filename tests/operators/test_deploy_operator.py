"""DeployManifestsOperator: GitOps pointer in mode local, KubernetesHook client + apply in mode
kubernetes, and a failed rollout as a failed task carrying the reason."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
from airflow.sdk.exceptions import AirflowException

from llmops.deploy.apply import Clock
from llmops.deploy.config import load_config
from llmops.deploy.render import render, write
from llmops.settings import Settings
from llmops_operators.deploy import DeployManifestsOperator, _as_bool
from tests.llmops.deploy.conftest import CHALLENGER, CHAMPION
from tests.llmops.deploy.fake_kube import FakeClock, FakeCluster

REPO = Path(__file__).resolve().parents[2]
RENDER_SETTINGS = Settings(data_root="/srv/llmops", namespace="llmops", model_cache_pvc="llmops-model-cache")


def _folder(tmp_path, model) -> str:
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), RENDER_SETTINGS)
    return write(render(model, config), str(tmp_path))[0]


def test_local_mode_only_moves_the_live_pointer(tmp_path):
    op = DeployManifestsOperator(
        task_id="deploy", manifests_uri=_folder(tmp_path, CHAMPION), settings=Settings(mode="local")
    )
    with mock.patch.object(DeployManifestsOperator, "kube_api", side_effect=AssertionError("no cluster locally")):
        summary = op.execute({})
    assert summary["applied"] is False and summary["live"] == "3"
    assert (tmp_path / "llmops-assistant" / "kustomization.yaml").exists()


def test_kubernetes_mode_applies_through_the_hooks_api_client(tmp_path):
    settings = Settings(mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000", kubernetes_conn_id="k8s_prod")
    op = DeployManifestsOperator(task_id="deploy", manifests_uri=_folder(tmp_path, CHAMPION), settings=settings)
    with (
        mock.patch("airflow.providers.cncf.kubernetes.hooks.kubernetes.KubernetesHook") as hook,
        mock.patch("kubernetes.dynamic.DynamicClient") as dynamic,
    ):
        api = op.kube_api(settings)
    hook.assert_called_once_with(conn_id="k8s_prod")
    dynamic.assert_called_once_with(hook.return_value.api_client)
    assert api.dynamic is dynamic.return_value and api.field_manager == "airflow-llmops"

    cluster = FakeCluster()
    with mock.patch.object(DeployManifestsOperator, "kube_api", return_value=cluster):
        summary = op.execute({})
    assert summary["applied"] is True and summary["rollout"] == {"Deployment/llmops-assistant": "1 replicas available"}
    assert cluster.version_of("llmops-assistant") == "3"


def test_failed_rollout_fails_the_task_with_the_reason_after_rolling_back(tmp_path):
    v3, v4 = _folder(tmp_path, CHAMPION), _folder(tmp_path, CHALLENGER)
    fake = FakeClock()
    cluster = FakeCluster(
        health=lambda obj: "pull" if obj["spec"]["template"]["metadata"]["labels"]["llmops.dev/version"] == "4" else "ok"
    )
    settings = Settings(mode="kubernetes", data_root="s3://b/llmops", mlflow_tracking_uri="http://mlflow:5000")
    with (
        mock.patch.object(DeployManifestsOperator, "kube_api", return_value=cluster),
        mock.patch("llmops.deploy.apply.Clock", lambda: Clock(fake.now, fake.sleep)),
    ):
        DeployManifestsOperator(task_id="d3", manifests_uri=v3, settings=settings, poll_s=1).execute({})
        op = DeployManifestsOperator(task_id="d4", manifests_uri=v4, settings=settings, apply="true", poll_s=1)
        with pytest.raises(AirflowException) as err:
            op.execute({})
    assert "ImagePullBackOff" in str(err.value)
    assert str(err.value).endswith("rolled back to llmops-assistant version 3")
    assert cluster.version_of("llmops-assistant") == "3"


def test_apply_accepts_templated_strings():
    assert _as_bool("True") is True and _as_bool("false") is False and _as_bool("auto") is None
    with pytest.raises(AirflowException, match="use true, false or auto"):
        _as_bool("maybe")
