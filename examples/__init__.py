"""Installed as the package `llmops_examples`: the configs the settings default to (`gate_policy`,
`deploy_config`) are its data, found by `llmops.resources.resolve("examples/...")` (see setup.py)."""
