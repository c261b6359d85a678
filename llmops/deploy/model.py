"""What a deployment serves: one model version, as a base model + LoRA adapter or as a full model.

`served_model(uri)` accepts what `llmops render --model-uri` accepts:

- `models:/NAME@alias` or `models:/NAME/VERSION`: resolved by the model registry (`llmops.registry`);
- a model folder (local path or `s3://`): an adapter folder (`adapter_config.json`, its base model taken
  from `base_model_name_or_path`) or a full model folder (`config.json`).

Only metadata is read (small JSON files), never the weights: rendering a 70B model's manifests is as
fast as a tiny one's.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from llmops import storage
from llmops.exceptions import ConfigError, ModelLoadError, RegistryError
from llmops.hub import is_hub_id as is_hub_id

ADAPTER_CONFIG = "adapter_config.json"
MODEL_CONFIG = "config.json"
GENERIC_FOLDER_NAMES = {"adapter", "model", "artifacts", "final", "output", "merged"}
"""Folder names that say nothing about the model: the name is taken from the folder above them."""


@dataclass(frozen=True)
class ServedModel:
    """One model version as the serving side needs it."""

    name: str
    """Registered model name (or the folder's name)."""
    version: str
    """Registry version, or a content id (`sha-…`) for a folder: same files, same id."""
    uri: str
    """The URI the version was asked for by (`models:/NAME@champion`, a folder)."""
    base: str | None = None
    """Base model of an adapter: a hub id, a local path or an `s3://` URI."""
    adapter: str | None = None
    """Adapter folder (local path or `s3://`)."""
    model: str | None = None
    """Full (merged) model folder, when there is no adapter."""
    lora_rank: int | None = None
    """Largest LoRA rank in the adapter (`r`, or the largest of `rank_pattern`)."""
    run_id: str | None = None
    """Training run id (MLflow), when known."""
    aliases: tuple[str, ...] = ()
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def is_adapter(self) -> bool:
        return self.adapter is not None


def _read_json(uri: str) -> dict[str, Any] | None:
    try:
        data = storage.read_bytes(uri)
    except FileNotFoundError:
        return None
    try:
        out = json.loads(data)
    except json.JSONDecodeError as exc:
        raise ModelLoadError(f"{uri} is not valid JSON ({exc.msg})") from None
    return out if isinstance(out, dict) else None


def adapter_rank(adapter_config: dict[str, Any]) -> int | None:
    ranks = [adapter_config.get("r")]
    ranks += list((adapter_config.get("rank_pattern") or {}).values())
    ints = [int(r) for r in ranks if isinstance(r, int | float)]
    return max(ints) if ints else None


def content_id(uri: str) -> str:
    """A short id of a folder's content: file names and sizes, plus the bytes of its JSON files."""
    files = storage.list_files(uri)
    base = uri.rstrip("/")
    digest = hashlib.sha256()
    for f in files:
        rel = f.uri[len(base):].lstrip("/") if f.uri.startswith(base) else f.uri
        digest.update(f"{rel}\0{f.size}\0".encode())
        if rel.endswith(".json"):
            digest.update(storage.read_bytes(f.uri))
    return "sha-" + digest.hexdigest()[:12]


def folder_name(uri: str) -> str:
    parts = [p for p in PurePosixPath(uri.split("://", 1)[-1]).parts if p not in ("/", "")]
    for part in reversed(parts):
        if part.lower() not in GENERIC_FOLDER_NAMES:
            return part
    return parts[-1] if parts else "model"


def _plain(location: str | None) -> str | None:
    """`file:///a/b` -> `/a/b` (MLflow's local artifact URIs); other locations unchanged."""
    if location and storage.scheme(location) == "file":
        return str(storage.local_path(location))
    return location


def from_resolved(resolved: Any, uri: str) -> ServedModel:
    """A registry `ResolvedModel` (`llmops.registry.resolve(uri, download=False)`) as a `ServedModel`.

    Where the adapter lives (`adapter_uri`: the artifact store, s3:// in a cluster) wins over a local
    download: the serving pod reads it from there. The adapter's rank comes from its config."""
    kind = getattr(resolved, "kind", "registry")
    adapter = _plain(getattr(resolved, "adapter_uri", None) or resolved.adapter_path)
    base = _plain(resolved.base_model)
    model = None if adapter else _plain(resolved.model_path or (base if kind in ("model", "hub") else None))
    if not adapter and not model:
        raise RegistryError(f"{uri}: the version has neither an adapter nor a model folder: nothing to serve")
    rank = None
    if adapter:
        cfg = _read_json(storage.join(adapter, ADAPTER_CONFIG)) or {}
        rank = adapter_rank(cfg)
        base = base or _plain(cfg.get("base_model_name_or_path"))
        if not base:
            raise RegistryError(f"{uri}: the adapter at {adapter} names no base model")
    location = str(adapter or model)
    if resolved.version:
        version = str(resolved.version)
    elif kind == "hub":
        version = re.sub(r"[^A-Za-z0-9._-]+", "-", location)
    else:
        version = content_id(location)
    return ServedModel(
        name=str(resolved.name or folder_name(location)),
        version=version,
        uri=uri,
        base=base if adapter else None,
        adapter=adapter,
        model=model,
        lora_rank=rank,
        run_id=resolved.run_id or None,
        aliases=tuple(getattr(resolved, "aliases", ()) or ()),
        tags={str(k): str(v) for k, v in (getattr(resolved, "tags", None) or {}).items()},
    )


def served_model(uri: str) -> ServedModel:
    """Resolve `--model-uri` (a `models:/` URI, a folder path or an `s3://` folder) without
    downloading anything: only the adapter's small config is read."""
    if not uri or not uri.strip():
        raise ConfigError("--model-uri is empty: give models:/NAME@champion, models:/NAME/3 or a model folder")
    from llmops import registry

    uri = uri.strip()
    return from_resolved(registry.resolve(uri, download=False), uri)


def stable_uri_for(model: ServedModel, configured: str | None) -> str:
    """The stable (champion) version beside a canary: the configured URI, else the registry's champion."""
    if configured:
        return configured
    if model.uri.startswith("models:/"):
        return f"models:/{model.name}@champion"
    raise ConfigError(
        f"canary.stable_model_uri: required when the canary ({model.uri}) is a folder, not a models:/ URI; "
        "give the stable version's models:/ URI or folder"
    )
