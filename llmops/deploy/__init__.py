"""Deploying a registered model version to vLLM on Kubernetes.

    config.py   the typed deployment config (defaults in k8s_templates/vllm/values.yaml)
    model.py    what is served: base model, adapter, name, version, run id (from the registry or a folder)
    render.py   config + model -> Kubernetes objects -> validated, deterministic files, written atomically
    apply.py    server-side apply through an API client, rollout wait, rollback (no Airflow import)
    smoke.py    load the version with transformers/peft on CPU and answer a prompt (local mode)
"""
