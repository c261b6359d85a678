"""Benchmarks of the run-folder lease and of a step's death with its task.

`llmops bench lease`: what one writer pays for its lease on a folder (local or `s3://`): taking and
releasing it, the heartbeat, and `verify()`, which runs before every checkpoint; with `--train`, a short
real training run on the tiny model gives the same per checkpoint next to the checkpoint's own time.

`llmops bench orphan`: a starter process runs `llmops train` through `llmops.process.StepProcess` (what
`LocalStepOperator` does) and is SIGKILLed mid-training; the figure is the time from that kill until the
training process has exited, and whether it checkpointed on the way out (SIGTERM) or was killed.
"""

from __future__ import annotations

import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.lease import Lease
from llmops.process import process_alive


def _ms(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)
    return {
        "median_ms": round(statistics.median(ordered) * 1000, 4),
        "p95_ms": round(ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))] * 1000, 4),
        "max_ms": round(ordered[-1] * 1000, 4),
    }


def bench_lease(folder: str | None = None, rounds: int = 200) -> dict[str, Any]:
    """Timings of acquire, verify, renew (one heartbeat) and release on `folder` (default: a temp folder)."""
    tmp = None
    if folder is None:
        tmp = tempfile.TemporaryDirectory(prefix="llmops-bench-lease-")
        folder = tmp.name
    storage.check_uri(folder, "--folder")
    acquire, verify, renew, release = [], [], [], []
    try:
        for _ in range(rounds):
            lease = Lease(folder, "benchmark folder", wait_s=0, stale_s=3600, heartbeat_s=600)
            t = time.perf_counter()
            lease.acquire()
            acquire.append(time.perf_counter() - t)
            t = time.perf_counter()
            lease.verify()
            verify.append(time.perf_counter() - t)
            t = time.perf_counter()
            lease._backend.renew(lease.holder)  # one heartbeat, timed in this thread
            renew.append(time.perf_counter() - t)
            t = time.perf_counter()
            lease.release()
            release.append(time.perf_counter() - t)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return {
        "folder": folder if tmp is None else "(temporary local folder)",
        "backend": "s3" if storage.is_s3(folder) else "local",
        "rounds": rounds,
        "acquire": _ms(acquire),
        "verify_per_checkpoint": _ms(verify),
        "heartbeat": _ms(renew),
        "release": _ms(release),
    }


def bench_lease_in_training(base_model: str, dataset: str, output_dir: str, config: str | None,
                            overrides: list[str]) -> dict[str, Any]:
    """A short real training run (lease held, verified before each checkpoint): per-checkpoint times."""
    from llmops.settings import load_settings
    from llmops.training.config import load_config
    from llmops.training.trainer import RunOptions, train

    settings = load_settings()
    cfg = load_config(config, ["max_steps=20", "save_every=2", "threads=1", *overrides, f"base_model={base_model}",
                               f"dataset={dataset}"], defaults=settings.training.train_defaults)
    summary = train(cfg, RunOptions(output_dir=output_dir, resume="false", tracking=False), settings)
    checkpoints = len(summary["checkpoints_written"])
    per_ckpt = summary["checkpoint_seconds"] / checkpoints
    lease_per_ckpt = summary["lease_verify_seconds"] / (checkpoints + 1)  # +1: the check before the final outputs
    return {
        "output_dir": output_dir,
        "steps": summary["steps"],
        "checkpoints": checkpoints,
        "checkpoint_ms": round(per_ckpt * 1000, 3),
        "lease_verify_ms_per_checkpoint": round(lease_per_ckpt * 1000, 4),
        "lease_share_of_checkpoint": round(lease_per_ckpt / per_ckpt, 6) if per_ckpt else None,
    }


# --- a step's death with its task --------------------------------------------------------------------------

STARTER = """
import json, subprocess, sys, time
from llmops.process import StepProcess
step = StepProcess(json.loads(sys.argv[1]), grace_s=float(sys.argv[2]))
step.start(stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(step.proc.pid, flush=True)
time.sleep(3600)
"""


def _step_log(out: Path) -> list[dict[str, Any]]:
    path = out / "steps.jsonl"
    rows = []
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def orphan_trial(train_cmd: list[str], out: Path, at_step: int, grace_s: float, timeout: float = 600) -> dict[str, Any]:
    """Start training under a starter, SIGKILL the starter at `at_step`, time the training's exit."""
    starter = subprocess.Popen([sys.executable, "-c", STARTER, json.dumps(train_cmd), str(grace_s)],
                               stdout=subprocess.PIPE, text=True)
    try:
        train_pid = int(starter.stdout.readline())
        deadline = time.monotonic() + timeout
        while len(_step_log(out)) < at_step:
            if not process_alive(train_pid):
                raise RuntimeError(f"training exited before step {at_step}; try it by hand: {' '.join(train_cmd)}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"training did not reach step {at_step} in {timeout} s")
            time.sleep(0.02)
        logged = _step_log(out)[-1]["step"]
    finally:
        starter.send_signal(signal.SIGKILL)
        starter.wait()
    killed = time.monotonic()
    while process_alive(train_pid):
        if time.monotonic() - killed > grace_s + 30:
            raise TimeoutError(f"training (pid {train_pid}) still runs {grace_s + 30} s after its starter died")
        time.sleep(0.01)
    exit_s = time.monotonic() - killed
    last = _step_log(out)[-1]["step"]
    ckpt = out / "checkpoints" / f"step-{last:06d}" / "COMPLETE.json"
    return {"killed_at_step": logged, "last_step": last, "exit_seconds": round(exit_s, 3),
            "checkpointed_last_step": ckpt.exists()}


def bench_orphan(base_model: str, dataset: str, trials: int = 3, grace_s: float = 30.0, at_step: int = 3,
                 config: str | None = None, overrides: list[str] | None = None,
                 workdir: str | None = None) -> dict[str, Any]:
    from llmops.dev.bench.training import train_command

    root = Path(workdir or tempfile.mkdtemp(prefix="llmops-bench-orphan-"))
    # Checkpoints only on the signal: the one found after the kill proves the SIGTERM path ran.
    steps = ["max_steps=1000000", "save_every=1000000", "threads=1", *(overrides or [])]
    results = []
    for i in range(trials):
        out = root / f"trial-{i}"
        cmd = train_command(base_model, dataset, out, steps, resume="false", tracking=False, config=config)
        results.append(orphan_trial(cmd, out, at_step, grace_s))
    exits = [r["exit_seconds"] for r in results]
    return {
        "trials": results,
        "grace_s": grace_s,
        "exit_seconds_median": round(statistics.median(exits), 3),
        "exit_seconds_max": max(exits),
        "all_checkpointed": all(r["checkpointed_last_step"] for r in results),
        "workdir": str(root),
    }
