"""Apply a rendered version to a cluster, wait for it to roll out, roll back when it does not.

Everything here talks to the cluster through `KubeApi`, a four-method boundary (apply, get, list,
delete). `DynamicKubeApi` implements it over the `kubernetes` client's DynamicClient with server-side
apply and a field manager; tests implement it in memory. Nothing here imports Airflow: the operator
passes in the API client of its KubernetesHook, the CLI one from a kubeconfig.

    deploy(api, new, previous)
        apply new (server-side) -> wait for Deployments / InferenceServices
        ok:     delete what only the previous version had (e.g. the canary after a promotion)
        failed: apply previous, delete what only the new one had, wait again, raise with the reason
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from llmops.exceptions import DeploymentError

log = logging.getLogger(__name__)

FIELD_MANAGER = "airflow-llmops"
APPLY_ORDER = [
    "Namespace",
    "ServiceAccount",
    "Secret",
    "ConfigMap",
    "PersistentVolumeClaim",
    "NetworkPolicy",
    "ServingRuntime",
    "Service",
    "Deployment",
    "InferenceService",
    "PodDisruptionBudget",
    "HorizontalPodAutoscaler",
    "ScaledObject",
    "ServiceMonitor",
    "PodMonitor",
    "HTTPRoute",
]
"""Dependencies first: a ScaledObject's target and a route's Services exist before they do."""
WAITING_REASONS = {
    "CrashLoopBackOff",
    "ImagePullBackOff",
    "ErrImagePull",
    "InvalidImageName",
    "CreateContainerConfigError",
    "CreateContainerError",
    "RunContainerError",
}
"""Container states worth reporting as the reason of a failed rollout."""
FAIL_FAST = {"ImagePullBackOff", "InvalidImageName", "CreateContainerConfigError"}
"""States that waiting will not fix (a wrong image, a missing Secret): the rollout fails at once."""
CRASH_LOOP_RESTARTS = 3
"""A container crash-looping this many times fails the rollout without waiting for the deadline."""


class KubeApi(Protocol):
    """The cluster, as far as deploying needs it. Objects are plain dicts (Kubernetes JSON)."""

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        """Server-side apply; returns the object as stored."""

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        """The live object, or None when it does not exist."""

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        """Live objects matching a label selector."""

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        """Delete; False when it did not exist."""


class DynamicKubeApi:
    """`KubeApi` over `kubernetes.dynamic.DynamicClient`: server-side apply with a field manager,
    forcing conflicts so the manifests (the GitOps source of truth) win over hand edits."""

    def __init__(self, api_client: Any, field_manager: str = FIELD_MANAGER, dynamic: Any = None) -> None:
        if dynamic is None:
            from kubernetes.dynamic import DynamicClient

            dynamic = DynamicClient(api_client)
        self.dynamic = dynamic
        self.field_manager = field_manager

    def _resource(self, api_version: str, kind: str) -> Any:
        from kubernetes.dynamic.exceptions import ResourceNotFoundError

        try:
            return self.dynamic.resources.get(api_version=api_version, kind=kind)
        except ResourceNotFoundError:
            raise DeploymentError(
                f"the cluster does not serve {api_version} {kind}: install its CRD/operator (KEDA, Prometheus "
                "operator, Gateway API, KServe) or turn the feature off in the deploy config"
            ) from None

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        resource = self._resource(obj["apiVersion"], obj["kind"])
        meta = obj["metadata"]
        try:
            out = self.dynamic.server_side_apply(
                resource,
                body=obj,
                name=meta["name"],
                namespace=meta.get("namespace"),
                field_manager=self.field_manager,
                force_conflicts=True,
            )
        except Exception as exc:
            raise DeploymentError(f"apply {obj['kind']}/{meta['name']} failed: {_api_reason(exc)}") from exc
        return _as_dict(out)

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            return _as_dict(self.dynamic.get(self._resource(api_version, kind), name=name, namespace=namespace))
        except NotFoundError:
            return None

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        out = self.dynamic.get(self._resource(api_version, kind), namespace=namespace, label_selector=label_selector)
        return list(_as_dict(out).get("items") or [])

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        from kubernetes.dynamic.exceptions import NotFoundError

        try:
            self.dynamic.delete(self._resource(api_version, kind), name=name, namespace=namespace)
        except NotFoundError:
            return False
        return True


def _as_dict(obj: Any) -> dict[str, Any]:
    if isinstance(obj, dict):
        return obj
    return obj.to_dict()


def _api_reason(exc: Exception) -> str:
    body = getattr(exc, "body", None)
    if body:
        try:
            return str(json.loads(body).get("message") or body)
        except (ValueError, TypeError, AttributeError):
            return str(body)
    return str(exc)


# --- identity and ordering -----------------------------------------------------------------------


def key(obj: dict[str, Any]) -> tuple[str, str, str, str]:
    meta = obj.get("metadata") or {}
    return (obj["apiVersion"], obj["kind"], meta.get("namespace") or "", meta["name"])


def ordered(objects: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    rank = {kind: i for i, kind in enumerate(APPLY_ORDER)}
    return sorted(objects, key=lambda o: (rank.get(o["kind"], len(APPLY_ORDER)), key(o)))


def describe(obj: dict[str, Any]) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


# --- rollout status ------------------------------------------------------------------------------


def deployment_state(live: dict[str, Any] | None) -> tuple[str, str]:
    """("done" | "progressing" | "failed", message), the way `kubectl rollout status` decides."""
    if live is None:
        return "progressing", "not created yet"
    meta, spec, status = live.get("metadata") or {}, live.get("spec") or {}, live.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return "progressing", "waiting for the controller to see the new spec"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            return "failed", f"progress deadline exceeded: {cond.get('message', '')}".strip()
    want = spec.get("replicas", 1)
    updated = status.get("updatedReplicas") or 0
    total = status.get("replicas") or 0
    available = status.get("availableReplicas") or 0
    if updated < want:
        return "progressing", f"{updated} of {want} replicas updated"
    if total > updated:
        return "progressing", f"{total - updated} old replicas pending termination"
    if available < updated:
        return "progressing", f"{available} of {updated} updated replicas available"
    return "done", f"{available} replicas available"


def inferenceservice_state(live: dict[str, Any] | None) -> tuple[str, str]:
    if live is None:
        return "progressing", "not created yet"
    meta, status = live.get("metadata") or {}, live.get("status") or {}
    if (status.get("observedGeneration") or 0) < (meta.get("generation") or 0):
        return "progressing", "waiting for KServe to see the new spec"
    model = status.get("modelStatus") or {}
    if model.get("transitionStatus") in ("BlockedByFailedLoad", "InvalidSpec"):
        info = model.get("lastFailureInfo") or {}
        return "failed", f"KServe {model['transitionStatus']}: {info.get('reason', '')} {info.get('message', '')}".strip()
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Ready":
            if cond.get("status") == "True":
                return "done", "ready"
            return "progressing", f"not ready: {cond.get('reason', '')} {cond.get('message', '')}".strip()
    return "progressing", "no Ready condition yet"


STATE_OF: dict[str, Callable[[dict[str, Any] | None], tuple[str, str]]] = {
    "Deployment": deployment_state,
    "InferenceService": inferenceservice_state,
}


def _pod_selector(obj: dict[str, Any]) -> str:
    """Pods of this version only: during a rolling update the old version's pods match the Deployment's
    selector too, and their crash loop is no reason to fail the new version."""
    spec = obj.get("spec") or {}
    if obj["kind"] == "Deployment":
        labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
        labels = labels or (spec.get("selector") or {}).get("matchLabels") or {}
    else:
        labels = {"serving.kserve.io/inferenceservice": obj["metadata"]["name"]}
        version = ((spec.get("predictor") or {}).get("labels") or {}).get("llmops.dev/version")
        if version:
            labels["llmops.dev/version"] = version
    return ",".join(f"{k}={v}" for k, v in sorted(labels.items()))


def pod_problems(api: KubeApi, obj: dict[str, Any]) -> list[tuple[bool, str]]:
    """Why the new pods of a Deployment (or InferenceService) are not coming up: (fatal, line) pairs,
    fatal when waiting longer will not help."""
    namespace = obj["metadata"].get("namespace") or ""
    problems: list[tuple[bool, str]] = []
    try:
        pods = api.list("v1", "Pod", namespace, _pod_selector(obj))
    except Exception as exc:  # diagnostics must never hide the rollout's own failure
        return [(False, f"(could not list pods: {exc})")]
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                problems.append((False, f"pod {name} unschedulable: {cond.get('message') or cond.get('reason')}"))
        for cs in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            waiting = (cs.get("state") or {}).get("waiting") or {}
            reason = waiting.get("reason")
            if reason not in WAITING_REASONS:
                continue
            line = f"pod {name} container {cs.get('name')}: {reason}"
            if waiting.get("message"):
                line += f" ({waiting['message']})"
            last = (cs.get("lastState") or {}).get("terminated") or {}
            if last:
                line += f"; last exit code {last.get('exitCode')}"
                if last.get("reason"):
                    line += f" {last['reason']}"
            restarts = cs.get("restartCount") or 0
            fatal = reason in FAIL_FAST or (reason == "CrashLoopBackOff" and restarts >= CRASH_LOOP_RESTARTS)
            problems.append((fatal, line))
    return problems


@dataclass
class Clock:
    """Time for waiting, injectable so tests run the timeout path instantly."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep


