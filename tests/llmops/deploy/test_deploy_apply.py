"""Applying, waiting and rolling back, with the cluster behind the `KubeApi` boundary faked in memory
(`FakeCluster`) or the kubernetes DynamicClient mocked (`DynamicKubeApi`)."""

from __future__ import annotations

from pathlib import Path
from unittest import mock

import pytest
import yaml

from llmops.deploy.apply import Clock, DynamicKubeApi, deploy, deployment_state, wait_for_rollout
from llmops.deploy.config import load_config
from llmops.deploy.publish import deploy_folder, live_version
from llmops.deploy.render import render, write
from llmops.exceptions import DeploymentError, ManifestInvalid
from llmops.settings import Settings

from .conftest import CHALLENGER, CHAMPION
from .fake_kube import FakeClock, FakeCluster

REPO = Path(__file__).resolve().parents[3]
SETTINGS = Settings(data_root="/srv/llmops", namespace="llmops", model_cache_pvc="llmops-model-cache")


def _objects(model, stable=None, **overrides):
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS, **overrides)
    return render(model, config, stable).all_objects()


V3 = _objects(CHAMPION)
V4 = _objects(CHALLENGER)
V4_CANARY = _objects(CHALLENGER, CHAMPION, **{"canary.enabled": True})


def _clock() -> Clock:
    """Instant waits: the fake controller advances on each poll, not with wall time."""
    fake = FakeClock()
    return Clock(fake.now, fake.sleep)


def _by_version(bad: str, how: str):
    """Health: Deployments running version `bad` fail `how`; everything else is healthy."""
    return lambda obj: how if obj["spec"]["template"]["metadata"]["labels"]["llmops.dev/version"] == bad else "ok"


def test_first_deploy_applies_dependencies_first_and_waits():
    cluster = FakeCluster()
    result = deploy(cluster, V3, previous=None, timeout_s=60, clock=_clock())
    order = [line.split(" ", 1)[1] for line in cluster.log]
    assert order.index("Service/llmops-assistant") < order.index("Deployment/llmops-assistant")
    assert order.index("Deployment/llmops-assistant") < order.index("ScaledObject/llmops-assistant")
    assert order[-1] == "HTTPRoute/llmops-assistant"
    assert result.rollout == {"Deployment/llmops-assistant": "1 replicas available"}
    assert result.deleted == []


def test_promotion_after_a_canary_removes_the_canary_objects():
    cluster = FakeCluster()
    deploy(cluster, V4_CANARY, previous=V3, timeout_s=60, clock=_clock())
    assert cluster.version_of("llmops-assistant-canary") == "4"
    result = deploy(cluster, V4, previous=V4_CANARY, timeout_s=60, clock=_clock())
    assert sorted(result.deleted) == [
        "Deployment/llmops-assistant-canary",
        "PodDisruptionBudget/llmops-assistant-canary",
        "Service/llmops-assistant-canary",
    ]
    assert cluster.version_of("llmops-assistant") == "4"
    route = cluster.get("gateway.networking.k8s.io/v1", "HTTPRoute", "llmops-assistant", "llmops-serving")
    assert [b["name"] for b in route["spec"]["rules"][0]["backendRefs"]] == ["llmops-assistant"]


def test_failed_rollout_rolls_back_to_the_previous_version_and_says_why():
    cluster = FakeCluster(health=_by_version("4", "crash"))
    deploy(cluster, V3, previous=None, timeout_s=60, clock=_clock())
    with pytest.raises(DeploymentError) as err:
        deploy(
            cluster,
            V4_CANARY,
            previous=V3,
            timeout_s=600,
            what="llmops-assistant version 4",
            previous_what="llmops-assistant version 3",
            clock=_clock(),
        )
    message = str(err.value)
    assert message.startswith("rollout of llmops-assistant version 4 failed: Deployment/llmops-assistant")
    assert "container vllm: CrashLoopBackOff" in message and "last exit code 1" in message
    assert message.endswith("rolled back to llmops-assistant version 3")
    # The previous version is live again and what only version 4 had is gone.
    assert cluster.version_of("llmops-assistant") == "3"
    assert ("apps/v1", "Deployment", "llmops-serving", "llmops-assistant-canary") not in cluster.objects
    assert "delete Deployment/llmops-assistant-canary" in cluster.log


