"""`llmops bench parse`: what the DAG files cost to parse, against a trivial DAG file."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """No top-level command; only the benchmark below."""


def register_bench(bench: argparse._SubParsersAction) -> None:
    p = bench.add_parser("parse", help="each DAG file's own parse time after airflow.sdk is imported, vs a trivial DAG (fresh processes, median)")
    p.add_argument("--repeats", type=int, default=5, help="runs per file (median kept)")
    p.add_argument("--json", action="store_true", help="print JSON (the default output)")
    p.add_argument(
        "--cold", action="store_true",
        help="no bytecode cache: files run with runpy and modules compiled as this environment says (under "
        "PYTHONDONTWRITEBYTECODE=1, the project's from source in every run); default: every module's "
        "bytecode cached by one uncounted warm-up round and the file loaded as the dag-processor does, "
        "as deployed and as the test measures",
    )
    p.add_argument(
        "--floor", action="store_true",
        help="also measure each file's floor: a generated DAG of the same shape (the settings, its Params, "
        "as many EmptyOperators as it has tasks, a cron) with none of the project's operators (floor_ratio)",
    )
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.dag_parse import measure

    print_json(measure(repeats=args.repeats, bytecode_cache=not args.cold, floor=args.floor))
    return 0
