"""Cheap checks of a training run's inputs, before anything heavy is loaded or any GPU is requested.

Used by `llmops train` first thing and by the fine-tune DAG's `resolve_inputs` task (on the Airflow
worker, before the GPU pod is created). Only `llmops.storage`: no torch, no transformers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.exceptions import InputDataError, ModelLoadError
from llmops.hub import is_hub_id


def base_model_kind(ref: str) -> str:
    """`local`, `s3` or `hub` for a base model reference (a folder that exists is always local)."""
    if not ref or not ref.strip():
        raise ModelLoadError("base_model is empty: give a hub id, a local folder or an s3:// folder")
    if storage.is_s3(ref):
        return "s3"
    if ref.startswith(("/", ".", "~", "file://")) or Path(ref).exists():
        return "local"
    if is_hub_id(ref):
        return "hub"
    raise ModelLoadError(
        f"base_model {ref!r} is neither an existing folder, an s3:// URI nor a hub id (org/name): "
        "fix the path, or build the local one with `llmops base-model build --out DIR`"
    )


def check_base_model(ref: str) -> str:
    """Fail with a clear message when a local or S3 base model is missing or unreadable; return the kind.

    A hub id is checked when the model is loaded (offline mode needs it in the local cache)."""
    kind = base_model_kind(ref)
    if kind == "hub":
        return kind
    config_uri = storage.join(ref, "config.json") if kind == "s3" else str(Path(_local(ref)) / "config.json")
    if kind == "local" and not Path(_local(ref)).is_dir():
        raise ModelLoadError(
            f"base model folder {ref} does not exist: build the tiny local model with "
            f"`llmops base-model build --out {ref}`, or set base_model to an existing folder, s3:// URI or hub id"
        )
    try:
        config = json.loads(storage.read_text(config_uri))
    except FileNotFoundError:
        raise ModelLoadError(
            f"base model {ref} has no config.json: it is not a saved transformers model "
            "(save it with save_pretrained, or rebuild it with `llmops base-model build`)"
        ) from None
    except (ValueError, UnicodeDecodeError):
        raise ModelLoadError(f"base model {ref}: config.json is not valid JSON; re-save or rebuild the model") from None
    except PermissionError:
        raise ModelLoadError(f"base model {ref}: config.json is not readable (permission denied)") from None
    if not isinstance(config, dict) or "model_type" not in config:
        raise ModelLoadError(f"base model {ref}: config.json has no model_type; it is not a transformers model config")
    return kind


def _local(ref: str) -> str:
    return str(storage.local_path(ref).expanduser()) if ref.startswith("file://") else str(Path(ref).expanduser())


def check_dataset(uri: str) -> list[str]:
    """The dataset's data files; fails when there are none."""
    from llmops.training.data import dataset_files

    try:
        return dataset_files(uri)
    except FileNotFoundError:
        raise InputDataError(f"dataset {uri} does not exist") from None


def check_inputs(base_model: str, dataset: str) -> dict[str, Any]:
    """Both checks; a small summary for the DAG's XCom."""
    kind = check_base_model(base_model)
    files = check_dataset(dataset)
    return {"base_model": base_model, "base_model_kind": kind, "dataset": dataset, "dataset_files": len(files)}


CHECKPOINT_MOUNT = "/checkpoints"
"""Where the training pod mounts the `checkpoint_pvc` volume (the operator layer mounts it there)."""


RUN_KEY_TEMPLATE = "{{ run_id | replace(':', '-') | replace('+', '-') }}"
"""`run_key` as a Jinja expression, for DAG templates."""


def run_key(run_id: str) -> str:
    """An Airflow run id made safe for paths and S3 keys (it contains ':' and '+')."""
    return run_id.replace(":", "-").replace("+", "-")


