"""Every reader of the corpus manifest goes through `llmops.rag.snapshot` and its schema check."""

from __future__ import annotations

import json

import pytest

from llmops.exceptions import InputDataError
from llmops.rag.snapshot import MANIFEST, SCHEMA_VERSION
from llmops.registry import read_manifest as registry_lineage
from llmops.training.inputs import latest_corpus_manifest


def _write(folder, **fields):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / MANIFEST).write_text(json.dumps(fields))


def test_current_schema_is_read_by_training_and_registry(tmp_path):
    out = tmp_path / "processed"
    _write(out, schema_version=SCHEMA_VERSION, snapshot_id="s1", embedding_model="m", chunking={"size": 5})
    assert latest_corpus_manifest(str(out))["snapshot_id"] == "s1"
    lineage = {"snapshot_id": "s1", "embedding_model": "m", "chunking": {"size": 5}}
    assert registry_lineage(str(out / MANIFEST)) == lineage
    assert registry_lineage(str(out)) == lineage


def test_other_schema_version_is_not_taken_for_a_snapshot(tmp_path):
    out = tmp_path / "processed"
    _write(out, schema_version=-1, snapshot_id="old")
    assert latest_corpus_manifest(str(out)) is None
    with pytest.raises(InputDataError, match="schema_version"):
        registry_lineage(str(out / MANIFEST))


def test_missing_manifest_is_tolerated(tmp_path):
    assert latest_corpus_manifest(str(tmp_path / "none")) is None
    assert registry_lineage(str(tmp_path / "none" / MANIFEST)) == {}
    assert registry_lineage(None) == {}
