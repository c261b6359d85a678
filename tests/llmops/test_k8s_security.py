"""One restricted securityContext (llmops.k8s.security) for the SparkApplication's pods and every
container of the serving manifests; the step pod's is checked in tests/operators/test_kubernetes_step.py."""

from __future__ import annotations

from pathlib import Path

import yaml

from llmops.k8s.security import restricted_container
from llmops.rag.sparkapp import render_spark_application
from llmops.settings import load_settings

GOLDEN = Path(__file__).parent / "deploy" / "golden"


def test_the_restricted_context_is_the_pod_security_standard_one():
    ctx = restricted_container()
    assert ctx == {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    ctx["runAsUser"] = 1
    assert "runAsUser" not in restricted_container()  # a fresh dict each call


def test_spark_driver_and_executors_run_restricted():
    settings = load_settings(environ={}, mode="kubernetes", data_root="s3://b/llmops",
                             mlflow_tracking_uri="http://mlflow:5000")
    app = render_spark_application(settings, ["--input", "s3://b/in"], validate=True)
    assert app["spec"]["driver"]["securityContext"] == restricted_container()
    assert app["spec"]["executor"]["securityContext"] == restricted_container()


def _containers(obj):
    """Every container (and init container) of a rendered object, wherever its pod template is."""
    if isinstance(obj, dict):
        for key, value in obj.items():
            if key in ("containers", "initContainers") and isinstance(value, list):
                yield from value
            else:
                yield from _containers(value)
    elif isinstance(obj, list):
        for item in obj:
            yield from _containers(item)


def test_every_serving_container_runs_restricted():
    files = sorted(GOLDEN.glob("*/*.yaml"))
    containers = [c for f in files for doc in yaml.safe_load_all(f.read_text()) if doc for c in _containers(doc)]
    assert len(containers) >= 5, f"too few containers in the goldens under {GOLDEN}"
    for c in containers:
        assert c.get("securityContext") == restricted_container(), c.get("name")
