"""An in-memory cluster behind the `KubeApi` boundary: stores what is applied, plays the Deployment
controller (generation, rollout status), reports pods whose state a test chooses, and proxies to a
Service (the API server's service proxy) by forwarding to the server a test puts behind it."""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from llmops.deploy.apply import describe, key


class FakeCluster:
    """`health(deployment) -> "ok" | "crash" | "pull" | "stuck" | "deadline"` decides what a rolled-out
    Deployment looks like; the default is healthy."""

    def __init__(self, health: Callable[[dict[str, Any]], str] | None = None) -> None:
        self.objects: dict[tuple[str, str, str, str], dict[str, Any]] = {}
        self.replica_sets: dict[tuple[str, str, str, str], list[dict[str, Any]]] = {}
        """Every pod template a Deployment had: old pods linger beside new ones during a rollout."""
        self.polls: dict[tuple[str, str, str, str], int] = {}
        """Status reads since the last apply: the first one always shows a rollout in progress."""
        self.health = health or (lambda obj: "ok")
        self.log: list[str] = []
        self.backends: dict[tuple[str, str], str] = {}
        """(namespace, Service) -> the base URL of the server behind it, for the service proxy."""

    # --- KubeApi ---------------------------------------------------------------------------------

    def apply(self, obj: dict[str, Any]) -> dict[str, Any]:
        k = key(obj)
        old = self.objects.get(k)
        live = copy.deepcopy(obj)
        generation = (old or {}).get("metadata", {}).get("generation", 0)
        if old is None or old.get("spec") != obj.get("spec"):
            generation += 1
        live["metadata"]["generation"] = generation
        self.objects[k] = live
        if obj["kind"] == "Deployment":
            templates = self.replica_sets.setdefault(k, [])
            if obj["spec"]["template"] not in templates:
                templates.append(copy.deepcopy(obj["spec"]["template"]))
            self.polls[k] = 0
        self.log.append(f"apply {describe(obj)}")
        return live

    def get(self, api_version: str, kind: str, name: str, namespace: str) -> dict[str, Any] | None:
        live = self.objects.get((api_version, kind, namespace, name))
        if live is None:
            return None
        live = copy.deepcopy(live)
        if kind == "Deployment":
            k = (api_version, kind, namespace, name)
            first = self.polls.get(k, 0) == 0
            self.polls[k] = self.polls.get(k, 0) + 1
            want = live["spec"].get("replicas", 1)
            live["status"] = (
                {"observedGeneration": live["metadata"]["generation"], "replicas": want + 1, "updatedReplicas": want}
                if first
                else self._deployment_status(live)
            )
        return live

    def list(self, api_version: str, kind: str, namespace: str, label_selector: str) -> list[dict[str, Any]]:
        assert (api_version, kind) == ("v1", "Pod")
        wanted = dict(pair.split("=", 1) for pair in label_selector.split(",") if pair)
        pods = []
        for (_, k, ns, _name), obj in sorted(self.objects.items()):
            if k != "Deployment" or ns != namespace:
                continue
            for template in self.replica_sets[key(obj)]:
                labels = template["metadata"]["labels"]
                if all(labels.get(a) == b for a, b in wanted.items()):
                    pods.append(self._pod(obj, template))
        return pods

    def delete(self, api_version: str, kind: str, name: str, namespace: str) -> bool:
        found = self.objects.pop((api_version, kind, namespace, name), None) is not None
        self.replica_sets.pop((api_version, kind, namespace, name), None)
        if found:
            self.log.append(f"delete {kind}/{name}")
        return found

    # --- the API server's service proxy (`llmops.deploy.canary.ServiceProxy`) ----------------------

    def request(self, method: str, namespace: str, service: str, port: int, path: str,
                body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        """`/api/v1/namespaces/NS/services/NAME:PORT/proxy/PATH`: like the API server, only to a Service that
        exists with that port, forwarded to the server a test put behind it (`self.backends`)."""
        import json
        import urllib.error
        import urllib.request

        self.log.append(f"proxy {method} {service}:{port}/{path.lstrip('/')}")
        svc = self.objects.get(("v1", "Service", namespace, service))
        if svc is None:
            return 404, f'services "{service}" not found'.encode()
        if port not in [p.get("port") for p in svc["spec"].get("ports") or []]:
            return 503, f'no endpoints available for service "{service}:{port}"'.encode()
        url = self.backends.get((namespace, service))
        if url is None:
            return 503, f'no endpoints available for service "{service}"'.encode()
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url.rstrip("/") + "/" + path.lstrip("/"), data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=120) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    # --- the controller ----------------------------------------------------------------------------

    def version_of(self, name: str, namespace: str = "llmops-serving") -> str:
        obj = self.objects[("apps/v1", "Deployment", namespace, name)]
        return obj["spec"]["template"]["metadata"]["labels"]["llmops.dev/version"]

    def _deployment_status(self, obj: dict[str, Any]) -> dict[str, Any]:
        want = obj["spec"].get("replicas", 1)
        gen = obj["metadata"]["generation"]
        state = self.health(obj)
        if state == "ok":
            return {
                "observedGeneration": gen,
                "replicas": want,
                "updatedReplicas": want,
                "availableReplicas": want,
                "readyReplicas": want,
            }
        status = {"observedGeneration": gen, "replicas": want + 1, "updatedReplicas": 1, "availableReplicas": want - 1}
        if state == "deadline":
            status["conditions"] = [
                {
                    "type": "Progressing",
                    "status": "False",
                    "reason": "ProgressDeadlineExceeded",
                    "message": f'ReplicaSet "{obj["metadata"]["name"]}-abc" has timed out progressing.',
                }
            ]
        return status

    def _pod(self, obj: dict[str, Any], template: dict[str, Any]) -> dict[str, Any]:
        version = template["metadata"]["labels"]["llmops.dev/version"]
        name = f"{obj['metadata']['name']}-{version}-x1"
        state = self.health({**obj, "spec": {**obj["spec"], "template": template}})
        cs: dict[str, Any] = {"name": "vllm", "restartCount": 0, "state": {"running": {}}}
        if state == "deadline":
            # Running but never ready (e.g. stuck loading): only the controller's deadline says so.
            cs = {"name": "vllm", "restartCount": 0, "ready": False, "state": {"running": {}}}
        elif state == "crash":
            cs = {
                "name": "vllm",
                "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off 5m0s restarting"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}},
            }
        elif state == "pull":
            cs = {
                "name": "vllm",
                "restartCount": 0,
                "state": {"waiting": {"reason": "ImagePullBackOff", "message": 'pull "vllm/vllm-openai:v9" failed'}},
            }
        if state == "stuck":
            message = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
            return {
                "metadata": {"name": name},
                "status": {
                    "phase": "Pending",
                    "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message}],
                },
            }
        return {"metadata": {"name": name}, "status": {"containerStatuses": [cs]}}


class FakeClock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds
