"""Render a model version into validated, deterministic Kubernetes manifests.

The decisions live here, in typed Python (which objects exist, the vLLM flags, where the weights come
from); the templates under `k8s_templates/vllm/` only lay out one kind each. The flow never writes
anything invalid or half-written:

    render(model, config) -> objects (in memory) -> validate every object -> files (text)
    write(rendered, OUT)  -> OUT/<model>/<version>/ replaced in one rename (local), or file by file (s3)

The same inputs give byte-identical files: no timestamps, keys in template order, mappings sorted.
"""

from __future__ import annotations

import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.deploy.config import NAME_MAX, DeployConfig
from llmops.deploy.model import ServedModel, is_hub_id, served_model, stable_uri_for
from llmops.exceptions import ConfigError, ManifestInvalid
from llmops.k8s.secrets import hf_token_refs, s3_refs, secret_key_ref_env
from llmops.k8s.security import restricted_container
from llmops.k8s.templates import render as render_template
from llmops.k8s.templates import to_yaml
from llmops.k8s.validate import check_documents

log = logging.getLogger(__name__)

FAMILY = "vllm"
MANAGED_BY = "airflow-llmops"
KUSTOMIZATION = "kustomization.yaml"
CANARY_PLAN = "canary-plan.json"
"""Beside a canary's manifests: its target weight, the HTTPRoute at that weight and the stable-only
manifests, for `llmops canary verify` to swap in (`llmops.deploy.canary`)."""
CACHE_MOUNT = "/cache"
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
KSERVE_MODEL_FORMAT = "vllm"


@dataclass
class Rendered:
    """One version's manifests, validated, in memory."""

    model: ServedModel
    stable: ServedModel | None
    name: str
    namespace: str
    files: dict[str, str]
    """File name -> YAML text, sorted by name; includes `kustomization.yaml`."""
    objects: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    """File name -> the objects in it (the kustomization excluded)."""
    validated_by: dict[str, str] = field(default_factory=dict)
    """`Kind/name` -> the schema source that validated it: `builtin` (kubernetes-validate), `cluster`
    (the target cluster's CRD), `crd_dir` (the crd_dir setting's CRD files) or `project` (llmops/k8s/schemas)."""

    @property
    def model_dir(self) -> str:
        return path_segment(self.model.name)

    @property
    def version_dir(self) -> str:
        return path_segment(self.model.version)

    def folder(self, out: str) -> str:
        return storage.join(out, self.model_dir, self.version_dir)

    def all_objects(self) -> list[dict[str, Any]]:
        return [obj for name in sorted(self.objects) for obj in self.objects[name]]


# --- names and labels ----------------------------------------------------------------------------


def path_segment(value: str) -> str:
    """A safe folder name for a model name or version."""
    out = re.sub(r"[^A-Za-z0-9._-]+", "-", str(value)).strip("-.")
    return out or "model"


def dns_name(value: str) -> str:
    """A model name turned into a DNS-1123 label (lower case, invalid runs replaced by '-')."""
    out = re.sub(r"[^a-z0-9-]+", "-", value.lower())
    out = re.sub(r"-+", "-", out).strip("-")
    return out[:NAME_MAX].rstrip("-")


def label_value(value: str) -> str:
    """A label value (at most 63 characters of [A-Za-z0-9-_.], alphanumeric at both ends)."""
    out = re.sub(r"[^A-Za-z0-9_.-]+", "-", str(value))[:63]
    out = re.sub(r"^[^A-Za-z0-9]+|[^A-Za-z0-9]+$", "", out)
    return out


def app_name(config: DeployConfig, model: ServedModel) -> str:
    if config.name:
        return config.name
    name = dns_name(model.name)
    if not name:
        raise ConfigError(
            f"name: the model name {model.name!r} gives no valid DNS-1123 name; set `name` in the deploy config"
        )
    return name


def common_labels(config: DeployConfig, name: str, model: ServedModel) -> dict[str, str]:
    labels = {
        "app.kubernetes.io/name": "vllm",
        "app.kubernetes.io/instance": name,
        "app.kubernetes.io/component": "server",
        "app.kubernetes.io/part-of": MANAGED_BY,
        "app.kubernetes.io/managed-by": MANAGED_BY,
        "llmops.dev/model": label_value(model.name),
    }
    for key, value in config.labels.items():
        labels.setdefault(key, value)
    return labels


