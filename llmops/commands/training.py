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
    register_train(sub)


def _build_base_model(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.dev.base_model import DEFAULT_SEED, build_base_model, build_info

    overrides = {}
    if args.pretrain_steps is not None:
        overrides["pretrain_steps"] = args.pretrain_steps
    out = build_base_model(args.out, seed=DEFAULT_SEED if args.seed is None else args.seed, **overrides)
    summary = {"model_dir": str(out), **build_info(out)}
    return emit_summary(args, summary)


def register_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="fine-tune a LoRA adapter (checkpoints, exact resume, MLflow tracking)",
        description="Fine-tune a LoRA adapter on prompt/completion or chat rows. Config: a YAML file "
        "(--config) plus --set KEY=VALUE overrides, validated before anything heavy is loaded. "
        "With LLMOPS_GPUS > 1 the command re-runs itself under torchrun (one process per GPU).",
    )
    p.add_argument("--config", help="training config YAML (local or s3://); keys as in `--set`")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override one config key (repeatable), e.g. --set max_steps=200 --set target_modules=q_proj,v_proj",
    )
    p.add_argument("--output-dir", required=True, help="run folder or s3:// prefix: adapter/, checkpoints/, steps.jsonl")
    p.add_argument("--checkpoint-dir", help="checkpoint folder or s3:// prefix (default: OUTPUT_DIR/checkpoints)")
    p.add_argument(
        "--resume",
        choices=["auto", "true", "false"],
        default="auto",
        help="auto: continue from the newest complete checkpoint if any; true: fail without one; false: start fresh",
    )
    p.add_argument("--run-name", help="MLflow run name (the DAG passes dag_id and run_id)")
    p.add_argument("--no-tracking", action="store_true", help="do not log to MLflow (benchmarks, quick checks)")
    p.add_argument("--dry-run", action="store_true", help="validate config and inputs, print the config, train nothing")
    p.add_argument("--summary-json", help="write the run summary JSON here")
    p.set_defaults(handler=_train)


def _train(args: argparse.Namespace) -> int:
    import os
    import sys

    from llmops.cli import emit_summary, print_json
    from llmops.settings import load_settings
    from llmops.training.config import load_config
    from llmops.training.inputs import check_inputs
    from llmops.training.launch import gpus_from_env, torchrun_command, train_arguments

    settings = load_settings()
    config = load_config(args.config, args.overrides, defaults=settings.training.train_defaults)
    base_model = config.base_model or settings.base_model
    dataset = config.dataset or settings.dataset
    # Cheap checks first: a missing model or dataset fails here, before torchrun, CUDA or any weights.
    inputs = check_inputs(base_model, dataset)
    if args.dry_run:
        print_json({"config": config.model_dump(), **inputs})
        return 0
    cmd = torchrun_command(train_arguments(args), gpus_from_env(), os.environ)
    if cmd is not None:
        sys.stdout.flush()
        sys.stderr.flush()
        # exec: torchrun becomes this process, so the pod's SIGTERM reaches it (and it forwards it to the workers).
        os.execvp(cmd[0], cmd)
    from llmops.training.trainer import RunOptions, train

    options = RunOptions(
        output_dir=args.output_dir,
        checkpoint_dir=args.checkpoint_dir,
        resume=args.resume,
        run_name=args.run_name,
        tracking=not args.no_tracking,
    )
    summary = train(config, options, settings)
    if int(os.environ.get("RANK", "0")) == 0:
        emit_summary(args, summary)
    return 0


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    p = bench_sub.add_parser(
        "train",
        help="trainer throughput vs a bare PEFT loop (ratio) and checkpoint overhead at the default interval",
    )
    _bench_inputs(p)
    p.add_argument("--steps", type=int, help="steps per measured run (default: two checkpoint intervals)")
    p.add_argument("--rounds", type=int, default=2, help="alternating rounds of both loops; the best of each counts")
    p.add_argument(
        "--peak-tflops",
        type=float,
        help="the device's peak TFLOP/s for `mfu` (default: the dense bf16 datasheet figure of an H100/H200 SXM; "
        "none for other devices)",
    )
    p.add_argument("--json", action="store_true", help="print JSON (always JSON; kept for symmetry)")
    p.set_defaults(handler=_bench_train)

    q = bench_sub.add_parser(
        "preemption",
        help="kill training with SIGTERM and SIGKILL at random steps, resume, compare with an uninterrupted run",
    )
    _bench_inputs(q)
    q.add_argument("--trials", type=int, default=5, help="runs per signal (default 5)")
    q.add_argument("--steps", type=int, default=40, help="steps per run")
    q.add_argument("--save-every", type=int, default=5, help="checkpoint interval of the runs")
    q.add_argument("--seed", type=int, default=0, help="seed of the kill steps")
    q.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    q.add_argument("--json", action="store_true", help="print JSON (always JSON; kept for symmetry)")
    q.set_defaults(handler=_bench_preemption)


def _bench_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-model", help="base model (default: the base_model setting; built there when missing)")
    p.add_argument("--dataset", help="training rows (default: the dataset setting; sample data written when missing)")
    p.add_argument(
        "--config",
        help="training config YAML (default: the packaged examples/local/finetune.yaml when present)",
    )
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def _bench_setup(args: argparse.Namespace):
    """Settings and inputs of a benchmark; the local defaults are created when missing."""
    from pathlib import Path

    from llmops import storage
    from llmops.settings import load_settings

    settings = load_settings()
    base_model = args.base_model or settings.base_model
    dataset = args.dataset or settings.dataset
    if not args.base_model and not storage.is_s3(base_model) and not (Path(base_model) / "config.json").exists():
        from llmops.dev.base_model import build_base_model

        build_base_model(base_model)
    if not args.dataset and not storage.is_s3(dataset) and not Path(dataset).exists():
        from llmops.dev.sample_data import write_sample_data

        write_sample_data(Path(dataset).parent)
    return settings, base_model, dataset, args.config or _example_config()


def _example_config() -> str | None:
    """The packaged examples/local/finetune.yaml; None where it is absent, as in a source checkout put on
    PYTHONPATH instead of installed (no `llmops_examples` package)."""
    from llmops.resources import packaged

    try:
        example = packaged("examples/local/finetune.yaml")
    except ModuleNotFoundError:
        return None
    return str(example) if example.exists() else None


def _bench_train(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.training import bench_train

    settings, base_model, dataset, config = _bench_setup(args)
    print_json(bench_train(base_model, dataset, settings, config, steps=args.steps, rounds=args.rounds,
                           overrides=args.overrides, peak_tflops=args.peak_tflops))
    return 0


def _bench_preemption(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.dev.bench.training import bench_preemption

    _settings, base_model, dataset, config = _bench_setup(args)
    extra = list(args.overrides)
    result = bench_preemption(base_model, dataset, trials=args.trials, steps=args.steps, save_every=args.save_every,
                              seed=args.seed, workdir=args.workdir, extra_overrides=extra, config=config)
    print_json(result)
    return 0 if result["all_equal"] and result["sigterm_steps_trained_twice"] == 0 else 1