def test_progress_deadline_is_the_reason_when_pods_just_never_get_ready():
    clock = FakeClock()
    cluster = FakeCluster(health=_by_version("4", "deadline"))
    with pytest.raises(DeploymentError) as err:
        deploy(cluster, V4, previous=V3, timeout_s=3600, poll_s=5, clock=Clock(clock.now, clock.sleep))
    assert "progress deadline exceeded: ReplicaSet" in str(err.value)
    assert clock.t < 60, "the controller's verdict ends the wait, not our timeout"
    assert cluster.version_of("llmops-assistant") == "3"


def test_image_pull_failure_fails_fast_without_waiting_for_the_deadline():
    clock = FakeClock()
    cluster = FakeCluster(health=_by_version("4", "pull"))
    with pytest.raises(DeploymentError, match="ImagePullBackOff"):
        deploy(cluster, V4, previous=V3, timeout_s=3600, poll_s=5, clock=Clock(clock.now, clock.sleep))
    assert clock.t <= 5, "an image that cannot be pulled is not waited for (5 s: the rollback's one poll)"


def test_timeout_reports_unschedulable_pods_and_rolls_back():
    clock = FakeClock()
    cluster = FakeCluster(health=_by_version("4", "stuck"))
    with pytest.raises(DeploymentError) as err:
        deploy(cluster, V4, previous=V3, timeout_s=120, poll_s=10, clock=Clock(clock.now, clock.sleep))
    assert "not rolled out after 120s" in str(err.value)
    assert "Insufficient nvidia.com/gpu" in str(err.value)
    assert 120 <= clock.t < 300, "gave up at the timeout (plus the rollback's own wait)"
    assert cluster.version_of("llmops-assistant") == "3"


def test_no_previous_version_fails_and_leaves_objects_for_inspection():
    cluster = FakeCluster(health=lambda obj: "crash")
    with pytest.raises(DeploymentError, match="no previous version to roll back to"):
        deploy(cluster, V3, previous=None, timeout_s=60, clock=_clock())
    assert cluster.version_of("llmops-assistant") == "3"


def test_failed_rollback_reports_both_failures():
    cluster = FakeCluster(health=lambda obj: "pull")
    with pytest.raises(DeploymentError, match="the rollback to .* failed too"):
        deploy(cluster, V4, previous=V3, timeout_s=60, clock=_clock())


def test_old_pods_crash_looping_do_not_fail_the_new_version():
    """During a rolling update the old version's pods match the Deployment's selector too."""
    cluster = FakeCluster(health=_by_version("3", "crash"))
    cluster.apply(V3[[o["kind"] for o in V3].index("Deployment")])
    deploy(cluster, V4, previous=V3, timeout_s=60, clock=_clock())
    assert cluster.version_of("llmops-assistant") == "4"


def test_deployment_state_waits_for_the_controller_to_observe_the_new_generation():
    live = {"metadata": {"generation": 2}, "spec": {"replicas": 1}, "status": {"observedGeneration": 1}}
    assert deployment_state(live)[0] == "progressing"
    live["status"] = {"observedGeneration": 2, "replicas": 1, "updatedReplicas": 1, "availableReplicas": 1}
    assert deployment_state(live) == ("done", "1 replicas available")


def test_wait_ignores_objects_without_a_rollout():
    cluster = FakeCluster()
    only_service = [o for o in V3 if o["kind"] == "Service"]
    assert wait_for_rollout(cluster, only_service, timeout_s=1) == {}


# --- the DynamicClient adapter -------------------------------------------------------------------


def test_dynamic_api_uses_server_side_apply_with_a_field_manager():
    dynamic = mock.MagicMock()
    dynamic.server_side_apply.return_value.to_dict.return_value = {"kind": "Deployment"}
    api = DynamicKubeApi(api_client=None, dynamic=dynamic)
    deployment = next(o for o in V3 if o["kind"] == "Deployment")
    assert api.apply(deployment) == {"kind": "Deployment"}
    dynamic.resources.get.assert_called_with(api_version="apps/v1", kind="Deployment")
    call = dynamic.server_side_apply.call_args
    assert call.args == (dynamic.resources.get.return_value,)
    assert call.kwargs == {
        "body": deployment,
        "name": "llmops-assistant",
        "namespace": "llmops-serving",
        "field_manager": "airflow-llmops",
        "force_conflicts": True,
    }


