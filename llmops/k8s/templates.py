"""Render the declarative templates under `k8s_templates/` into Kubernetes objects (dicts).

The templates are package data (`llmops.resources.templates_dir()`: `LLMOPS_TEMPLATES_DIR`, else the
installed `llmops_k8s_templates`), so a wheel renders with no checkout around it.

Templates are Jinja2 with `StrictUndefined`: a value missing from the context is a hard error naming it,
never an empty string in a manifest. Rendered text is parsed with `yaml.safe_load_all`, so the result is
data that callers validate (`llmops.k8s.validate`) before anything is written or submitted.
"""

from __future__ import annotations

import functools
import json
from typing import Any

import yaml

from llmops.exceptions import ConfigError, ManifestInvalid
from llmops.k8s.security import restricted_container
from llmops.resources import templates_dir


@functools.lru_cache(maxsize=4)
def _environment(directory: str):
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(directory),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    # `tojson` keeps every inserted value a valid YAML scalar (YAML is a superset of JSON).
    env.filters["tojson"] = lambda v: json.dumps(v, sort_keys=True)
    env.globals["restricted_container_security"] = restricted_container()
    return env


def render(template: str, context: dict[str, Any]) -> list[dict[str, Any]]:
    """Render one template file into the objects it describes."""
    import jinja2

    env = _environment(str(templates_dir()))
    try:
        text = env.get_template(template).render(**context)
    except jinja2.UndefinedError as exc:
        raise ConfigError(f"template {template}: a required value is missing: {exc.message}") from None
    except jinja2.TemplateNotFound:
        raise ConfigError(f"template {template} not found under {templates_dir()}") from None
    try:
        docs = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as exc:
        raise ManifestInvalid(f"template {template} rendered invalid YAML: {exc}") from None
    return docs


def load_values(name: str) -> dict[str, Any]:
    """Defaults of a template family (`<family>/values.yaml`)."""
    path = templates_dir() / name
    try:
        return yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"values file {name} not found under {templates_dir()}") from None


class _Dumper(yaml.SafeDumper):
    """Block-style YAML with multi-line strings as literal blocks; deterministic output."""


def _str_representer(dumper: yaml.SafeDumper, data: str):
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_Dumper.add_representer(str, _str_representer)


def to_yaml(docs: list[dict[str, Any]] | dict[str, Any]) -> str:
    """Deterministic YAML: the same objects always give byte-identical text."""
    if isinstance(docs, dict):
        docs = [docs]
    return yaml.dump_all(docs, Dumper=_Dumper, sort_keys=False, default_flow_style=False, width=1000)
