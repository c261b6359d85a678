"""The deploy step: make a rendered version folder the live one.

Rendered versions sit side by side under `OUT/<model>/<version>/`. What is live is recorded in
`OUT/<model>/kustomization.yaml`, a one-line kustomization pointing at the live version folder, so a
GitOps tool (Argo CD, Flux) syncing `OUT/<model>` deploys exactly that version, and its diff is the
change of one line plus the objects that really changed. Rolling back is pointing it back.

`deploy_folder` validates the folder again (it may have travelled through S3 or Git), then either

- only moves the pointer (GitOps: the controller applies), or
- with an API client, applies the version server-side, waits for the rollout, and moves the pointer
  only when it succeeded; on failure the previous live version is re-applied and the step fails.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import yaml

from llmops import storage
from llmops.contracts import DeploySummary
from llmops.deploy.apply import (
    VERIFICATION_FILE,
    Clock,
    DynamicKubeApi,
    KubeApi,
    canary_weight,
    deploy,
    require_verified_canary,
)
from llmops.exceptions import DeploymentError, ManifestInvalid
from llmops.k8s.templates import to_yaml
from llmops.k8s.validate import validate_documents

log = logging.getLogger(__name__)

LIVE = "kustomization.yaml"
DEFAULT_TIMEOUT_S = 3600
DEADLINE_MARGIN_S = 60


def split_folder(folder: str) -> tuple[str, str]:
    """`OUT/<model>/<version>` -> (`OUT/<model>`, `<version>`)."""
    folder = folder.rstrip("/")
    if "/" not in folder:
        raise DeploymentError(f"{folder!r} is not a version folder OUT/<model>/<version> written by llmops render")
    root, version = folder.rsplit("/", 1)
    return root, version


def live_version(model_root: str) -> str | None:
    """The version folder the live pointer names, or None before the first deploy."""
    uri = storage.join(model_root, LIVE)
    if not storage.exists(uri):
        return None
    doc = yaml.safe_load(storage.read_text(uri)) or {}
    resources = doc.get("resources") or []
    return str(resources[0]).strip("/") if resources else None


def set_live(model_root: str, version: str, model: str) -> bool:
    """Point the live kustomization at a version folder; False when it already did."""
    uri = storage.join(model_root, LIVE)
    text = (
        f"# The live version of {model}: `llmops deploy` points this at a version folder once it is rolled\n"
        "# out (or validated, when a GitOps controller applies). Roll back by naming an older folder.\n"
        + to_yaml({"apiVersion": "kustomize.config.k8s.io/v1beta1", "kind": "Kustomization", "resources": [version]})
    )
    if storage.exists(uri) and storage.read_text(uri) == text:
        return False
    storage.write_text(uri, text)
    return True


def load_objects(folder: str) -> list[dict[str, Any]]:
    """Every object in a version folder (kustomization excluded), validated; `ManifestInvalid` otherwise."""
    if not storage.exists(folder):
        raise DeploymentError(f"version folder {folder} does not exist: run llmops render first")
    objects: list[dict[str, Any]] = []
    problems = []
    names = []
    for info in storage.list_files(folder, recursive=False):
        fname = info.uri.rsplit("/", 1)[-1]
        if not fname.endswith((".yaml", ".yml")) or fname == LIVE:
            continue
        names.append(fname)
        try:
            docs = [d for d in yaml.safe_load_all(storage.read_text(info.uri)) if d is not None]
        except yaml.YAMLError as exc:
            raise ManifestInvalid(f"{info.uri}: not valid YAML: {exc}") from None
        problems.extend(validate_documents(docs, info.uri))
        objects.extend(docs)
    if not names:
        raise DeploymentError(f"version folder {folder} holds no manifests: run llmops render first")
    if problems:
        raise ManifestInvalid(f"{folder} holds invalid manifests:\n  " + "\n  ".join(str(p) for p in problems))
    return objects


def read_verification(folder: str) -> dict[str, Any] | None:
    """The canary verification record of a version folder (`llmops canary verify`), or None."""
    import json

    uri = storage.join(folder, VERIFICATION_FILE)
    if not storage.exists(uri):
        return None
    try:
        record = json.loads(storage.read_text(uri))
    except ValueError:
        raise DeploymentError(f"{uri} is not valid JSON: run `llmops canary verify` again") from None
    return record if isinstance(record, dict) else None


def rollout_timeout(objects: list[dict[str, Any]]) -> float:
    """Long enough for the Deployment controller to declare the rollout failed itself."""
    deadlines = [
        (o.get("spec") or {}).get("progressDeadlineSeconds") or 0 for o in objects if o["kind"] == "Deployment"
    ]
    return max(deadlines, default=0) + DEADLINE_MARGIN_S if any(deadlines) else DEFAULT_TIMEOUT_S


def deploy_folder(
    folder: str,
    api: KubeApi | None = None,
    timeout_s: float | None = None,
    poll_s: float = 5.0,
    clock: Clock | None = None,
) -> dict[str, Any]:
    """Make a version folder live (see the module docstring); returns the step summary."""
    storage.check_uri(folder, "--manifests")
    started = time.perf_counter()
    model_root, version = split_folder(folder)
    model = model_root.rsplit("/", 1)[-1]
    objects = load_objects(folder)
    previous_version = live_version(model_root)
    previous: list[dict[str, Any]] | None = None
    if previous_version and previous_version != version:
        prev_folder = storage.join(model_root, previous_version)
        try:
            previous = load_objects(prev_folder)
        except DeploymentError as exc:
            log.warning("previous live version %s cannot be loaded (%s): no rollback possible", prev_folder, exc)
    summary: dict[str, Any] = {
        "manifests_uri": folder,
        "model": model,
        "version": version,
        "previous_version": previous_version,
        "objects": sorted(f"{o['kind']}/{o['metadata']['name']}" for o in objects),
        "applied": False,
    }
    # GitOps too: moving the pointer makes the controller apply the canary's weight.
    verification = read_verification(folder)
    require_verified_canary(objects, verification, folder)
    summary["canary_weight"] = canary_weight(objects)
    if api is not None:
        timeout = timeout_s if timeout_s is not None else rollout_timeout(objects)
        result = deploy(
            api,
            objects,
            previous,
            timeout,
            what=f"{model} version {version}",
            previous_what=f"{model} version {previous_version}",
            poll_s=poll_s,
            clock=clock,
            verification=verification,
        )
        summary.update(applied=True, deleted=result.deleted, rollout=result.rollout)
    summary["live_changed"] = set_live(model_root, version, model)
    summary["live"] = version
    summary["deploy_s"] = round(time.perf_counter() - started, 3)
    return DeploySummary(**summary).to_json()


def kube_api_from_kubeconfig(context: str | None = None) -> KubeApi:
    """A `KubeApi` for the CLI: in-cluster config in a pod, else the kubeconfig (optionally a context)."""
    try:
        from kubernetes import client, config
    except ImportError:
        raise DeploymentError("--apply needs the kubernetes package (pip install kubernetes)") from None
    if context:
        config.load_kube_config(context=context)
    else:
        try:
            config.load_incluster_config()
        except config.ConfigException:
            config.load_kube_config()
    return DynamicKubeApi(client.ApiClient())
