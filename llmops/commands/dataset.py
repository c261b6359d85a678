"""`llmops dataset build` and `llmops bench dataset`: the dataset step (corpus snapshot -> train/eval rows)."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dataset", help="build versioned fine-tuning and evaluation data from a corpus snapshot")
    dsub = d.add_subparsers(dest="dataset_command", metavar="ACTION", required=True)
    p = dsub.add_parser(
        "build",
        help="generate items for new/changed chunks, split by item, write DATASET_ROOT/versions/<hash>/",
        description=(
            "Reads the preprocessing output's current snapshot, generates question/answer items for chunks "
            "not in the item cache (DATASET_ROOT/items/<generator config hash>/), splits them by item into "
            "train and eval (eval rows sliced new/retained against the previous version), and writes "
            "DATASET_ROOT/versions/<dataset_hash>/{train,eval}/part-00000.parquet, dataset.json and "
            "DATASET_ROOT/latest.json. An unchanged corpus gives the same hash and writes nothing."
        ),
    )
    p.add_argument("--corpus", required=True, help="preprocessing output folder or s3:// prefix (its manifest.json)")
    p.add_argument("--out", required=True, help="dataset root folder or s3:// prefix")
    p.add_argument("--generator", default="extractive", choices=["extractive", "teacher"],
                   help="extractive (deterministic, no model; default) or teacher (OpenAI-compatible endpoint)")
    p.add_argument("--steer", help="steer file from a drift report: its chunk_ids are generated first")
    p.add_argument("--budget", type=int, help="generate for at most this many chunks in this build")
    p.add_argument("--eval-fraction", type=float, default=0.2, help="share of items held out for eval (0.2)")
    p.add_argument("--passages", action="store_true",
                   help="extractive: add train-only passage rows (the documents' statements as continuations)")
    p.add_argument("--teacher-url", help="teacher: base URL of the OpenAI-compatible API "
                   "(default: env LLMOPS_TEACHER_BASE_URL)")
    p.add_argument("--teacher-model", help="teacher: model name (default: env LLMOPS_TEACHER_MODEL)")
    p.add_argument("--teacher-key-env", default="LLMOPS_TEACHER_API_KEY",
                   help="teacher: name of the environment variable holding the API key (never the key itself)")
    p.add_argument("--teacher-workers", type=int, default=4, help="teacher: concurrent requests (4)")
    p.add_argument("--summary-json", help="write the build summary JSON here (local path or s3://)")
    p.set_defaults(handler=_build)


def _generator(args: argparse.Namespace):
    from llmops.dataset.generators import make_generator

    if args.generator == "extractive":
        return make_generator("extractive", passages=args.passages)
    return make_generator("teacher", base_url=args.teacher_url, model=args.teacher_model,
                          key_env=args.teacher_key_env, max_workers=args.teacher_workers)


def _build(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.dataset.build import build_dataset
    from llmops.lease import lease

    # One build per root at a time (llmops.lease): a second waits, or fails naming the holder.
    with lease(args.out, "dataset root") as held:
        summary = build_dataset(args.corpus, args.out, _generator(args), steer_uri=args.steer, budget=args.budget,
                                eval_fraction=args.eval_fraction, before_write=held.verify)
    return emit_summary(args, summary)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    b = bench_sub.add_parser(
        "dataset",
        help="dataset build items/s, and an incremental rebuild after one changed document vs a full build",
        description=(
            "Writes the sample corpus, preprocesses it (Spark local), builds the dataset from scratch "
            "(items/s), changes one document, preprocesses again and rebuilds incrementally; prints JSON."
        ),
    )
    b.add_argument("--workdir", help="keep the work here (default: a temporary folder)")
    b.add_argument("--repeat", type=int, default=3, help="full builds timed (best and median reported)")
    b.add_argument("--corpus", help="a folder of more documents to index beside the sample corpus (a larger corpus)")
    b.add_argument("--json", action="store_true", help="print JSON (the only output format)")
    b.set_defaults(handler=_bench)


def _bench(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.dataset import bench_dataset

    print_json(bench_dataset(args.workdir, repeat=args.repeat, extra_corpus=args.corpus))
    return 0
