"""`llmops lease show`, `llmops bench lease`, `llmops bench orphan`: who writes a run folder, and what
the one-writer rule and a step's death with its task cost."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lease", help="the lease of a run folder (one writer at a time)")
    lease_sub = p.add_subparsers(dest="lease_command", metavar="ACTION", required=True)
    show = lease_sub.add_parser(
        "show", help="print who holds (or last held) a folder's lease: host, pid, since, heartbeat, command"
    )
    show.add_argument("folder", help="training output, preprocessing output or dataset root (path or s3://)")
    show.set_defaults(handler=_show)


def _show(args: argparse.Namespace) -> int:
    import time
    from dataclasses import asdict

    from llmops.cli import print_json
    from llmops.exceptions import StorageError
    from llmops.lease import read_holder

    holder = read_holder(args.folder)
    if holder is None:
        raise StorageError(f"{args.folder} has no lease: no writer has taken it yet")
    print_json({**asdict(holder), "state": "released" if holder.released_at else "held (or its holder died)",
                "heartbeat_age_s": round(time.time() - holder.heartbeat_at, 1)})
    return 0


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    b = bench_sub.add_parser(
        "lease",
        help="cost of the run-folder lease: acquire, heartbeat, release, and the check before each checkpoint",
    )
    b.add_argument("--folder", help="folder or s3:// prefix to lease (default: a temporary local folder)")
    b.add_argument("--rounds", type=int, default=200, help="acquire/verify/heartbeat/release rounds (default 200)")
    b.add_argument(
        "--train",
        action="store_true",
        help="also run 20 steps of real training (checkpoint every 2) and report the lease check per checkpoint "
        "next to the checkpoint's own time",
    )
    _train_inputs(b)
    b.add_argument("--json", action="store_true", help="print JSON (the default output)")
    b.set_defaults(handler=_bench_lease)

    o = bench_sub.add_parser(
        "orphan",
        help="SIGKILL the process that started `llmops train` (as the local operator does) and time the "
        "training's exit; reports whether it checkpointed on the way out",
    )
    o.add_argument("--trials", type=int, default=3, help="kills (default 3)")
    o.add_argument("--at-step", type=int, default=3, help="kill the starter once this step is logged (default 3)")
    o.add_argument("--grace", type=float, default=30.0, help="seconds between SIGTERM and SIGKILL (default 30)")
    o.add_argument("--workdir", help="keep the runs here (default: a temporary folder)")
    _train_inputs(o)
    o.add_argument("--json", action="store_true", help="print JSON (the default output)")
    o.set_defaults(handler=_bench_orphan)


def _train_inputs(p: argparse.ArgumentParser) -> None:
    p.add_argument("--base-model", help="base model (default: the base_model setting; built there when missing)")
    p.add_argument("--dataset", help="training rows (default: the dataset setting; sample data written when missing)")
    p.add_argument("--config", help="training config YAML (default: the packaged examples/local/finetune.yaml)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")


def _bench_lease(args: argparse.Namespace) -> int:
    import tempfile

    from llmops import storage
    from llmops.cli import print_json
    from llmops.commands.training import _bench_setup
    from llmops.dev.bench.lease import bench_lease, bench_lease_in_training

    result = bench_lease(args.folder, rounds=args.rounds)
    if args.train:
        _settings, base_model, dataset, config = _bench_setup(args)
        with tempfile.TemporaryDirectory(prefix="llmops-bench-lease-train-") as tmp:
            out = storage.join(args.folder, "bench-train") if args.folder else tmp
            result["training"] = bench_lease_in_training(base_model, dataset, out, config, args.overrides)
    print_json(result)
    return 0


def _bench_orphan(args: argparse.Namespace) -> int:
    from llmops.cli import print_json
    from llmops.commands.training import _bench_setup
    from llmops.dev.bench.lease import bench_orphan

    _settings, base_model, dataset, config = _bench_setup(args)
    result = bench_orphan(base_model, dataset, trials=args.trials, grace_s=args.grace, at_step=args.at_step,
                          config=config, overrides=args.overrides, workdir=args.workdir)
    print_json(result)
    return 0 if result["all_checkpointed"] else 1
