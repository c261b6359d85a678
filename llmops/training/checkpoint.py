"""Checkpoints like litgpt: `<checkpoint_dir>/step-000120/` with the full training state.

A checkpoint folder holds the adapter weights (`adapter.safetensors`), the optimizer and scheduler
states, the RNG states, the training state (step, data position, tokens, MLflow run id) and the
config. It is complete only once its marker `COMPLETE.json` exists; the marker is written last and
lists the sha256 of every other file, so a reader can tell a complete checkpoint from one cut short
(no marker) or damaged later (a digest mismatch). Both are skipped with a warning when resuming.

Locally a checkpoint is first written into a hidden `.tmp-step-...` folder and renamed into place, so
the `step-...` name only ever appears complete; on S3 (no rename) the marker alone decides.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.exceptions import CheckpointError

log = logging.getLogger(__name__)

MARKER = "COMPLETE.json"
STEP_DIR = re.compile(r"^step-(\d{6,})$")
RESUME_CHOICES = ("auto", "true", "false")


def step_name(step: int) -> str:
    return f"step-{step:06d}"


@dataclass(frozen=True)
class CheckpointRef:
    step: int
    uri: str


def list_checkpoints(checkpoint_dir: str) -> list[CheckpointRef]:
    """Every `step-NNNNNN` folder under the checkpoint dir (complete or not), oldest first."""
    storage.check_uri(checkpoint_dir, "checkpoint dir")
    found: dict[int, str] = {}
    if storage.is_s3(checkpoint_dir):
        base = checkpoint_dir.rstrip("/") + "/"
        for f in storage.list_files(checkpoint_dir):
            first = f.uri[len(base):].split("/", 1)[0]
            m = STEP_DIR.match(first)
            if m:
                found[int(m.group(1))] = base + first
    else:
        root = storage.local_path(checkpoint_dir)
        if root.is_dir():
            for p in root.iterdir():
                m = STEP_DIR.match(p.name)
                if m and p.is_dir():
                    found[int(m.group(1))] = str(p)
    return [CheckpointRef(step, found[step]) for step in sorted(found)]


def verify(ref: CheckpointRef) -> str | None:
    """None for a complete, intact checkpoint; else why it cannot be used."""
    marker_uri = storage.join(ref.uri, MARKER)
    try:
        marker = json.loads(storage.read_text(marker_uri))
    except FileNotFoundError:
        return "incomplete (no completion marker)"
    except (ValueError, UnicodeDecodeError):
        return "corrupt completion marker"
    files = marker.get("files")
    if not isinstance(files, dict) or marker.get("step") != ref.step:
        return "corrupt completion marker"
    for name, digest in files.items():
        try:
            actual = storage.sha256(storage.join(ref.uri, name))  # streamed: shards can be large
        except FileNotFoundError:
            return f"file {name} is missing"
        if actual != digest:
            return f"file {name} does not match its digest"
    return None


def find_resume(checkpoint_dir: str, resume: str) -> CheckpointRef | None:
    """The checkpoint to resume from under `--resume auto|true|false` (litgpt's `find_resume_path`).

    `false`: none. `auto`: the newest complete, intact checkpoint, or none. `true`: the same, but having
    none is an error. Incomplete and corrupt checkpoints are skipped with a warning.
    """
    resume = str(resume).lower()
    if resume not in RESUME_CHOICES:
        raise CheckpointError(f"--resume {resume!r} is not one of auto, true, false")
    if resume == "false":
        return None
    candidates = list_checkpoints(checkpoint_dir)
    for ref in reversed(candidates):
        problem = verify(ref)
        if problem is None:
            return ref
        log.warning("Skipping checkpoint %s: %s", ref.uri, problem)
    if resume == "true":
        seen = f"{len(candidates)} unusable checkpoint(s)" if candidates else "no checkpoint"
        raise CheckpointError(
            f"--resume true but {checkpoint_dir} holds {seen}: use --resume auto to start fresh when there is "
            "nothing to resume, or point --checkpoint-dir at the earlier run's checkpoints"
        )
    return None


def write_checkpoint(checkpoint_dir: str, step: int, files: dict[str, bytes], meta: dict[str, Any]) -> str:
    """Write one checkpoint atomically and return its URI. `files` maps names to bytes."""
    name = step_name(step)
    digests = {fname: hashlib.sha256(data).hexdigest() for fname, data in files.items()}
    marker = json.dumps({"step": step, "files": digests, "written_at": time.time(), **meta}, indent=1).encode()
    if storage.is_s3(checkpoint_dir):
        final = storage.join(checkpoint_dir, name)
        # A leftover of a killed attempt at this step must not mix with the new files.
        storage.delete(final)
        for fname, data in files.items():
            storage.write_bytes(storage.join(final, fname), data)
        storage.write_bytes(storage.join(final, MARKER), marker)
        return final
    root = storage.local_path(checkpoint_dir)
    root.mkdir(parents=True, exist_ok=True)
    tmp = root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    for fname, data in {**files, MARKER: marker}.items():
        with open(tmp / fname, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
    final_path = root / name
    if final_path.exists():
        shutil.rmtree(final_path)
    os.replace(tmp, final_path)
    _fsync_dir(root)
    return str(final_path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_checkpoint(ref: CheckpointRef) -> tuple[dict[str, bytes], dict[str, Any]]:
    """The files and the marker's metadata of a verified checkpoint."""
    marker = json.loads(storage.read_text(storage.join(ref.uri, MARKER)))
    files = {name: storage.read_bytes(storage.join(ref.uri, name)) for name in marker["files"]}
    return files, marker


def prune(checkpoint_dir: str, keep_last: int) -> list[str]:
    """Delete all but the newest `keep_last` complete checkpoints (and stale temporary folders)."""
    refs = list_checkpoints(checkpoint_dir)
    complete = [r for r in refs if storage.exists(storage.join(r.uri, MARKER))]
    deleted = []
    if complete:
        newest = complete[-1].step
        keep = {r.step for r in complete[-keep_last:]}
        for r in refs:
            # Incomplete leftovers older than the newest complete checkpoint will never be resumed from.
            if r.step not in keep and r.step <= newest:
                storage.delete(r.uri)
                deleted.append(r.uri)
    if not storage.is_s3(checkpoint_dir):
        root = storage.local_path(checkpoint_dir)
        for p in root.glob(".tmp-step-*") if root.is_dir() else []:
            if not p.name.endswith(f"-{os.getpid()}"):
                shutil.rmtree(p, ignore_errors=True)
    return deleted
