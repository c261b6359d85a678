"""Kubernetes objects as data: templates rendered to dicts, validated against schemas, dumped as YAML."""
