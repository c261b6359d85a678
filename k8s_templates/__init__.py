"""Installed as the package `llmops_k8s_templates`: the Jinja2 templates and values files are its data,
read through `llmops.resources.templates_dir()` (see setup.py)."""
