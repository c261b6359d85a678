"""The restricted securityContext (the Pod Security Standard `restricted` profile) of every container the
project creates: the step pods (`operators.kubernetes`), the SparkApplication's driver and executors
(`llmops.rag.sparkapp`) and the serving manifests' containers, vLLM and its model fetchers
(`llmops.deploy.render`, `k8s_templates/vllm/_macros.j2` through the `restricted_container_security`
template global). The images run as a non-root user (the Dockerfile's `USER 50000`)."""

from __future__ import annotations

from typing import Any


def restricted_container() -> dict[str, Any]:
    """A container's `securityContext`: no privilege escalation, no capabilities, not root, the runtime's
    default seccomp profile. A new dict each call: callers may add to it."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
