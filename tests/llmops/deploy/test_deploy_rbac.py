"""The canary check's Role and RoleBinding (`llmops.deploy.rbac`): a golden file, valid against the
Kubernetes schemas, naming exactly the proxied Services and the rendered objects.

After an intended change: UPDATE_GOLDEN=1 .venv/bin/pytest tests/llmops/deploy/test_deploy_rbac.py
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from llmops.deploy.config import load_config
from llmops.deploy.rbac import canary_rbac
from llmops.deploy.render import render
from llmops.exceptions import ConfigError
from llmops.k8s.validate import validate_documents
from llmops.settings import Settings

from .conftest import CHALLENGER, CHAMPION

REPO = Path(__file__).resolve().parents[3]
GOLDEN = Path(__file__).parent / "golden" / "rbac" / "canary-verify.yaml"
SETTINGS = Settings(data_root="/srv/llmops", namespace="llmops", model_cache_pvc="llmops-model-cache")


def _canary():
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS, **{"canary.enabled": True})
    return render(CHALLENGER, config, stable=CHAMPION)


def test_golden_and_valid():
    text = canary_rbac(_canary(), "llmops-runner", "llmops")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(text, encoding="utf-8")
    assert text == GOLDEN.read_text(encoding="utf-8"), "differs from the golden file; if intended: UPDATE_GOLDEN=1"
    docs = list(yaml.safe_load_all(GOLDEN.read_text()))
    assert validate_documents(docs, str(GOLDEN)) == []


def test_rules_name_the_proxied_services_and_the_rendered_objects():
    rendered = _canary()
    role, binding = yaml.safe_load_all(canary_rbac(rendered, "runner", "steps"))
    assert role["metadata"]["namespace"] == rendered.namespace
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "runner", "namespace": "steps"}]
    proxy = next(r for r in role["rules"] if r["resources"] == ["services/proxy"])
    assert set(proxy["verbs"]) == {"get", "create"}
    n = rendered.name
    assert {n, f"{n}-canary"} <= set(proxy["resourceNames"]) and any(":" in x for x in proxy["resourceNames"])
    deployments = next(r for r in role["rules"] if r["resources"] == ["deployments"])
    assert deployments["apiGroups"] == ["apps"] and deployments["resourceNames"] == [n, f"{n}-canary"]
    assert "delete" in deployments["verbs"] and "patch" in deployments["verbs"]
    assert all("create" not in r["verbs"] for r in role["rules"] if r["resources"] != ["services/proxy"])


def test_no_canary_needs_no_rbac():
    config = load_config(str(REPO / "examples/gpu/deploy.yaml"), SETTINGS)
    with pytest.raises(ConfigError, match="no canary rendered"):
        canary_rbac(render(CHAMPION, config), "runner", "steps")
