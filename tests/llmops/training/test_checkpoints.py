"""Checkpoint folders: atomic, verified, pruned; `--resume auto|true|false` like litgpt."""

from __future__ import annotations

import json
import logging

import pytest

from llmops.exceptions import CheckpointError
from llmops.training import checkpoint as ckpt


def _write(root, step, payload=b"x"):
    return ckpt.write_checkpoint(str(root), step, {"adapter.safetensors": payload, "state.json": b"{}"}, {})


def test_layout_and_marker(tmp_path):
    uri = _write(tmp_path, 120)
    assert uri == str(tmp_path / "step-000120")
    marker = json.loads((tmp_path / "step-000120" / ckpt.MARKER).read_text())
    assert marker["step"] == 120 and set(marker["files"]) == {"adapter.safetensors", "state.json"}
    assert not list(tmp_path.glob(".tmp-*"))
    assert ckpt.verify(ckpt.list_checkpoints(str(tmp_path))[0]) is None


def test_resume_choices(tmp_path):
    assert ckpt.find_resume(str(tmp_path), "auto") is None
    assert ckpt.find_resume(str(tmp_path), "false") is None
    with pytest.raises(CheckpointError, match="--resume true but .* holds no checkpoint"):
        ckpt.find_resume(str(tmp_path / "missing"), "true")
    _write(tmp_path, 3)
    _write(tmp_path, 6)
    assert ckpt.find_resume(str(tmp_path), "true").step == 6
    assert ckpt.find_resume(str(tmp_path), "false") is None
    with pytest.raises(CheckpointError, match="not one of auto, true, false"):
        ckpt.find_resume(str(tmp_path), "maybe")


def test_incomplete_and_corrupt_checkpoints_are_skipped(tmp_path, caplog):
    _write(tmp_path, 3)
    _write(tmp_path, 6)
    _write(tmp_path, 9)
    # step 9 lost a file's content after it was written; step 12 was cut short before its marker.
    (tmp_path / "step-000009" / "adapter.safetensors").write_bytes(b"garbage")
    (tmp_path / "step-000012").mkdir()
    (tmp_path / "step-000012" / "adapter.safetensors").write_bytes(b"x")
    with caplog.at_level(logging.WARNING):
        ref = ckpt.find_resume(str(tmp_path), "auto")
    assert ref.step == 6
    text = caplog.text
    assert "step-000012: incomplete (no completion marker)" in text
    assert "step-000009: file adapter.safetensors does not match its digest" in text
    # Nothing usable at all: `true` fails loudly and says how many were unusable.
    for step in (3, 6):
        (tmp_path / f"step-{step:06d}" / ckpt.MARKER).unlink()
    with pytest.raises(CheckpointError, match="4 unusable checkpoint"):
        ckpt.find_resume(str(tmp_path), "true")


def test_prune_keeps_the_last_k(tmp_path):
    for step in (2, 4, 6, 8):
        _write(tmp_path, step)
    (tmp_path / "step-000005").mkdir()  # an old incomplete leftover
    ckpt.prune(str(tmp_path), keep_last=2)
    assert [r.step for r in ckpt.list_checkpoints(str(tmp_path))] == [6, 8]


def test_rewriting_a_step_replaces_it(tmp_path):
    _write(tmp_path, 4, b"old")
    _write(tmp_path, 4, b"new")
    files, _ = ckpt.read_checkpoint(ckpt.find_resume(str(tmp_path), "true"))
    assert files["adapter.safetensors"] == b"new"


@pytest.mark.s3
def test_s3_checkpoints(s3_bucket):
    root = f"s3://{s3_bucket}/runs/r1/checkpoints"
    _write(root, 5)
    _write(root, 10)
    from llmops import storage

    storage.write_bytes(f"{root}/step-000015/adapter.safetensors", b"partial")  # no marker: incomplete
    ref = ckpt.find_resume(root, "auto")
    assert ref.step == 10 and ref.uri == f"{root}/step-000010"
    ckpt.prune(root, keep_last=1)
    assert [r.step for r in ckpt.list_checkpoints(root)] == [10, 15]
