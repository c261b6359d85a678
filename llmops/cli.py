"""The `llmops` command: one subcommand per pipeline step.

A step that runs in a container is a subcommand here, and the container's command line is the same
as the local run (`llmops train --config ...`): the operators only choose where it runs.

Each domain package registers its subcommands from its own `cli.py` (listed in `COMMAND_MODULES`),
importing heavy libraries only inside the handlers so `llmops --help` stays fast.
Exit codes: 0 success, 2 error (a message on stderr names the input and the fix), 3 a negative
verdict (gate rejected, drift found), 4 not enough data, 75 the run folder is held by another
writer, 130/143 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import sys
from collections.abc import Sequence

from llmops import __version__
from llmops.exceptions import LlmopsError

DEV_PACKAGE = "llmops.dev"  # development tools: in a checkout, not in the wheel

COMMAND_MODULES = [
    "llmops.commands.settings",
    "llmops.commands.sample_data",
    "llmops.commands.deploy",
    "llmops.commands.dags",
    "llmops.commands.training",
    "llmops.commands.drift",
    "llmops.commands.rag",
    "llmops.commands.evaluation",
    "llmops.commands.dataset",
    "llmops.commands.storage",
    "llmops.commands.lease",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="llmops",
        description="Run one step of the fine-tuned LLM lifecycle (the same command locally and in a pod).",
    )
    parser.add_argument("--version", action="version", version=f"airflow-llmops {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    bench = sub.add_parser("bench", help="benchmarks that print JSON figures")
    bench_sub = bench.add_subparsers(dest="bench", metavar="BENCHMARK", required=True)
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
        if hasattr(module, "register_bench"):
            module.register_bench(bench_sub)
    return parser


def print_json(obj: object) -> None:
    """Print a JSON document on stdout (the machine-readable output of `--json` flags)."""
    sys.stdout.write(json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def write_summary(path: str | None, summary: dict) -> None:
    """Write a step's summary JSON (what the operator returns as XCom) when `--summary-json` is given."""
    if not path:
        return
    from llmops import storage

    storage.write_text(path, json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


def emit_summary(args: argparse.Namespace, summary: dict, code: int = 0) -> int:
    """The end of every step command: its summary to `--summary-json` (when given) and to stdout; returns
    `code`, the command's exit code."""
    write_summary(args.summary_json, summary)
    print_json(summary)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        return int(args.handler(args) or 0)
    except LlmopsError as exc:
        print(f"llmops {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except ModuleNotFoundError as exc:
        # The development tools (llmops.dev) are left out of the wheel, so of the images: their commands
        # are registered everywhere but run only in a checkout.
        if exc.name != DEV_PACKAGE and not (exc.name or "").startswith(DEV_PACKAGE + "."):
            raise
        print(f"llmops {args.command}: a development tool, available in a checkout (pip install -e .)",
              file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"llmops {args.command}: interrupted", file=sys.stderr)
        return 130
