"""`llmops base-model build`, `llmops train`, `llmops bench train`, `llmops bench preemption`."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser("base-model", help="the tiny local base model")
    base_sub = base.add_subparsers(dest="base_model_command", metavar="ACTION", required=True)
    build = base_sub.add_parser(
        "build",
        help="build the tiny Llama base model (tokenizer, weights, short generic pretraining) into a folder",
    )
    build.add_argument("--out", required=True, help="folder to write the model into (from_pretrained layout)")
    build.add_argument("--seed", type=int, default=None, help="seed of the whole build (default: 1234)")
    build.add_argument(
        "--pretrain-steps",
        type=int,
        default=None,
        help="causal-LM steps on generic text before saving (0: random initialisation)",
    )
    build.add_argument("--summary-json", help="write a summary JSON here")
    build.set_defaults(handler=_build_base_model)


def _build_base_model(args: argparse.Namespace) -> int:
    from llmops.cli import print_json, write_summary
    from llmops.training.base_model import DEFAULT_SEED, build_base_model, build_info

    overrides = {}
    if args.pretrain_steps is not None:
        overrides["pretrain_steps"] = args.pretrain_steps
    out = build_base_model(args.out, seed=DEFAULT_SEED if args.seed is None else args.seed, **overrides)
    summary = {"model_dir": str(out), **build_info(out)}
    write_summary(args.summary_json, summary)
    print_json(summary)
    return 0
