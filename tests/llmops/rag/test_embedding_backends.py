"""Embedding backends: the ONNX export against torch, its cache, the backend checks, the bench's guard.

The packaged all-MiniLM-L6-v2 is exported for real (offline, into a temporary model cache).
"""

from __future__ import annotations

import importlib.util
import json
import sys

import numpy as np
import pytest

from llmops import embedding
from llmops.dev.bench.rag import QUALITY_GUARD, hits_at_5, quality, query_set
from llmops.exceptions import ConfigError, ModelLoadError

needs_openvino = pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                                    reason="openvino is not installed (the spark and train extras install it)")

TEXTS = [
    "Pods are the smallest deployable units of computing that you can create and manage in Kubernetes.",
    "kubectl",
    "A Service is a method for exposing a network application that is running as one or more Pods in your "
    "cluster. " * 8,
    "ConfigMaps hold non-confidential data in key-value pairs.",
    "Ein Satz auf Deutsch, damit der Tokenizer auch Umlaute sieht: Größe, Übung.",
    "",
]


@pytest.fixture(scope="module")
def model_cache(tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    mp = pytest.MonkeyPatch()
    mp.setenv("LLMOPS_EMBEDDING_CACHE", str(root))
    embedding.get_embedder.cache_clear()
    yield root
    embedding.get_embedder.cache_clear()
    mp.undo()


def test_onnx_matches_torch_per_text_in_the_callers_order(model_cache):
    ref = embedding.embed(TEXTS, backend="torch")
    got = embedding.embed(TEXTS, backend="onnx", batch_size=2)  # several batches, sorted by length inside
    assert got.shape == ref.shape and got.dtype == np.float32
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= 0.9999, cos
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    # Reversed input, reversed rows: the length sort is undone.
    back = embedding.embed(TEXTS[::-1], backend="onnx", batch_size=4)
    assert np.allclose(back[::-1], got, atol=1e-5)


def test_int8_is_close_but_not_identical(model_cache):
    ref = embedding.embed(TEXTS, backend="torch")
    got = embedding.embed(TEXTS, backend="onnx-int8")
    cos = np.sum(ref * got, axis=1)
    assert cos.min() > 0.9, cos
    assert cos.min() < 0.99999  # really quantized, not the fp32 export under another name


def test_export_is_cached_by_model_hash_and_backend(model_cache):
    path = embedding.export_model("all-MiniLM-L6-v2", "onnx")
    digest = embedding.model_hash("all-MiniLM-L6-v2")
    assert path == model_cache / "all-MiniLM-L6-v2" / digest / "onnx.onnx"
    mtime = path.stat().st_mtime_ns
    assert embedding.export_model("all-MiniLM-L6-v2", "onnx") == path
    assert path.stat().st_mtime_ns == mtime  # not exported again
    int8 = embedding.export_model("all-MiniLM-L6-v2", "onnx-int8")
    assert int8.parent == path.parent and int8.name == "onnx-int8.onnx"
    assert int8.stat().st_size < path.stat().st_size / 2


def test_fused_int8_is_exported_fused_quantized_and_cached(model_cache):
    import onnx

    path = embedding.export_model("all-MiniLM-L6-v2", "onnx-int8-fused")
    digest = embedding.model_hash("all-MiniLM-L6-v2")
    assert path == model_cache / "all-MiniLM-L6-v2" / digest / "onnx-int8-fused.onnx"
    # BERT subgraphs fused; the FFN input MatMuls int8; attention (Q/K/V), the attention and FFN output
    # projections and the embeddings left fp32.
    model = onnx.load(str(path))
    ops = {n.op_type for n in model.graph.node}
    assert {"Attention", "EmbedLayerNormalization", "SkipLayerNormalization", "MatMulInteger"} <= ops
    assert not ops & {"QAttention", "QEmbedLayerNormalization", "Softmax"}
    fp32 = [n.name for n in model.graph.node if n.op_type == "MatMul"]
    assert len(fp32) == 12 and all("/output/dense/" in n for n in fp32), fp32
    assert sum(n.op_type == "MatMulInteger" for n in model.graph.node) == 6
    mtime = path.stat().st_mtime_ns
    embedding.get_embedder.cache_clear()
    assert embedding.export_model("all-MiniLM-L6-v2", "onnx-int8-fused") == path
    assert path.stat().st_mtime_ns == mtime  # not exported again
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_fused_int8_is_close_to_torch_in_the_callers_order(model_cache):
    ref = embedding.embed(TEXTS, backend="torch")
    got = embedding.embed(TEXTS, backend="onnx-int8-fused", batch_size=2)
    cos = np.sum(ref * got, axis=1)
    assert cos.min() >= QUALITY_GUARD["cosine_min"], cos
    assert cos.min() < 0.99999  # really quantized
    # Activations are quantized per batch, so a text's vector depends a little on its batch mates: the same
    # batch size gives the same (length-sorted) batches, and reversed input must come back reversed.
    back = embedding.embed(TEXTS[::-1], backend="onnx-int8-fused", batch_size=2)
    assert np.allclose(back[::-1], got, atol=1e-5)


@needs_openvino
def test_openvino_matches_torch_per_text_in_the_callers_order(model_cache):
    ref = embedding.embed(TEXTS, backend="torch")
    got = embedding.embed(TEXTS, backend="openvino", batch_size=2)
    assert got.shape == ref.shape and got.dtype == np.float32
    cos = np.sum(ref * got, axis=1)
    # what EQUIVALENT_BACKENDS claims for (torch, openvino) and (onnx, openvino)
    assert cos.min() >= 0.9999, cos
    onnx = embedding.embed(TEXTS, backend="onnx", batch_size=2)
    assert np.sum(onnx * got, axis=1).min() >= 0.9999
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    back = embedding.embed(TEXTS[::-1], backend="openvino", batch_size=4)
    assert np.allclose(back[::-1], got, atol=1e-5)


@needs_openvino
def test_openvino_export_is_fp32_ir_converted_once_and_cached(model_cache):
    import openvino as ov

    path = embedding.export_model("all-MiniLM-L6-v2", "openvino")
    digest = embedding.model_hash("all-MiniLM-L6-v2")
    assert path == model_cache / "all-MiniLM-L6-v2" / digest / "openvino.xml"
    assert path.with_suffix(".bin").is_file()
    # converted from the cached fp32 ONNX export, weights not compressed to fp16
    assert (path.parent / "onnx.onnx").is_file()
    weights = [op for op in ov.Core().read_model(str(path)).get_ops() if op.get_type_name() == "Constant"]
    types = {str(op.get_element_type()) for op in weights}
    assert "<Type: 'float32'>" in types and "<Type: 'float16'>" not in types, types
    mtime = path.stat().st_mtime_ns
    embedding.get_embedder.cache_clear()
    assert embedding.export_model("all-MiniLM-L6-v2", "openvino") == path
    assert path.stat().st_mtime_ns == mtime  # not converted again
    assert not list(path.parent.glob(".*"))  # no temporary file left behind


def test_openvino_backend_without_openvino_says_what_to_install(model_cache, monkeypatch):
    monkeypatch.setitem(sys.modules, "openvino", None)  # import openvino raises ImportError
    with pytest.raises(ModelLoadError, match="embedding_backend 'openvino' needs openvino.*use embedding_backend torch"):
        embedding.export_model("all-MiniLM-L6-v2", "openvino")


def test_backend_checks():
    assert embedding.check_backend("onnx") == "onnx"
    with pytest.raises(ConfigError,
                       match="tensorflow.*choose one of torch, onnx, onnx-int8, onnx-int8-fused, openvino"):
        embedding.check_backend("tensorflow")
    assert embedding.equivalent_backends("torch", "onnx")
    assert embedding.equivalent_backends("torch", "openvino") and embedding.equivalent_backends("onnx", "openvino")
    assert not embedding.equivalent_backends("openvino", "onnx-int8")
    embedding.check_query_backend("openvino", "torch", "/idx")
    assert not embedding.equivalent_backends("onnx", "onnx-int8")
    assert not embedding.equivalent_backends("torch", "onnx-int8-fused")
    assert not embedding.equivalent_backends("onnx-int8", "onnx-int8-fused")
    embedding.check_query_backend("onnx", "torch", "/idx")
    with pytest.raises(ConfigError, match="embedded with backend 'onnx-int8'.*--embedding-backend onnx-int8"):
        embedding.check_query_backend("onnx-int8", "torch", "/idx")


@pytest.mark.parametrize(("backend", "reused"), [("openvino", True), ("onnx", True), ("torch", True),
                                                ("onnx-int8-fused", False), ("onnx-int8", False)])
def test_drift_reuses_stored_embeddings_of_torch_equivalent_backends_only(tmp_path, monkeypatch, backend, reused):
    import pandas as pd

    from llmops.drift import inputs

    out = tmp_path / "processed"
    snap = out / "snapshots" / "s1"
    snap.mkdir(parents=True)
    stored = np.eye(4, dtype=np.float32)[[0, 1]]
    pd.DataFrame({"chunk_id": ["a", "b"], "source": "doc.md", "text": ["one", "two"],
                  "embedding": [list(e) for e in stored]}).to_parquet(snap / "part-0.parquet")
    (out / "manifest.json").write_text(json.dumps(
        {"schema_version": 1, "snapshot_id": "s1", "snapshot_uri": str(snap), "embedding_model": "m",
         "embedding_backend": backend, "chunks_total": 2}))
    recomputed = np.ones((2, 4), dtype=np.float32)
    # the boundary: the drift monitor's torch embedding of the texts (through its cache)
    monkeypatch.setattr(inputs, "cached_embeddings", lambda texts, model, cache_root: recomputed)
    side = inputs.read_side(str(out))
    assert side.embedding_backend == backend
    got = inputs.side_embeddings(side, "m")
    assert np.array_equal(got, stored if reused else recomputed)


def test_search_refuses_a_backend_the_index_was_not_built_with(tmp_path):
    from llmops.rag.search import search
    from llmops.rag.snapshot import SCHEMA_VERSION

    manifest = {"schema_version": SCHEMA_VERSION, "embedding_model": "all-MiniLM-L6-v2",
                "embedding_backend": "onnx-int8",
                "vector_store": {"uri": str(tmp_path / "milvus.db"), "collection": "c"}}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ConfigError, match=f"index {tmp_path} was embedded with backend 'onnx-int8'"):
        search(str(tmp_path), "what is a pod", backend="torch")
    with pytest.raises(ConfigError, match="--embedding-backend = 'tensorflow'"):
        search(str(tmp_path), "what is a pod", backend="tensorflow")


