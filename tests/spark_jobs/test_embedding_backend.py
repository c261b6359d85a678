"""The preprocessing job with the ONNX backends: the manifest records the backend, searches follow it, a
backend change rebuilds the snapshot, and `llmops bench rag --backend` reports speed and the quality guard."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from llmops.cli import main
from llmops.embedding import embed
from llmops.exceptions import ConfigError
from llmops.rag.config import PreprocessConfig
from llmops.rag.job import run_preprocess
from llmops.rag.search import search
from llmops.rag.snapshot import read_manifest, read_snapshot
from tests.conftest import require_shared
from tests.rag_helpers import write_corpus

pytestmark = pytest.mark.slow


def config(input_uri: str, output_uri: str, **kw) -> PreprocessConfig:
    from llmops.settings import load_settings

    return PreprocessConfig.from_settings(load_settings(), input_uri=input_uri, output_uri=output_uri,
                                          chunk_size=128, chunk_overlap=16, **kw)


@pytest.fixture(autouse=True)
def _model_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LLMOPS_EMBEDDING_CACHE", str(tmp_path_factory.getbasetemp() / "model-cache"))


def test_backend_in_manifest_search_and_rebuild(spark, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", k8s=[])
    out = tmp_path / "out"
    int8 = run_preprocess(config(str(corpus), str(out), embedding_backend="onnx-int8"))
    assert int8["embedding_backend"] == "onnx-int8" and "export_s" in int8["timings"]
    assert read_manifest(str(out))["embedding_backend"] == "onnx-int8"
    hits = search(str(out), "What is the default port of the Larkspur Harbor service?", k=3)
    assert hits[0]["source"].endswith("components/harbor.md")
    with pytest.raises(ConfigError, match="embedded with backend 'onnx-int8'"):
        search(str(out), "harbor port", backend="torch")

    # Another backend: another snapshot, every chunk embedded again; fp32 ONNX equals torch per chunk.
    fp32 = run_preprocess(config(str(corpus), str(out), embedding_backend="onnx"))
    assert fp32["snapshot_id"] != int8["snapshot_id"] and fp32["full_rebuild"]
    assert fp32["chunks_embedded"] == fp32["chunks_total"] > 0
    frame = read_snapshot(str(out), columns=["text", "embedding"])
    stored = np.stack(frame["embedding"].to_numpy())
    cos = np.sum(stored * embed(frame["text"].tolist(), backend="torch"), axis=1)
    assert cos.min() >= 0.9999
    # torch is proven equivalent to onnx: allowed for queries on this index.
    assert search(str(out), "harbor port", k=1, backend="torch")[0]["source"].endswith("harbor.md")
    again = run_preprocess(config(str(corpus), str(out), embedding_backend="onnx"))
    assert not again["snapshot_changed"]


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="openvino is not installed (the spark and train extras install it)")
def test_openvino_job_equals_torch_and_accepts_torch_queries(spark, tmp_path):
    corpus = write_corpus(tmp_path / "corpus", k8s=[])
    out = tmp_path / "out"
    summary = run_preprocess(config(str(corpus), str(out), embedding_backend="openvino"))
    assert summary["embedding_backend"] == "openvino" and summary["chunks_embedded"] > 0
    assert read_manifest(str(out))["embedding_backend"] == "openvino"
    frame = read_snapshot(str(out), columns=["text", "embedding"])
    stored = np.stack(frame["embedding"].to_numpy())
    cos = np.sum(stored * embed(frame["text"].tolist(), backend="torch"), axis=1)
    assert cos.min() >= 0.9999, cos.min()
    hits = search(str(out), "What is the default port of the Larkspur Harbor service?", k=3)
    assert hits[0]["source"].endswith("components/harbor.md")
    # proven equivalent (tests/llmops/rag/test_embedding_backends.py): torch and onnx queries allowed
    assert search(str(out), "harbor port", k=1, backend="torch")[0]["source"].endswith("harbor.md")
    with pytest.raises(ConfigError, match="embedded with backend 'openvino'"):
        search(str(out), "harbor port", backend="onnx-int8")


@pytest.mark.requires_shared("corpus")  # before the Spark session starts
def test_bench_rag_reports_backend_ceiling_and_quality(spark, capsys):
    docs = require_shared("corpus") / "k8s-docs"
    assert main(["bench", "rag", str(docs), "--limit", "6", "--backend", "onnx", "--json"]) == 0
    import json

    result = json.loads(capsys.readouterr().out)
    assert result["embedding_backend"] == "onnx" and result["chunks"] > 0
    for key in ("chunks_per_s", "ceiling_chunks_per_s", "ratio", "backend_ceiling_chunks_per_s", "backend_ratio"):
        assert result[key] > 0, key
    q = result["quality"]
    assert q["passed"], q["failures"]
    assert q["cosine_p1"] >= 0.9999 and q["queries"] > 0 and q["hit_at_5_query_change"] == 0


def test_bench_rag_corpus_argument_and_input_must_agree(capsys):
    assert main(["bench", "rag", "/a", "--input", "/b"]) == 2
    assert "differ" in capsys.readouterr().err
    assert main(["bench", "rag"]) == 2
    assert "needs the documents" in capsys.readouterr().err
