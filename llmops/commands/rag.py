"""`llmops preprocess`, `llmops search`, `llmops bench rag`: the RAG preprocessing step and its tools."""

from __future__ import annotations

import argparse

from llmops.embedding import BACKENDS


def _preprocess_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--input", help="folder or s3:// prefix of the documents (default: settings landing)")
    p.add_argument("--output", help="folder or s3:// prefix of the output (default: settings processed)")
    p.add_argument("--chunk-size", type=int, help="tokens per chunk (default: settings chunk_size)")
    p.add_argument("--chunk-overlap", type=int, help="tokens shared by consecutive chunks (default: settings)")
    p.add_argument("--embedding-model", help="sentence-transformers model (default: settings embedding_model)")
    p.add_argument("--embedding-backend", choices=BACKENDS,
                   help="torch, onnx (fp32 export), onnx-int8, onnx-int8-fused or openvino (fp32 OpenVINO IR) "
                   "(default: settings embedding_backend)")
    p.add_argument(
        "--vector-store",
        help="Milvus Lite file (…/milvus.db) or server URL (default: settings, else <output>/milvus.db)",
    )
    p.add_argument("--collection", help="Milvus collection (default: settings vector_collection)")
    p.add_argument("--max-document-mb", type=float, help="larger documents are quarantined (default: settings)")
    p.add_argument("--master", help="Spark master (default: local[*], or the cluster's under spark-submit)")
    p.add_argument("--limit", type=int, help="only this many documents, chosen deterministically")
    p.add_argument("--embedding-batch-size", type=int, help="texts per embedding forward pass (default 64)")
    p.add_argument("--allow-empty", action="store_true", default=None,
                   help="accept an input with no documents (empties the index)")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "preprocess",
        help="RAG preprocessing on Spark: extract, chunk, embed, write a Parquet snapshot, upsert into Milvus",
        description=(
            "Reads .txt .md .rst .html .pdf documents, processes only new or changed ones (content hashes), "
            "writes <output>/snapshots/<id>/*.parquet, <output>/manifest.json and <output>/quarantine.json, "
            "and upserts the chunks into Milvus. A re-run without changes writes nothing."
        ),
    )
    _preprocess_options(p)
    p.add_argument("--summary-json", help="write the run summary JSON here (local path or s3://)")
    p.add_argument(
        "--render-spark-application",
        action="store_true",
        help="print the SparkApplication (YAML, validated) that runs this same command on Kubernetes, and exit",
    )
    p.set_defaults(handler=_preprocess)

    s = sub.add_parser("search", help="search the chunk index of a preprocessing output")
    s.add_argument("query", help="the question or text to search for")
    s.add_argument("--index", help="preprocessing output folder or s3:// prefix (default: settings processed)")
    s.add_argument("-k", type=int, default=5, help="how many chunks (default 5)")
    s.add_argument("--embedding-backend", choices=BACKENDS,
                   help="embed the query with this backend (default: the index's; another one is refused "
                        "unless proven equivalent, i.e. torch and onnx)")
    s.add_argument("--json", action="store_true", help="print a JSON list of {source, score, text, ...}")
    s.set_defaults(handler=_search)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    b = bench_sub.add_parser(
        "rag",
        help="throughput of the whole preprocessing job against plain sentence-transformers encoding",
        description=(
            "Runs the Spark job (start-up included) with --backend into a fresh temporary output, then "
            "encodes the same chunks in this single process with sentence-transformers (torch: the "
            "ceiling) and with the same backend; prints chunks_per_s, ceiling_chunks_per_s, ratio, the "
            "backend's own ceiling, and the quality guard (cosine vs torch per chunk, hit@5 of a query set)."
        ),
    )
    b.add_argument("corpus", nargs="?", help="folder or s3:// prefix of the documents (same as --input)")
    b.add_argument("--input", help="folder or s3:// prefix of the documents")
    b.add_argument("--backend", "--embedding-backend", dest="embedding_backend", choices=BACKENDS,
                   help="embedding backend of the job (default: settings embedding_backend)")
    b.add_argument("--limit", type=int, help="only this many documents, chosen deterministically")
    b.add_argument("--chunk-size", type=int)
    b.add_argument("--chunk-overlap", type=int)
    b.add_argument("--embedding-model")
    b.add_argument("--master", help="Spark master (default local[*])")
    b.add_argument("--embedding-batch-size", type=int)
    b.add_argument("--ceiling-batch-size", type=int, default=32,
                   help="batch size of the single-process reference (sentence-transformers' default 32)")
    b.add_argument("--json", action="store_true", help="print JSON only")
    b.set_defaults(handler=_bench)