def test_dynamic_api_maps_not_found_and_missing_crds():
    from kubernetes.dynamic.exceptions import NotFoundError, ResourceNotFoundError

    dynamic = mock.MagicMock()
    dynamic.get.side_effect = NotFoundError(mock.MagicMock(status=404, reason="Not Found", data=b"{}"))
    api = DynamicKubeApi(api_client=None, dynamic=dynamic)
    assert api.get("apps/v1", "Deployment", "x", "ns") is None
    dynamic.resources.get.side_effect = ResourceNotFoundError("no ScaledObject")
    with pytest.raises(DeploymentError, match="does not serve keda.sh/v1alpha1 ScaledObject"):
        api.apply(next(o for o in V3 if o["kind"] == "ScaledObject"))


def test_dynamic_api_reports_the_api_servers_reason():
    from kubernetes.client.exceptions import ApiException

    dynamic = mock.MagicMock()
    error = ApiException(status=422, reason="Unprocessable Entity")
    error.body = '{"message": "Deployment.apps \\"x\\" is invalid: spec.selector: field is immutable"}'
    dynamic.server_side_apply.side_effect = error
    api = DynamicKubeApi(api_client=None, dynamic=dynamic)
    with pytest.raises(DeploymentError, match="field is immutable"):
        api.apply(next(o for o in V3 if o["kind"] == "Deployment"))


# --- the deploy step: live pointer + apply -------------------------------------------------------


def _write(tmp_path, model, stable=None, **overrides):
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS, **overrides)
    folder, _ = write(render(model, config, stable), str(tmp_path))
    return folder


def test_gitops_deploy_only_moves_the_live_pointer(tmp_path):
    v3 = _write(tmp_path, CHAMPION)
    summary = deploy_folder(v3)
    assert summary["applied"] is False and summary["live"] == "3" and summary["previous_version"] is None
    root = tmp_path / "llmops-assistant"
    live = yaml.safe_load((root / "kustomization.yaml").read_text())
    assert live == {"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": ["3"]}
    assert deploy_folder(v3)["live_changed"] is False
    from llmops.k8s.validate import validate_dir

    assert all(not problems for problems in validate_dir(tmp_path).values())


def test_apply_deploy_moves_the_pointer_only_after_a_good_rollout(tmp_path):
    v3, v4 = _write(tmp_path, CHAMPION), _write(tmp_path, CHALLENGER)
    root = str(tmp_path / "llmops-assistant")
    cluster = FakeCluster(health=_by_version("4", "crash"))
    assert deploy_folder(v3, api=cluster, clock=_clock())["live"] == "3"
    with pytest.raises(DeploymentError, match="rolled back to llmops-assistant version 3"):
        deploy_folder(v4, api=cluster, clock=_clock())
    assert live_version(root) == "3"
    assert cluster.version_of("llmops-assistant") == "3"
    cluster.health = lambda obj: "ok"
    summary = deploy_folder(v4, api=cluster, clock=_clock())
    assert summary["previous_version"] == "3" and summary["live"] == "4" and summary["applied"] is True
    assert live_version(root) == "4"


def test_deploy_refuses_a_tampered_folder(tmp_path):
    v3 = Path(_write(tmp_path, CHAMPION))
    service = v3 / "service.yaml"
    service.write_text(service.read_text().replace("type: ClusterIP", "type: ClusterIP\n  sessionAfinity: None"))
    with pytest.raises(ManifestInvalid, match="sessionAfinity"):
        deploy_folder(str(v3), api=FakeCluster())
    assert live_version(str(tmp_path / "llmops-assistant")) is None


def test_default_timeout_follows_the_progress_deadline():
    from llmops.deploy.publish import rollout_timeout

    deadline = next(o for o in V3 if o["kind"] == "Deployment")["spec"]["progressDeadlineSeconds"]
    assert rollout_timeout(V3) == deadline + 60


@pytest.mark.s3
def test_deploy_from_an_s3_manifests_location(s3_bucket):
    from llmops import storage

    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS)
    out = f"s3://{s3_bucket}/gitops"
    v3, _ = write(render(CHAMPION, config), out)
    v4, _ = write(render(CHALLENGER, config), out)
    cluster = FakeCluster()
    assert deploy_folder(v3, api=cluster, clock=_clock())["live"] == "3"
    summary = deploy_folder(v4, api=cluster, clock=_clock())
    assert summary["previous_version"] == "3" and cluster.version_of("llmops-assistant") == "4"
    live = yaml.safe_load(storage.read_text(f"{out}/llmops-assistant/kustomization.yaml"))
    assert live["resources"] == ["4"]
