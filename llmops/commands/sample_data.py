"""`llmops sample-data`: write the project's own sample corpus and fine-tuning data."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sample-data",
        help="write the sample corpus (DIR/corpus/) and fine-tuning set (DIR/finetune.jsonl) of the fictional product Larkspur",
    )
    p.add_argument("--out", required=True, help="folder to write into")
    p.add_argument(
        "--landing",
        help="also copy the corpus documents into this landing folder or s3:// prefix (where the sensor looks)",
    )
    p.add_argument(
        "--release", type=int, choices=[1, 2], default=1,
        help="write the documents of releases 1..N (2 adds pages for new components and changes the glossary)",
    )
    p.add_argument("--summary-json", help="write a summary JSON here")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from llmops import storage
    from llmops.cli import emit_summary
    from llmops.dev.sample_data import corpus_documents, write_sample_data

    summary = write_sample_data(Path(args.out), release=args.release)
    if args.landing:
        storage.check_uri(args.landing, "--landing")
        for rel, data in corpus_documents(args.release).items():
            target = storage.join(args.landing, rel)
            # Rewriting an unchanged document would still look like new data to an mtime-based sensor.
            if storage.exists(target) and storage.read_bytes(target) == data:
                continue
            storage.write_bytes(target, data)
        summary["landing"] = args.landing
    return emit_summary(args, summary)