def _config(args: argparse.Namespace, **extra):
    from llmops.rag.config import PreprocessConfig
    from llmops.settings import load_settings

    overrides = {
        "input_uri": getattr(args, "input", None),
        "output_uri": getattr(args, "output", None),
        "chunk_size": getattr(args, "chunk_size", None),
        "chunk_overlap": getattr(args, "chunk_overlap", None),
        "embedding_model": getattr(args, "embedding_model", None),
        "embedding_backend": getattr(args, "embedding_backend", None),
        "vector_store_uri": getattr(args, "vector_store", None),
        "collection": getattr(args, "collection", None),
        "max_document_mb": getattr(args, "max_document_mb", None),
        "master": getattr(args, "master", None),
        "limit": getattr(args, "limit", None),
        "embedding_batch_size": getattr(args, "embedding_batch_size", None),
        "allow_empty": getattr(args, "allow_empty", None),
        **extra,
    }
    return PreprocessConfig.from_settings(load_settings(), **overrides)


def _as_arguments(args: argparse.Namespace) -> list[str]:
    """The parsed options back as command-line words (what the SparkApplication passes to the job)."""
    words: list[str] = []
    for name in ("input", "output", "chunk_size", "chunk_overlap", "embedding_model", "embedding_backend",
                 "vector_store",
                 "collection", "max_document_mb", "master", "limit", "embedding_batch_size", "summary_json"):
        value = getattr(args, name, None)
        if value is not None:
            words += [f"--{name.replace('_', '-')}", str(value)]
    if getattr(args, "allow_empty", None):
        words.append("--allow-empty")
    return words


def _preprocess(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary

    if args.render_spark_application:
        from llmops.k8s.templates import to_yaml
        from llmops.rag.sparkapp import render_spark_application
        from llmops.settings import load_settings

        print(to_yaml(render_spark_application(load_settings(), _as_arguments(args))), end="")
        return 0
    from llmops.rag.job import run_preprocess

    summary = run_preprocess(_config(args))
    return emit_summary(args, summary)


def _search(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.rag.search import search
    from llmops.settings import load_settings

    index = args.index or load_settings().processed
    hits = search(index, args.query, k=args.k, backend=args.embedding_backend)
    if args.json:
        print_json(hits)
        return 0
    for i, h in enumerate(hits, start=1):
        where = f"{h['source']}" + (f"  [{h['heading_path']}]" if h.get("heading_path") else "")
        text = " ".join(h["text"].split())
        print(f"{i}. {h['score']:.3f}  {where}\n   {text[:300]}{'…' if len(text) > 300 else ''}")
    return 0


def _bench(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.rag import bench_rag
    from llmops.exceptions import ConfigError

    if args.corpus and args.input and args.corpus != args.input:
        raise ConfigError(f"corpus {args.corpus!r} and --input {args.input!r} differ: give the documents once")
    args.input = args.input or args.corpus
    if not args.input:
        raise ConfigError("llmops bench rag needs the documents: give a corpus folder (or --input)")
    result = bench_rag(_config(args, output_uri="/tmp/unused"), ceiling_batch_size=args.ceiling_batch_size)
    if args.json:
        print_json(result)
    else:
        q = result["quality"]
        print(
            f"{result['chunks']} chunks from {result['documents']} documents, backend "
            f"{result['embedding_backend']}: job {result['chunks_per_s']:.1f} chunks/s ({result['job_s']:.1f} s), "
            f"torch ceiling {result['ceiling_chunks_per_s']:.1f} chunks/s, ratio {result['ratio']:.2f}; "
            f"{result['embedding_backend']} ceiling {result['backend_ceiling_chunks_per_s']:.1f} chunks/s "
            f"(job/backend ceiling {result['backend_ratio']:.2f})\n"
            f"quality vs torch: cosine p1 {q['cosine_p1']:.4f}, min {q['cosine_min']:.4f}; hit@5 "
            f"{q['hit_at_5']:.3f} (torch {q['hit_at_5_torch']:.3f}, {q['queries']} queries): "
            + ("passes" if q["passed"] else "FAILS: " + "; ".join(q["failures"]))
        )
    return 0
