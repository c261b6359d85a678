"""`llmops bench s3`: a large S3 round trip through `llmops.storage` against a local moto server."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No top-level command; only the benchmark below."""


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    b = bench_sub.add_parser(
        "s3",
        help="time and peak memory of an upload + download of one large object (managed multipart transfers) "
        "through a moto S3 server on 127.0.0.1",
    )
    b.add_argument("--size-mb", type=int, default=1024, help="object size in MiB (default 1024)")
    b.add_argument("--workdir", help="folder for the source file and the downloaded copy (default: the temp dir)")
    b.add_argument("--json", action="store_true", help="print JSON (the default output)")
    b.set_defaults(handler=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.s3 import run_s3_bench

    print_json(run_s3_bench(args.size_mb, workdir=args.workdir))
    return 0