def track_labels(config: DeployConfig, name: str, model: ServedModel, track: str) -> dict[str, str]:
    labels = common_labels(config, name, model)
    labels["llmops.dev/track"] = track
    labels["llmops.dev/version"] = label_value(model.version)
    labels["app.kubernetes.io/version"] = label_value(model.version)
    if model.run_id:
        labels["llmops.dev/run-id"] = label_value(model.run_id)
    return dict(sorted(labels.items()))


def selector(name: str, track: str) -> dict[str, str]:
    # Never put the version in a selector: Deployment selectors are immutable across versions.
    return {"app.kubernetes.io/instance": name, "app.kubernetes.io/name": "vllm", "llmops.dev/track": track}


def quantity(value: float) -> str:
    """A Kubernetes quantity string for a positive number (`5`, `2500m`)."""
    if float(value).is_integer():
        return str(int(value))
    return f"{round(value * 1000)}m"


# --- where the weights come from -----------------------------------------------------------------


@dataclass
class Source:
    """Paths vLLM reads, plus the pod pieces (volumes, init containers, env) that put them there."""

    serve: str
    lora: str | None
    volumes: list[dict[str, Any]]
    mounts: list[dict[str, Any]]
    init_containers: list[dict[str, Any]]
    env: list[dict[str, Any]]


def _under(path: str, prefix: str) -> str | None:
    """`path` relative to `prefix` when it lies under it."""
    p, pre = path.rstrip("/"), prefix.rstrip("/")
    if p == pre:
        return ""
    if p.startswith(pre + "/"):
        return p[len(pre) + 1:]
    return None


def model_source(config: DeployConfig, model: ServedModel) -> Source:
    """Decide how the serving pod reads the version's weights, or fail naming the config field."""
    src = config.source
    artifacts: list[tuple[str, str, str]] = []  # (role, location, what to call it in errors)
    if model.is_adapter:
        artifacts.append(("base", str(model.base), "the base model"))
        artifacts.append(("adapter", str(model.adapter), "the adapter"))
    elif model.model:
        artifacts.append(("model", model.model, "the model"))
    else:
        raise ConfigError(f"{model.uri}: the version has neither an adapter nor a model folder: nothing to serve")

    volumes: list[dict[str, Any]] = []
    mounts: list[dict[str, Any]] = []
    init: list[dict[str, Any]] = []
    paths: dict[str, str] = {}
    if src.kind == "pvc":
        if not src.claim_name:
            raise ConfigError(
                "source.claim_name: no model source: the weights are read from a model cache PVC but none is "
                "named; set source.claim_name (or the model_cache_pvc setting, LLMOPS_MODEL_CACHE_PVC), or use "
                "source.kind: s3 to copy them from s3://"
            )
        for role, location, what in artifacts:
            if role != "adapter" and is_hub_id(location):
                paths[role] = location
                continue
            rel = _under(location, src.mount_path)
            if rel is not None:
                paths[role] = location
                continue
            rel = _under(location, src.mirrors) if src.mirrors else None
            if rel is None:
                raise ConfigError(
                    f"source.mirrors: {what} {location} is not on the model cache PVC: it is neither under "
                    f"source.mount_path ({src.mount_path}) nor under source.mirrors ({src.mirrors}); set "
                    "source.mirrors to the folder or s3:// prefix the PVC holds a copy of, or use source.kind: s3"
                )
            paths[role] = f"{src.mount_path}/{rel}" if rel else src.mount_path
        volumes.append(
            {"name": "model-cache", "persistentVolumeClaim": {"claimName": src.claim_name, "readOnly": True}}
        )
        mounts.append({"name": "model-cache", "mountPath": src.mount_path, "readOnly": True})
    else:
        volumes.append({"name": "models", "emptyDir": {"sizeLimit": src.volume_size}})
        mounts.append({"name": "models", "mountPath": src.mount_path, "readOnly": True})
        for role, location, what in artifacts:
            if role != "adapter" and is_hub_id(location):
                paths[role] = location
                continue
            if not storage.is_s3(location):
                raise ConfigError(
                    f"source.kind: s3, but {what} is at {location}, which a pod cannot read; upload it to "
                    "s3:// (or register the version with an s3:// artifact store), or use source.kind: pvc"
                )
            dest = f"{src.mount_path}/{role}"
            paths[role] = dest
            init.append(_copy_container(config, role, location, dest))
    env = _env(config, [loc for role, loc, _ in artifacts if role != "adapter"])
    if model.is_adapter:
        return Source(paths["base"], paths["adapter"], volumes, mounts, init, env)
    return Source(paths["model"], None, volumes, mounts, init, env)


