"""Which documents a run must read: listing the input and comparing it with the last manifest.

Shared by the preprocessing job (on the Spark driver) and the landing sensor (on an Airflow worker), so
both agree on what "new or changed" means:

- a document whose listed version (S3 ETag, or local mtime+size) equals the manifest's is unchanged
  without being read;
- one whose version differs is read and hashed (sha256): an equal hash is still unchanged (a touched
  file), a different one is changed;
- manifest documents no longer listed are deleted.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from llmops import storage
from llmops.rag.extract import SUPPORTED_EXTENSIONS, document_format
from llmops.storage import FileInfo

QUARANTINE_CONTENT = "content"
"""Quarantine kinds: `content` (decided by reading the bytes; kept while the version is unchanged),
`type` and `size` (decided from the listing, re-checked every run)."""


def is_hidden(uri: str, root: str) -> bool:
    """Dot-files and folders (`.DS_Store`, `.git/`) and our own temporary files are not documents."""
    rel = uri[len(root.rstrip("/")) + 1:] if uri.startswith(root.rstrip("/") + "/") else PurePosixPath(uri).name
    return any(part.startswith(".") for part in PurePosixPath(rel).parts)


def list_documents(input_uri: str, limit: int | None = None) -> list[FileInfo]:
    """Every document under the input (hidden files excluded), sorted by URI.

    `limit` keeps that many, chosen by a hash of their path relative to the input: deterministic, and a
    spread over the whole tree rather than the alphabetically first folder.
    """
    files = [f for f in storage.list_files(input_uri) if not is_hidden(f.uri, input_uri)]
    if limit is not None and limit < len(files):
        root = input_uri.rstrip("/") + "/"

        def key(f: FileInfo) -> str:
            return hashlib.sha256(f.uri.removeprefix(root).encode()).hexdigest()

        files = sorted(sorted(files, key=key)[:limit], key=lambda f: f.uri)
    return files


def document_hash(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class ToRead:
    """A document the job must read: its listing, the hash it had before (if any), and whether it must be
    re-chunked even when its hash is unchanged (its chunks were partly duplicates of changed documents)."""

    file: FileInfo
    old_hash: str | None = None
    force: bool = False
    was_quarantined: bool = False


@dataclass
class Plan:
    files: list[FileInfo]
    unchanged: dict[str, dict] = field(default_factory=dict)
    """source -> manifest entry, for documents whose version is unchanged."""
    to_read: list[ToRead] = field(default_factory=list)
    quarantined: dict[str, dict] = field(default_factory=dict)
    """source -> {reason, kind, version, size[, hash]} decided without reading."""
    deleted: list[str] = field(default_factory=list)

    @property
    def changes_possible(self) -> bool:
        return bool(self.to_read or self.deleted)


def _refused(f: FileInfo, kind: str, reason: str) -> dict[str, Any]:
    """The quarantine entry of a listed file refused before reading (its type or its size)."""
    return {"reason": reason, "kind": kind, "version": f.version, "size": f.size}


def make_plan(
    files: list[FileInfo],
    previous: dict | None,
    max_document_mb: float,
) -> Plan:
    """Classify listed documents against the previous manifest (None: everything is new)."""
    plan = Plan(files=files)
    old_docs = (previous or {}).get("documents", {})
    old_quarantine = (previous or {}).get("quarantined", {})
    max_bytes = int(max_document_mb * 1024 * 1024)
    for f in files:
        if document_format(f.uri) is None:
            suffix = PurePosixPath(f.uri).suffix or "(no extension)"
            plan.quarantined[f.uri] = _refused(
                f, "type", f"unsupported file type {suffix}: supported are {' '.join(sorted(SUPPORTED_EXTENSIONS))}"
            )
            continue
        if f.size > max_bytes:
            plan.quarantined[f.uri] = _refused(
                f, "size", f"oversized: {f.size / 1048576:.1f} MB is more than max_document_mb = {max_document_mb:g}"
            )
            continue
        old = old_docs.get(f.uri)
        if old is not None and old.get("version") == f.version:
            plan.unchanged[f.uri] = old
            continue
        oldq = old_quarantine.get(f.uri)
        if oldq is not None and oldq.get("kind") == QUARANTINE_CONTENT and oldq.get("version") == f.version:
            plan.quarantined[f.uri] = dict(oldq)
            continue
        if old is not None:
            plan.to_read.append(ToRead(f, old_hash=old.get("hash")))
        else:
            plan.to_read.append(ToRead(f, old_hash=(oldq or {}).get("hash"), was_quarantined=oldq is not None))
    listed = {f.uri for f in files}
    plan.deleted = sorted(set(old_docs) - listed)
    # Documents now quarantined by type or size lose their chunks like deleted ones.
    plan.deleted += sorted(u for u in plan.quarantined if u in old_docs)
    return plan


def pending_changes(input_uri: str, output_uri: str, max_document_mb: float = 50.0) -> dict:
    """New, changed and deleted documents of a landing location against the output's manifest.

    Reads (and hashes) only documents whose listed version changed. Returns a JSON-able summary:
    `new`, `changed`, `deleted` (lists of URIs), `documents` (new + changed), `landing_uri`.
    """
    from llmops.rag.snapshot import read_manifest_or_none

    storage.check_uri(input_uri, "landing URI")
    previous = read_manifest_or_none(output_uri)
    plan = make_plan(list_documents(input_uri), previous, max_document_mb)
    new, changed = [], []
    for item in plan.to_read:
        if item.old_hash is None:
            new.append(item.file.uri)
            continue
        try:
            data = storage.read_bytes(item.file.uri)
        except FileNotFoundError:
            continue  # removed since the listing: the next run sees it as deleted
        if document_hash(data) != item.old_hash:
            changed.append(item.file.uri)
    deleted = [u for u in plan.deleted if u not in plan.quarantined]
    return {
        "landing_uri": input_uri,
        "output_uri": output_uri,
        "new": new,
        "changed": changed,
        "deleted": deleted,
        "documents": len(new) + len(changed),
        "seen": len(plan.files),
    }
