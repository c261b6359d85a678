"""The Role and RoleBinding the canary check needs in mode kubernetes (`llmops render --rbac`).

`llmops canary verify` runs as the step pods' service account (settings `kubernetes.service_account` in
`kubernetes.namespace`) and, in the serving namespace:

- asks the stable and canary Services through the API server's service proxy: `get` and `create` (GET
  and POST requests) on `services/proxy`, named by the HTTPRoute's backends. The names are listed both
  bare and as `NAME:PORT`, the form the proxy path carries (`/services/NAME:PORT/proxy/...`);
- after a failed check, rolls back: server-side applies the stable-only objects (`get`, `patch`) and
  deletes the canary's (`delete`), so those verbs on the rendered objects, each kind restricted to the
  names the version renders.

Nothing else: applying the canary at weight 0 and at its weight is the deploy step's (the Airflow
worker's identity), which needs the apply rights listed in README "Cluster".
"""

from __future__ import annotations

from typing import Any

from llmops.deploy.render import Rendered
from llmops.exceptions import ConfigError, ManifestInvalid
from llmops.k8s.templates import to_yaml
from llmops.k8s.validate import check_documents

ROLE_SUFFIX = "-canary-verify"


def _plural(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") else lower + "s"


def _group(api_version: str) -> str:
    return api_version.rsplit("/", 1)[0] if "/" in api_version else ""


def canary_rbac(rendered: Rendered, service_account: str, service_account_namespace: str) -> str:
    """Role + RoleBinding (YAML, validated) for `llmops canary verify` on a rendered canary."""
    objects = [o for docs in rendered.objects.values() for o in docs]
    route = next((o for o in objects if o.get("kind") == "HTTPRoute"), None)
    if rendered.stable is None or route is None:
        raise ConfigError(
            f"{rendered.name}: no canary rendered (canary.enabled with route.gateway): the canary check needs no RBAC"
        )
    refs = [r for rule in route["spec"].get("rules") or [] for r in rule.get("backendRefs") or []]
    proxied = sorted({n for r in refs for n in (r["name"], f"{r['name']}:{r['port']}")})
    by_resource: dict[tuple[str, str], set[str]] = {}
    for o in objects:
        key = (_group(o["apiVersion"]), _plural(o["kind"]))
        by_resource.setdefault(key, set()).add(o["metadata"]["name"])
    rules: list[dict[str, Any]] = [
        {"apiGroups": [""], "resources": ["services/proxy"], "resourceNames": proxied, "verbs": ["create", "get"]}
    ]
    for (group, resource), names in sorted(by_resource.items()):
        rules.append({"apiGroups": [group], "resources": [resource], "resourceNames": sorted(names),
                      "verbs": ["delete", "get", "patch"]})
    name = rendered.name + ROLE_SUFFIX
    labels = {"app.kubernetes.io/instance": rendered.name, "app.kubernetes.io/managed-by": "airflow-llmops"}
    meta = {"name": name, "namespace": rendered.namespace, "labels": labels}
    docs = [
        {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role", "metadata": meta, "rules": rules},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": meta,
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
            "subjects": [{"kind": "ServiceAccount", "name": service_account, "namespace": service_account_namespace}],
        },
    ]
    problems = [p for c in check_documents(docs, "canary RBAC") for p in c.problems]
    if problems:
        raise ManifestInvalid("the canary check's Role/RoleBinding is invalid:\n  " + "\n  ".join(map(str, problems)))
    header = (
        f"# Rendered by airflow-llmops (llmops render --rbac) for {rendered.model.name}: what `llmops canary verify`\n"
        f"# needs in mode kubernetes (llmops.deploy.rbac). Apply it once per name and namespace.\n"
    )
    return header + to_yaml(docs)