def _copy_container(config: DeployConfig, role: str, location: str, dest: str) -> dict[str, Any]:
    src = config.source
    args = ["s3", "cp", "--recursive", "--only-show-errors", location.rstrip("/") + "/", dest]
    if src.endpoint_url:
        args += ["--endpoint-url", src.endpoint_url]
    env: list[dict[str, Any]] = [{"name": "HOME", "value": CACHE_MOUNT}]
    if src.region:
        env.append({"name": "AWS_DEFAULT_REGION", "value": src.region})
    env += secret_key_ref_env(s3_refs(src.credentials_secret))
    return {
        "name": f"fetch-{role}",
        "image": src.copy_image,
        "imagePullPolicy": config.image_pull_policy,
        "command": ["aws"],
        "args": args,
        "env": env,
        "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}},
        "securityContext": restricted_container(),
        "volumeMounts": [
            {"name": "models", "mountPath": src.mount_path},
            {"name": "cache", "mountPath": CACHE_MOUNT},
        ],
    }


def _env(config: DeployConfig, weights: list[str]) -> list[dict[str, Any]]:
    # Non-root with a read-only model volume: every cache goes to the /cache scratch volume.
    env: list[dict[str, Any]] = [
        {"name": "HOME", "value": CACHE_MOUNT},
        {"name": "XDG_CACHE_HOME", "value": CACHE_MOUNT},
        {"name": "HF_HOME", "value": f"{CACHE_MOUNT}/huggingface"},
        {"name": "VLLM_NO_USAGE_STATS", "value": "1"},
    ]
    if any(is_hub_id(w) for w in weights):
        env += secret_key_ref_env(hf_token_refs(config.hf_token_secret))
    else:
        # Everything is local: never let a typo turn into a silent download from the hub.
        env.append({"name": "HF_HUB_OFFLINE", "value": "1"})
    return env


# --- the vLLM server -----------------------------------------------------------------------------


def vllm_args(config: DeployConfig, model: ServedModel, source: Source, served_name: str) -> list[str]:
    """The `vllm serve` arguments (checked against the current vLLM CLI: `vllm serve --help`)."""
    args = [source.serve, "--host", "0.0.0.0", "--port", str(config.port)]
    if model.is_adapter:
        # Clients ask for the adapter by the served name; the bare base stays reachable as <name>-base.
        args += ["--served-model-name", f"{served_name}-base"]
    else:
        args += ["--served-model-name", served_name]
    args += [
        "--tensor-parallel-size", str(config.tp_size),
        "--max-model-len", str(config.max_model_len),
        "--dtype", config.dtype,
    ]
    if config.gpus:
        args += ["--gpu-memory-utilization", f"{config.gpu_memory_utilization:g}"]
    args.append("--enable-prefix-caching" if config.enable_prefix_caching else "--no-enable-prefix-caching")
    if model.is_adapter:
        check_lora_rank(config, model)
        args += [
            "--enable-lora",
            "--lora-modules", f"{served_name}={source.lora}",
            "--max-lora-rank", str(config.max_lora_rank),
            "--max-loras", str(config.max_loras),
        ]
    args += list(config.extra_args)
    return args