def run_locations(settings, dag_id: str, run_id: str) -> dict[str, str]:
    """Output and checkpoint locations of one fine-tuning DAG run, keyed by DAG id and run id so that a
    task retry finds the same checkpoints (and resumes). The ids may be Jinja expressions.

    Checkpoints go to the PVC when `checkpoint_pvc` is set in mode `kubernetes`, else beside the output.
    """
    output_dir = storage.join(settings.runs, dag_id, run_id, "train")
    if settings.mode == "kubernetes" and settings.kubernetes.checkpoint_pvc:
        checkpoint_dir = f"{CHECKPOINT_MOUNT}/{dag_id}/{run_id}"
    else:
        checkpoint_dir = storage.join(output_dir, "checkpoints")
    return {"output_dir": output_dir, "checkpoint_dir": checkpoint_dir}


def latest_corpus_manifest(processed_uri: str) -> dict[str, Any] | None:
    """The preprocessing output's `manifest.json` (its current corpus snapshot), or None if there is none
    or it was written by another schema version (read by `llmops.rag.snapshot`, the one manifest reader)."""
    from llmops.rag.snapshot import read_manifest_or_none

    return read_manifest_or_none(processed_uri)


LATEST = "latest"
"""The `dataset` value meaning "the dataset version that triggered the run, else the newest one"."""


def latest_dataset(dataset_root: str) -> dict[str, Any] | None:
    """`<dataset_root>/latest.json` (`dataset_hash`, `dataset_uri`: the dataset build's commit point), or None."""
    try:
        latest = json.loads(storage.read_text(storage.join(dataset_root, "latest.json")))
    except (FileNotFoundError, ValueError):
        return None
    return latest if isinstance(latest, dict) and latest.get("dataset_uri") else None


def dataset_version(dataset_uri: str) -> dict[str, Any] | None:
    """A dataset version's manifest (`<dataset_uri>/dataset.json`: hash, snapshot id, generator and its
    config, parent, counts), or None when the dataset is not a version folder (a plain rows file)."""
    if storage.scheme(dataset_uri) in ("", "file") and not storage.local_path(dataset_uri).is_dir():
        return None
    try:
        manifest = json.loads(storage.read_text(storage.join(dataset_uri, "dataset.json")))
    except (FileNotFoundError, ValueError, NotADirectoryError):
        return None
    return manifest if isinstance(manifest, dict) else None


def choose_dataset(settings, dataset: str | None, triggered_uri: str | None = None) -> str:
    """The dataset a run trains on: an explicit URI as given; `latest` (or nothing): the version named by
    the triggering `llmops_dataset` event, else `<dataset_root>/latest.json`, else the `dataset_uri`
    setting's rows (the sample file when nothing was built)."""
    if dataset and dataset != LATEST:
        return dataset
    if triggered_uri:
        return triggered_uri
    latest = latest_dataset(settings.dataset_root)
    return str(latest["dataset_uri"]) if latest else settings.dataset


def resolve_inputs(
    settings, base_model: str | None = None, dataset: str | None = None, triggered_dataset: str | None = None
) -> dict[str, Any]:
    """What a fine-tuning run will read, checked: base model, dataset (and its version manifest), and the
    corpus snapshot the pipeline last indexed (for lineage). Cheap: the fine-tune DAG runs it before
    requesting a GPU."""
    from llmops.contracts import ResolvedInputs

    base_model = base_model or settings.base_model
    dataset = choose_dataset(settings, dataset, triggered_dataset)
    out = check_inputs(base_model, dataset)
    manifest = latest_corpus_manifest(settings.processed)
    out["corpus_manifest"] = storage.join(settings.processed, "manifest.json") if manifest else None
    out["corpus_snapshot_id"] = manifest.get("snapshot_id") if manifest else None
    version = dataset_version(dataset)
    out["dataset_hash"] = version.get("dataset_hash") if version else None
    out["dataset_snapshot_id"] = version.get("snapshot_id") if version else None
    # The evaluation split of a dataset version; a plain rows file has none (evaluate then needs --dataset).
    out["eval_dataset"] = dataset if version else ""
    return ResolvedInputs(**out).to_json()