def test_old_manifests_read_as_torch():
    from llmops.rag.snapshot import embedding_backend

    assert embedding_backend({"schema_version": 1}) == "torch"
    assert embedding_backend({"embedding_backend": "onnx"}) == "onnx"


def test_hits_at_5_and_query_set():
    import pandas as pd

    frame = pd.DataFrame({"heading_path": ["Guide > Create a Pod", "Guide > Delete a Pod", "Intro", ""]})
    queries = query_set(frame)
    assert sorted(q for q, _ in queries) == ["Create a Pod", "Delete a Pod"]  # one-word headings left out
    index = np.eye(4, dtype=np.float32)
    relevant = [np.array([True, False, False, False]), np.array([False, False, False, True])]
    q = np.array([[1, 0, 0, 0], [0, 1, 0, 0]], dtype=np.float32)
    assert hits_at_5(index, q, relevant, k=1).tolist() == [True, False]
    assert hits_at_5(index, q, relevant, k=4).tolist() == [True, True]


def test_quality_guard_passes_identical_and_fails_degraded_embeddings():
    import pandas as pd

    texts = ["How to create a Pod", "Scaling a Deployment", "Configure a Service account", "Volume snapshots"]
    frame = pd.DataFrame({"heading_path": [f"Docs > {t}" for t in texts], "text": texts})
    vectors = embedding.embed(texts, backend="torch")
    same = quality(vectors, vectors, frame, "all-MiniLM-L6-v2", "torch")
    assert same["passed"] and same["cosine_min"] >= 0.9999 and same["queries"] == 4
    assert same["hit_at_5"] == same["hit_at_5_torch"]
    rng = np.random.default_rng(0)
    noisy = vectors + rng.normal(scale=0.1, size=vectors.shape).astype(np.float32)
    noisy /= np.linalg.norm(noisy, axis=1, keepdims=True)
    bad = quality(noisy, vectors, frame, "all-MiniLM-L6-v2", "torch")
    assert not bad["passed"]
    assert any(f.startswith("cosine p1") for f in bad["failures"])
    assert bad["cosine_p1"] < QUALITY_GUARD["cosine_p1"]