def check_lora_rank(config: DeployConfig, model: ServedModel) -> None:
    rank = model.lora_rank
    if rank is None:
        return
    if rank > config.max_lora_rank:
        from llmops.deploy.config import VLLM_LORA_RANKS

        fits = [r for r in VLLM_LORA_RANKS if r >= rank]
        fix = f"set max_lora_rank: {fits[0]}" if fits else (
            f"vLLM serves ranks up to {VLLM_LORA_RANKS[-1]}: retrain with a smaller r or merge the adapter"
        )
        raise ConfigError(
            f"max_lora_rank ({config.max_lora_rank}) is below the LoRA rank of the adapter ({rank}, "
            f"{model.adapter}): vLLM would refuse to load it; {fix}"
        )


def resources(config: DeployConfig) -> dict[str, Any]:
    requests: dict[str, str] = {"cpu": config.cpu, "memory": config.memory}
    limits: dict[str, str] = {"memory": config.memory}
    if config.gpus:
        requests[str(config.gpu_resource_name)] = str(config.gpus)
        limits[str(config.gpu_resource_name)] = str(config.gpus)
    return {"limits": limits, "requests": requests}


def _container_ctx(config: DeployConfig, model: ServedModel, source: Source, served_name: str) -> dict[str, Any]:
    return {
        "image": config.image,
        "image_pull_policy": config.image_pull_policy,
        "args": vllm_args(config, model, source, served_name),
        "port": config.port,
        "env": source.env,
        "resources": resources(config),
        "volume_mounts": [
            *source.mounts,
            {"name": "dshm", "mountPath": "/dev/shm"},
            {"name": "cache", "mountPath": CACHE_MOUNT},
        ],
        "probes": _probes_ctx(config),
    }


def _probes_ctx(config: DeployConfig) -> dict[str, Any]:
    p = config.probes
    return {**p.model_dump(), "startup_failures": math.ceil(p.startup_budget_s / p.period_s)}


def _pod_ctx(config: DeployConfig, source: Source) -> dict[str, Any]:
    gpu = config.gpus > 0
    return {
        "run_as_user": config.run_as_user,
        "termination_grace_s": config.termination_grace_s,
        "service_account": config.service_account,
        "priority_class": config.priority_class,
        "node_selector": dict(sorted((config.node_selector or {}).items())) if gpu else {},
        "tolerations": list(config.tolerations or []) if gpu else [],
        "init_containers": source.init_containers,
        "volumes": [
            *source.volumes,
            # vLLM's workers exchange tensors through shared memory; the container default (64Mi) is far too small.
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": config.shm_size}},
            {"name": "cache", "emptyDir": {"sizeLimit": config.cache_size}},
        ],
    }


def _track(
    config: DeployConfig, name: str, model: ServedModel, track: str, served_name: str
) -> dict[str, Any]:
    source = model_source(config, model)
    obj_name = name if track == "stable" else f"{name}-canary"
    labels = track_labels(config, name, model, track)
    autoscaled = track == "stable" and config.autoscaling.engine != "none"
    replicas = None if autoscaled else (config.replicas if track == "stable" else config.canary.replicas)
    annotations = {"llmops.dev/model-uri": model.uri}
    if model.is_adapter:
        annotations["llmops.dev/base-model"] = str(model.base)
        annotations["llmops.dev/adapter"] = str(model.adapter)
    else:
        annotations["llmops.dev/model-path"] = str(model.model)
    return {
        "name": obj_name,
        "namespace": config.namespace,
        "track": track,
        "labels": labels,
        "pod_labels": labels,
        "selector": selector(name, track),
        "annotations": dict(sorted(annotations.items())),
        # With an autoscaler the replica count is its to set: a manifest value would reset it on every apply.
        "replicas": replicas,
        "progress_deadline_s": config.probes.startup_budget_s + config.rollout.timeout_s,
        "max_surge": config.rollout.max_surge,
        "max_unavailable": config.rollout.max_unavailable,
        "pdb_max_unavailable": config.max_unavailable,
        "container": _container_ctx(config, model, source, served_name),
        "pod": _pod_ctx(config, source),
    }


def _waiting_query(namespace: str, service: str) -> str:
    return f'sum(vllm:num_requests_waiting{{namespace="{namespace}",service="{service}"}})'


# --- assembling one version ----------------------------------------------------------------------


