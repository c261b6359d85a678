"""`llmops settings`: show the effective settings, or the README table of every setting."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("settings", help="print the effective settings (or --markdown: the settings table)")
    p.add_argument("--markdown", action="store_true", help="print the Markdown table of every setting")
    p.set_defaults(handler=_run)


def _run(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.settings import load_settings, settings_markdown

    if args.markdown:
        print(settings_markdown())
        return 0
    s = load_settings()
    derived = {
        "landing": s.landing,
        "processed": s.processed,
        "mlflow_tracking": s.mlflow_tracking,
        "base_model": s.base_model,
        "manifests": s.manifests,
        "traffic": s.traffic,
        "state": s.state,
    }
    print_json({"settings": s.model_dump(), "derived": derived})
    return 0
