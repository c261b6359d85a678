"""Multi-GPU training in one pod: `llmops train` re-runs itself under torchrun.

The operator sets `LLMOPS_GPUS` in the pod to the GPUs it asked for. With more than one, and when this
process is not already a torchrun worker, `llmops train` replaces itself (exec) with
`python -m torch.distributed.run --standalone --nproc-per-node N -m llmops train <same arguments>`;
each worker then joins the process group (see `trainer.init_distributed`).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence

WORKER_MARKERS = ("TORCHELASTIC_RUN_ID", "LOCAL_RANK")
"""Variables torchrun sets in its workers: their presence means "already distributed"."""


def gpus_from_env(environ: Mapping[str, str] | None = None) -> int:
    """GPUs of this pod: `LLMOPS_GPUS`, which the step operator sets; 0 when unset."""
    from llmops.settings import process_settings

    return process_settings(environ).gpus


def torchrun_command(
    train_args: Sequence[str], gpus: int, environ: Mapping[str, str] | None = None, python: str | None = None
) -> list[str] | None:
    """The torchrun command line that runs `llmops train <train_args>` on `gpus` GPUs, or None when
    this process should train itself (one GPU or none, or already a torchrun worker)."""
    environ = os.environ if environ is None else environ
    if gpus <= 1 or any(k in environ for k in WORKER_MARKERS):
        return None
    return [
        python or sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        f"--nproc-per-node={gpus}",
        "-m",
        "llmops",
        "train",
        *train_args,
    ]


def train_arguments(args) -> list[str]:
    """The `llmops train` arguments that reproduce a parsed command line (for the torchrun workers)."""
    out: list[str] = []
    if args.config:
        out += ["--config", args.config]
    for pair in args.overrides:
        out += ["--set", pair]
    out += ["--output-dir", args.output_dir, "--resume", args.resume]
    for flag in ("checkpoint_dir", "run_name", "summary_json"):
        value = getattr(args, flag)
        if value:
            out += [f"--{flag.replace('_', '-')}", value]
    if args.no_tracking:
        out.append("--no-tracking")
    return out