def render(model: ServedModel, config: DeployConfig, stable: ServedModel | None = None) -> Rendered:
    """All manifests of one version (with the stable version beside it for a canary), validated."""
    if config.canary.enabled and stable is None:
        raise ConfigError("canary.enabled: the stable version is needed beside the canary (canary.stable_model_uri)")
    if not config.canary.enabled:
        stable = None
    name = app_name(config, model)
    namespace = str(config.namespace)
    served_name = config.served_model_name or config.name or model.name
    files: dict[str, list[dict[str, Any]]] = {}

    tracks = [("stable", stable or model), ("canary", model)] if stable else [("stable", model)]
    ctxs = {track: _track(config, name, m, track, served_name) for track, m in tracks}
    shared = {
        "name": name,
        "namespace": namespace,
        "labels": dict(sorted(common_labels(config, name, model).items())),
        "selector": {"app.kubernetes.io/instance": name, "app.kubernetes.io/name": "vllm"},
        "port": config.port,
    }

    if config.kserve.enabled:
        _kserve(config, name, namespace, ctxs, shared, files)
    else:
        for track, t in ctxs.items():
            suffix = "" if track == "stable" else "-canary"
            files[f"deployment{suffix}.yaml"] = render_template("vllm/deployment.yaml.j2", {"t": t})
            files[f"service{suffix}.yaml"] = render_template("vllm/service.yaml.j2", {"t": t})
            files[f"poddisruptionbudget{suffix}.yaml"] = render_template("vllm/poddisruptionbudget.yaml.j2", {"t": t})
        _autoscaler(config, ctxs["stable"], files)

    if config.monitoring.enabled:
        monitor = {
            **shared,
            "interval": config.monitoring.interval,
            "monitor_labels": dict(sorted({**shared["labels"], **config.monitoring.labels}.items())),
        }
        if config.kserve.enabled:
            files["podmonitor.yaml"] = render_template("vllm/podmonitor.yaml.j2", {"s": monitor})
        else:
            files["servicemonitor.yaml"] = render_template("vllm/servicemonitor.yaml.j2", {"s": monitor})
    if config.network_policy.enabled:
        files["networkpolicy.yaml"] = render_template(
            "vllm/networkpolicy.yaml.j2", {"s": {**shared, "peers": _peers(config)}}
        )
    if config.route.gateway:
        # A canary starts at weight 0: `llmops canary verify` moves it to canary.weight once the challenger passed.
        files["httproute.yaml"] = render_template(
            "vllm/httproute.yaml.j2", {"s": _route(config, shared, ctxs, 0 if stable else None)}
        )

    objects = {k: files[k] for k in sorted(files)}
    checked = check_documents([o for k in objects for o in objects[k]], "rendered manifests")
    problems = [p for c in checked for p in c.problems]
    if problems:
        raise ManifestInvalid(
            f"the manifests rendered for {model.name} version {model.version} are invalid (nothing written):\n  "
            + "\n  ".join(str(p) for p in problems)
        )
    header = (
        f"# Rendered by airflow-llmops (llmops render) for {model.name} version {model.version}"
        + (f" (canary beside version {stable.version}, weight 0 until `llmops canary verify` passes)"
           if stable else "")
        + ".\n# Do not edit: changes are overwritten by the next render.\n"
    )
    texts = {fname: header + to_yaml(docs) for fname, docs in objects.items()}
    if stable is not None and config.route.gateway:
        texts[CANARY_PLAN] = _canary_plan(model, stable, config, shared, ctxs, header)
    texts[KUSTOMIZATION] = header + to_yaml(
        {
            "apiVersion": "kustomize.config.k8s.io/v1beta1",
            "kind": "Kustomization",
            "resources": sorted(objects),
        }
    )
    return Rendered(
        model=model,
        stable=stable,
        name=name,
        namespace=namespace,
        files=dict(sorted(texts.items())),
        objects=objects,
        validated_by={c.obj: c.source for c in checked},
    )