class RolloutFailed(DeploymentError):
    """The new version did not become available (its reason is the message)."""


def wait_for_rollout(
    api: KubeApi,
    objects: Iterable[dict[str, Any]],
    timeout_s: float,
    poll_s: float = 5.0,
    clock: Clock | None = None,
) -> dict[str, str]:
    """Wait until every Deployment and InferenceService is rolled out; raise `RolloutFailed` with the
    reason (the controller's, then the pods') on failure or timeout. Returns name -> final message."""
    clock = clock or Clock()
    targets = [o for o in ordered(objects) if o["kind"] in STATE_OF]
    deadline = clock.now() + timeout_s
    pending = {describe(o): o for o in targets}
    done: dict[str, str] = {}
    last: dict[str, str] = {}
    while pending:
        for label, obj in list(pending.items()):
            meta = obj["metadata"]
            live = api.get(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace") or "")
            state, message = STATE_OF[obj["kind"]](live)
            last[label] = message
            if state == "done":
                done[label] = message
                del pending[label]
            elif state == "failed":
                raise RolloutFailed(_reason(api, obj, f"{label}: {message}"))
            else:
                # Pods that cannot start will not start by waiting longer: fail fast with their reason.
                problems = pod_problems(api, obj)
                if any(fatal for fatal, _ in problems):
                    raise RolloutFailed(f"{label}: {message}; " + "; ".join(line for _, line in problems))
        if not pending:
            break
        if clock.now() >= deadline:
            label, obj = next(iter(pending.items()))
            raise RolloutFailed(_reason(api, obj, f"{label} not rolled out after {timeout_s:g}s: {last[label]}"))
        clock.sleep(poll_s)
    return done


def _reason(api: KubeApi, obj: dict[str, Any], head: str) -> str:
    problems = [line for _, line in pod_problems(api, obj)]
    return head + ("; " + "; ".join(problems) if problems else "")


# --- the canary's weight: only a verified canary takes traffic ------------------------------------

VERIFICATION_FILE = "canary-verification.json"
"""The record `llmops canary verify` writes into a version folder (`llmops.deploy.canary`)."""


def objects_digest(objects: Iterable[dict[str, Any]]) -> str:
    """sha256 of the objects as applied (canonical JSON, in sorted order): a re-render, a hand edit or
    a moved weight gives another digest; comments and file layout do not count."""
    docs = sorted(json.dumps(o, sort_keys=True, separators=(",", ":")) for o in objects)
    return hashlib.sha256("\n".join(docs).encode()).hexdigest()


def canary_weight(objects: Iterable[dict[str, Any]]) -> int:
    """The traffic percent the HTTPRoutes send to canary-track backends (Services, or KServe's
    `<isvc>-predictor`); 0 without a canary."""
    objects = list(objects)
    canary = set()
    for obj in objects:
        meta = obj.get("metadata") or {}
        if (meta.get("labels") or {}).get("llmops.dev/track") == "canary":
            canary.update({meta["name"], f"{meta['name']}-predictor"})
    weight = 0
    for obj in objects:
        if obj.get("kind") != "HTTPRoute":
            continue
        for rule in (obj.get("spec") or {}).get("rules") or []:
            for ref in rule.get("backendRefs") or []:
                if ref.get("name") in canary:
                    weight = max(weight, int(ref.get("weight", 1)))
    return weight


def require_verified_canary(objects: list[dict[str, Any]], record: dict[str, Any] | None, where: str) -> None:
    """Refuse objects that send traffic to a canary unless a passing verification record names exactly
    these objects (`objects_digest`). A canary at weight 0 needs none: it takes no traffic."""
    weight = canary_weight(objects)
    if weight == 0:
        return
    fix = f"run `llmops canary verify --manifests {where}` (it moves the weight only when the challenger passes)"
    if record is None:
        raise DeploymentError(f"{where}: the canary has weight {weight} but no verification record "
                              f"({VERIFICATION_FILE}); {fix}")
    if not record.get("passed"):
        raise DeploymentError(f"{where}: the canary has weight {weight} but its verification failed "
                              f"({record.get('reason')}); {fix}")
    digest = objects_digest(objects)
    if record.get("digest") != digest:
        raise DeploymentError(
            f"{where}: the canary has weight {weight} but the verification record is for other manifests "
            f"(digest {str(record.get('digest'))[:12]}, these are {digest[:12]}): they changed after the check; {fix}"
        )


# --- apply, prune, deploy ------------------------------------------------------------------------


def apply_all(api: KubeApi, objects: Iterable[dict[str, Any]]) -> list[str]:
    applied = []
    for obj in ordered(objects):
        api.apply(obj)
        applied.append(describe(obj))
        log.info("applied %s", describe(obj))
    return applied


def prune(api: KubeApi, keep: Iterable[dict[str, Any]], candidates: Iterable[dict[str, Any]]) -> list[str]:
    """Delete the `candidates` that are not in `keep` (reverse apply order: routes before Services)."""
    kept = {key(o) for o in keep}
    deleted = []
    for obj in reversed(ordered(candidates)):
        if key(obj) in kept:
            continue
        meta = obj["metadata"]
        if api.delete(obj["apiVersion"], obj["kind"], meta["name"], meta.get("namespace") or ""):
            deleted.append(describe(obj))
            log.info("deleted %s (not in the version now live)", describe(obj))
    return deleted


@dataclass
class DeployResult:
    applied: list[str]
    deleted: list[str]
    rollout: dict[str, str] = field(default_factory=dict)


def deploy(
    api: KubeApi,
    objects: list[dict[str, Any]],
    previous: list[dict[str, Any]] | None,
    timeout_s: float,
    what: str = "the new version",
    previous_what: str = "the previous version",
    poll_s: float = 5.0,
    clock: Clock | None = None,
    verification: dict[str, Any] | None = None,
) -> DeployResult:
    """Apply `objects`, wait for the rollout; on failure restore `previous` and raise `DeploymentError`
    naming the reason and what was rolled back to. Objects that route traffic to a canary are refused
    unless `verification` (the folder's `canary-verification.json`) passed for exactly them."""
    require_verified_canary(objects, verification, what)
    applied = apply_all(api, objects)
    try:
        rollout = wait_for_rollout(api, objects, timeout_s, poll_s, clock)
    except RolloutFailed as failure:
        if not previous:
            raise DeploymentError(
                f"rollout of {what} failed: {failure}. There is no previous version to roll back to; the "
                "failed objects are left in place for inspection"
            ) from None
        log.error("rollout of %s failed (%s); rolling back to %s", what, failure, previous_what)
        try:
            apply_all(api, previous)
            prune(api, keep=previous, candidates=objects)
            wait_for_rollout(api, previous, timeout_s, poll_s, clock)
        except DeploymentError as again:
            raise DeploymentError(
                f"rollout of {what} failed: {failure}; the rollback to {previous_what} failed too: {again}"
            ) from None
        raise DeploymentError(f"rollout of {what} failed: {failure}; rolled back to {previous_what}") from None
    deleted = prune(api, keep=objects, candidates=previous or [])
    return DeployResult(applied=applied, deleted=deleted, rollout=rollout)
