"""An s3:// base model reaches training through the registry's model cache (one download rule)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import storage
from llmops.registry import COMPLETE_MARKER
from llmops.settings import load_settings
from llmops.training.trainer import resolve_base_model


@pytest.mark.s3
def test_s3_base_model_downloaded_once_and_never_half(s3_bucket, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "config.json").write_text('{"model_type": "llama"}')
    (src / "model.safetensors").write_bytes(b"weights")
    uri = f"s3://{s3_bucket}/models/base"
    storage.upload_dir(src, uri)
    settings = load_settings(environ={}, model_cache_uri=str(tmp_path / "cache"))

    path = Path(resolve_base_model(uri, settings))
    assert path.parent == tmp_path / "cache"
    assert (path / "model.safetensors").read_bytes() == b"weights"
    assert (path / COMPLETE_MARKER).read_text().strip() == uri
    assert not path.with_name(path.name + ".partial").exists()

    # A second run reuses the complete copy: the object store is not read again.
    storage.s3_client().delete_object(Bucket=s3_bucket, Key="models/base/model.safetensors")
    assert Path(resolve_base_model(uri, settings)) == path

    # A folder without the marker (a download killed half-way) is not taken for a model.
    (path / COMPLETE_MARKER).unlink()
    storage.upload_dir(src, uri)
    (path / "model.safetensors").write_bytes(b"half")
    (path / "stale.bin").write_bytes(b"left over")
    again = Path(resolve_base_model(uri, settings))
    assert (again / "model.safetensors").read_bytes() == b"weights"
    assert not (again / "stale.bin").exists()  # the folder is replaced whole, not written over