def _autoscaler(config: DeployConfig, t: dict[str, Any], files: dict[str, list[dict[str, Any]]]) -> None:
    a = config.autoscaling
    ctx = {
        "min_replicas": a.min_replicas,
        "max_replicas": a.max_replicas,
        "polling_interval_s": a.polling_interval_s,
        "cooldown_s": a.cooldown_s,
        "prometheus_url": a.prometheus_url,
        "query": _waiting_query(t["namespace"], t["name"]),
        "threshold": quantity(a.waiting_requests_target),
        "metric": a.hpa_metric,
    }
    if a.engine == "keda":
        files["scaledobject.yaml"] = render_template("vllm/scaledobject.yaml.j2", {"t": t, "a": ctx})
    elif a.engine == "hpa":
        files["horizontalpodautoscaler.yaml"] = render_template(
            "vllm/horizontalpodautoscaler.yaml.j2", {"t": t, "a": ctx}
        )


def _peers(config: DeployConfig) -> list[dict[str, Any]]:
    peers: list[dict[str, Any]] = [{"podSelector": {}}]
    namespaces = list(config.network_policy.allow_namespaces)
    if config.route.gateway and config.route.gateway_namespace:
        namespaces.append(config.route.gateway_namespace)
    for ns in sorted(set(namespaces) - {config.namespace}):
        peers.append({"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}})
    return peers


def _canary_plan(
    model: ServedModel,
    stable: ServedModel,
    config: DeployConfig,
    shared: dict[str, Any],
    ctxs: dict[str, dict[str, Any]],
    header: str,
) -> str:
    """What `llmops canary verify` writes once it decided (`llmops.deploy.canary`): the HTTPRoute at the
    configured weight when the challenger passes, the stable version's own manifests (no canary) when it
    fails. Both are rendered and validated here, so the check only swaps in files render made."""
    import json

    route = render_template("vllm/httproute.yaml.j2", {"s": _route(config, shared, ctxs)})
    problems = [p for c in check_documents(route, "canary route") for p in c.problems]
    if problems:
        raise ManifestInvalid("the canary's HTTPRoute at its weight is invalid:\n  " + "\n  ".join(map(str, problems)))
    alone = config.model_copy(update={"canary": config.canary.model_copy(update={"enabled": False})})
    plan = {
        "weight": config.canary.weight,
        "challenger": {"version": model.version, "uri": model.uri, "adapter": model.adapter, "base": model.base},
        "champion": {"version": stable.version, "uri": stable.uri, "adapter": stable.adapter, "base": stable.base},
        "verified": {"httproute.yaml": header + to_yaml(route)},
        "rollback": render(stable, alone).files,
    }
    return json.dumps(plan, indent=2, sort_keys=True) + "\n"


def _route(
    config: DeployConfig, shared: dict[str, Any], ctxs: dict[str, dict[str, Any]], canary_weight: int | None = None
) -> dict[str, Any]:
    r = config.route
    weights = {"stable": 100, "canary": 0}
    if "canary" in ctxs:
        w = config.canary.weight if canary_weight is None else canary_weight
        weights = {"stable": 100 - w, "canary": w}
    backends = []
    for track, t in ctxs.items():
        if config.kserve.enabled:
            # KServe (raw deployment) fronts each InferenceService with `<name>-predictor` on port 80.
            backends.append({"name": f"{t['name']}-predictor", "port": 80, "weight": weights[track]})
        else:
            backends.append({"name": t["name"], "port": config.port, "weight": weights[track]})
    return {
        **shared,
        "gateway": r.gateway,
        "gateway_namespace": r.gateway_namespace or config.namespace,
        "hostnames": list(r.hostnames),
        "path_prefix": r.path_prefix,
        "backends": backends,
    }


def _kserve(
    config: DeployConfig,
    name: str,
    namespace: str,
    ctxs: dict[str, dict[str, Any]],
    shared: dict[str, Any],
    files: dict[str, list[dict[str, Any]]],
) -> None:
    runtime = f"{name}-vllm"
    files["servingruntime.yaml"] = render_template(
        "vllm/servingruntime.yaml.j2",
        {
            "r": {
                "name": runtime,
                "namespace": namespace,
                "labels": shared["labels"],
                "model_format": KSERVE_MODEL_FORMAT,
                "image": config.image,
                "image_pull_policy": config.image_pull_policy,
                "port": config.port,
                "probes": _probes_ctx(config),
            }
        },
    )
    a = config.autoscaling
    for track, t in ctxs.items():
        annotations = {**t["annotations"], "serving.kserve.io/deploymentMode": config.kserve.deployment_mode}
        autoscaling = None
        if track == "stable" and a.engine == "keda":
            annotations["serving.kserve.io/autoscalerClass"] = "keda"
            autoscaling = {
                "metrics": [
                    {
                        "type": "External",
                        "external": {
                            "metric": {
                                "backend": "prometheus",
                                "serverAddress": a.prometheus_url,
                                # Scraped by a PodMonitor: series carry the pod's name, not a Service's.
                                "query": (
                                    "sum(vllm:num_requests_waiting"
                                    f'{{namespace="{namespace}",pod=~"{t["name"]}-predictor-.*"}})'
                                ),
                            },
                            "target": {"type": "AverageValue", "averageValue": quantity(a.waiting_requests_target)},
                        },
                    }
                ]
            }
        if track == "stable" and a.engine != "none":
            lo, hi = a.min_replicas, a.max_replicas
        else:
            lo = hi = t["replicas"]
        ctx = {
            **t,
            "isvc_annotations": dict(sorted(annotations.items())),
            "runtime": runtime,
            "model_format": KSERVE_MODEL_FORMAT,
            "min_replicas": lo,
            "max_replicas": hi,
            "autoscaling": autoscaling,
        }
        suffix = "" if track == "stable" else "-canary"
        files[f"inferenceservice{suffix}.yaml"] = render_template("vllm/inferenceservice.yaml.j2", {"t": ctx})


# --- writing -------------------------------------------------------------------------------------


def write(rendered: Rendered, out: str) -> tuple[str, bool]:
    """Write the version folder `OUT/<model>/<version>/`; returns (folder, changed).

    Locally the folder is built beside its final place and swapped in by rename, so a reader sees the
    old complete folder or the new complete one, never a mix. On S3 the files are written one by one,
    `kustomization.yaml` last, and files of an older render that are not in this one are deleted.
    """
    storage.check_uri(out, "--out")
    folder = rendered.folder(out)
    if current_files(folder) == rendered.files:
        return folder, False
    if storage.is_s3(folder):
        for fname, text in rendered.files.items():
            if fname != KUSTOMIZATION:
                storage.write_text(storage.join(folder, fname), text)
        storage.write_text(storage.join(folder, KUSTOMIZATION), rendered.files[KUSTOMIZATION])
        for info in storage.list_files(folder):
            if info.uri.rsplit("/", 1)[-1] not in rendered.files:
                storage.delete(info.uri)
        return folder, True
    target = storage.local_path(folder)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{target.name}-", dir=target.parent))
    try:
        for fname, text in rendered.files.items():
            (tmp / fname).write_text(text, encoding="utf-8")
        tmp.chmod(0o755)
        old = None
        if target.exists():
            old = target.parent / f".old-{target.name}-{tmp.name.rsplit('-', 1)[-1]}"
            os.rename(target, old)
        os.rename(tmp, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder, True


def current_files(folder: str) -> dict[str, str]:
    """The YAML files (and the canary plan) of a version folder (empty when it does not exist)."""
    out: dict[str, str] = {}
    for info in storage.list_files(folder, recursive=False) if storage.exists(folder) else []:
        fname = info.uri.rsplit("/", 1)[-1]
        if fname.endswith((".yaml", ".yml")) or fname == CANARY_PLAN:
            out[fname] = storage.read_text(info.uri)
    return dict(sorted(out.items()))


def render_uri(model_uri: str, config: DeployConfig) -> Rendered:
    """Resolve a `--model-uri` (and the stable version for a canary) and render it."""
    model = served_model(model_uri)
    stable = None
    if config.canary.enabled:
        stable = served_model(stable_uri_for(model, config.canary.stable_model_uri))
        if stable.version == model.version and stable.name == model.name:
            raise ConfigError(
                f"canary.enabled: the canary ({model_uri}) is the stable version itself ({stable.version}); "
                "render the challenger (models:/NAME@challenger) or turn the canary off"
            )
    return render(model, config, stable)
