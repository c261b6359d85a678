"""Benchmarks of the training step: `llmops bench train` and `llmops bench preemption`.

`bench train` runs the real trainer (MLflow tracking, step log, checkpoints at the default interval)
and, in the same process on the same model and rows, a bare PEFT + torch loop (no tracking, no
checkpoints, no logging); it reports both throughputs, their ratio and the share of wall time the
trainer spent writing checkpoints. Rounds alternate between the two so a noisy neighbour hurts both.

`bench preemption` kills real `llmops train` processes with SIGTERM and with SIGKILL at seeded random
steps, resumes each with `--resume auto`, and compares every final adapter with an uninterrupted
run's. From the per-step logs it proves that after SIGTERM no finished step was trained twice (after
SIGKILL the steps since the last checkpoint are redone, by design).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from llmops.settings import Settings

# --- throughput ----------------------------------------------------------------------------------------


def bare_loop_tokens_per_s(model_path: str, config, rows, steps: int) -> float:
    """Tokens per second of a bare PEFT + torch loop: same model, LoRA, optimizer, batches; nothing else."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from llmops.training.data import DataOrder, collate

    torch.manual_seed(config.seed)
    model = AutoModelForCausalLM.from_pretrained(model_path, dtype=torch.float32)
    model = get_peft_model(
        model,
        LoraConfig(r=config.lora_r, lora_alpha=config.lora_alpha, lora_dropout=config.lora_dropout,
                   target_modules=config.target_modules, task_type="CAUSAL_LM"),
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=config.learning_rate, weight_decay=config.weight_decay)
    order = DataOrder(len(rows), config.seed)
    pad = model.config.pad_token_id if model.config.pad_token_id is not None else 0
    model.train()
    tokens = 0
    position = 0
    started = time.perf_counter()
    for _ in range(steps):
        for _ in range(config.grad_accum_steps):
            batch = collate([rows[i] for i in order.indices(position, config.batch_size)], pad)
            position += config.batch_size
            loss = model(**batch).loss / config.grad_accum_steps
            loss.backward()
            tokens += int(batch["attention_mask"].sum())
        torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()
    return tokens / (time.perf_counter() - started)


def bench_train(
    base_model: str,
    dataset: str,
    settings: Settings,
    config_path: str | None = None,
    steps: int | None = None,
    rounds: int = 2,
    overrides: list[str] | None = None,
) -> dict[str, Any]:
    """The trainer's tokens/s against the bare loop's, and the checkpoint overhead at the default interval."""
    from llmops.training.config import load_config
    from llmops.training.data import read_dataset, split, tokenize_dataset
    from llmops.training.trainer import RunOptions, Trainer, load_tokenizer, resolve_base_model

    cfg = load_config(config_path, [*(overrides or []), f"base_model={base_model}", f"dataset={dataset}"],
                      defaults=settings.train_defaults)
    # Two full checkpoint intervals: the overhead is measured at the interval a real run uses.
    steps = steps or 2 * cfg.save_every
    cfg = cfg.model_copy(update={"max_steps": steps})
    model_path = resolve_base_model(base_model, settings)
    tok = load_tokenizer(model_path, base_model)
    examples, _ = tokenize_dataset(read_dataset(dataset), tok, cfg.max_seq_len, cfg.max_bad_fraction)
    rows, _ = split(examples, cfg.eval_fraction, cfg.seed)
    import torch

    if cfg.threads:
        # Both loops on the same thread count (the trainer would set it only for itself).
        torch.set_num_threads(cfg.threads)
    ours: list[dict[str, Any]] = []
    bare: list[float] = []
    with tempfile.TemporaryDirectory(prefix="llmops-bench-train-") as tmp:
        # MLflow on its own SQLite file: the benchmark must not add runs to the project's experiment.
        bench_settings = settings.with_overrides(mlflow_tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                                                 mlflow_artifact_root=f"{tmp}/artifacts")
        for i in range(rounds):
            # Alternate which loop goes first, so warm caches and a busy neighbour favour neither.
            order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
            for which in order:
                if which == "bare":
                    bare.append(bare_loop_tokens_per_s(model_path, cfg, rows, steps))
                else:
                    options = RunOptions(output_dir=f"{tmp}/run-{i}", resume="false", run_name=f"bench-{i}")
                    ours.append(Trainer(cfg, options, bench_settings).run())
    best = max(ours, key=lambda s: s["tokens_per_s"])
    baseline = max(bare)
    return {
        "steps": steps,
        "rounds": rounds,
        "save_every": cfg.save_every,
        "tokens_per_s": best["tokens_per_s"],
        "baseline_tokens_per_s": round(baseline, 2),
        "ratio": round(best["tokens_per_s"] / baseline, 4),
        "checkpoint_overhead": round(best["checkpoint_seconds"] / best["train_seconds"], 4),
        "checkpoint_seconds": best["checkpoint_seconds"],
        "checkpoints_per_run": len(best["checkpoints_written"]),
        "train_seconds": best["train_seconds"],
        "all_tokens_per_s": [s["tokens_per_s"] for s in ours],
        "all_baseline_tokens_per_s": [round(b, 2) for b in bare],
        "batch_size": cfg.batch_size,
        "threads": _threads(),
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


# --- preemption ----------------------------------------------------------------------------------------


def train_command(base_model: str, dataset: str, output_dir: Path, overrides: list[str], resume: str = "auto",
                  tracking: bool = True, config: str | None = None) -> list[str]:
    cmd = [sys.executable, "-m", "llmops", "train", "--output-dir", str(output_dir), "--resume", resume,
           "--set", f"base_model={base_model}", "--set", f"dataset={dataset}"]
    if config:
        cmd += ["--config", config]
    for pair in overrides:
        cmd += ["--set", pair]
    if not tracking:
        cmd.append("--no-tracking")
    return cmd


def read_step_log(output_dir: Path) -> list[dict[str, Any]]:
    path = Path(output_dir) / "steps.jsonl"
    if not path.exists():
        return []
    out = []
    for line in path.read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line cut by SIGKILL
    return out


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


def run_and_kill(cmd: list[str], env: dict[str, str], output_dir: Path, at_step: int, sig: int,
                 timeout: float = 600) -> dict[str, Any]:
    """Start a training process, send `sig` once the step log shows `at_step`, wait for it to exit."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + timeout
    try:
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"training exited ({proc.returncode}) before step {at_step}: {proc.stderr.read()[-2000:]}")
            steps = read_step_log(output_dir)
            if steps and steps[-1]["step"] >= at_step and steps[-1]["pid"] == proc.pid:
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"training did not reach step {at_step} in {timeout}s")
            time.sleep(0.02)
        sent_at = time.monotonic()
        proc.send_signal(sig)
        err = proc.communicate(timeout=timeout)[1]
        return {"signal": signal.Signals(sig).name, "at_step": steps[-1]["step"], "exit_code": proc.returncode,
                "exit_seconds": round(time.monotonic() - sent_at, 3), "stderr_tail": err[-1500:]}
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def adapter_max_abs_diff(a: Path, b: Path) -> float:
    from safetensors.torch import load_file

    ta = load_file(str(Path(a) / "adapter_model.safetensors"))
    tb = load_file(str(Path(b) / "adapter_model.safetensors"))
    if ta.keys() != tb.keys():
        return float("inf")
    return max(float((ta[k].double() - tb[k].double()).abs().max()) for k in ta)


def preemption_trial(base_model: str, dataset: str, workdir: Path, overrides: list[str], kills: list[tuple[int, int]],
                     reference_adapter: Path, env: dict[str, str], tracking: bool = True,
                     timeout: float = 600, config: str | None = None) -> dict[str, Any]:
    """One run, killed at each `(step, signal)` in turn and resumed each time, then compared.

    Returns the kills, the final adapter's max abs difference from the reference, and what the
    step log shows: steps trained more than once, and whether any of them follows a SIGTERM."""
    out = workdir
    events = []
    for at_step, sig in kills:
        cmd = train_command(base_model, dataset, out, overrides, tracking=tracking, config=config)
        before = len(read_step_log(out))
        event = run_and_kill(cmd, env, out, at_step, sig, timeout)
        event["log_lines_before"] = before
        events.append(event)
    # `auto`: a SIGKILL before the first checkpoint leaves nothing to resume, and the run starts over.
    final = _run(train_command(base_model, dataset, out, overrides, resume="auto", tracking=tracking, config=config),
                 env, timeout)
    if final.returncode != 0:
        raise RuntimeError(f"resumed training failed ({final.returncode}): {final.stderr[-3000:]}")
    summary = json.loads((out / "train_summary.json").read_text())
    log = read_step_log(out)
    seen: dict[int, int] = {}
    for row in log:
        seen[row["step"]] = seen.get(row["step"], 0) + 1
    retrained = sorted(s for s, n in seen.items() if n > 1)
    # After SIGTERM the run checkpoints the step it finished; its successor starts at the next step.
    after_sigterm = []
    for event in events:
        if event["signal"] == "SIGTERM":
            pos = event["log_lines_before"]
            attempt = [r for r in log[pos:]]
            pid = attempt[0]["pid"] if attempt else None
            last = max((r["step"] for r in attempt if r["pid"] == pid), default=0)
            nxt = next((r for r in attempt if r["pid"] != pid), None)
            after_sigterm.append({"last_step": last, "next_attempt_starts_at": nxt["step"] if nxt else None})
    return {
        "kills": [{k: v for k, v in e.items() if k != "stderr_tail"} for e in events],
        "max_abs_diff": adapter_max_abs_diff(reference_adapter, out / "adapter"),
        "steps_logged": len(log),
        "distinct_steps": len(seen),
        "retrained_steps": retrained,
        "sigterm_handoffs": after_sigterm,
        "sigterm_retrained": [h for h in after_sigterm if h["next_attempt_starts_at"] not in (None, h["last_step"] + 1)],
        "mlflow_run_id": summary["mlflow_run_id"],
        "resumed_from": summary["resumed_from"],
        "stderr_tails": [e["stderr_tail"] for e in events if e["exit_code"] not in (143, -signal.SIGKILL)],
    }


def bench_preemption(base_model: str, dataset: str, trials: int = 5, steps: int = 40, save_every: int = 5,
                     seed: int = 0, tracking: bool = True, workdir: str | None = None,
                     extra_overrides: list[str] | None = None, config: str | None = None) -> dict[str, Any]:
    """Kill-and-resume `trials` runs with SIGTERM and `trials` with SIGKILL at seeded random steps."""
    overrides = [f"max_steps={steps}", f"save_every={save_every}", "threads=1", "seed=7", *(extra_overrides or [])]
    root = Path(workdir or tempfile.mkdtemp(prefix="llmops-bench-preempt-"))
    env = {**os.environ, "PYTHONUNBUFFERED": "1", "LLMOPS_MLFLOW_TRACKING_URI": f"sqlite:///{root}/mlflow.db",
           "LLMOPS_MLFLOW_ARTIFACT_ROOT": str(root / "artifacts")}
    started = time.monotonic()
    ref = _run(train_command(base_model, dataset, root / "reference", overrides, resume="false", tracking=tracking,
                             config=config), env, 1200)
    if ref.returncode != 0:
        raise RuntimeError(f"reference run failed ({ref.returncode}): {ref.stderr[-3000:]}")
    rng = random.Random(seed)
    results = []
    for i in range(2 * trials):
        sig = signal.SIGTERM if i < trials else signal.SIGKILL
        at = rng.randint(1, steps - 1)
        results.append(
            {"trial": i, **preemption_trial(base_model, dataset, root / f"trial-{i}", overrides, [(at, sig)],
                                            root / "reference" / "adapter", env, tracking, config=config)}
        )
    term = [r for r in results if r["kills"][0]["signal"] == "SIGTERM"]
    kill = [r for r in results if r["kills"][0]["signal"] == "SIGKILL"]
    return {
        "steps": steps,
        "save_every": save_every,
        "trials_per_signal": trials,
        "all_equal": all(r["max_abs_diff"] <= 1e-6 for r in results),
        "max_abs_diff": max(r["max_abs_diff"] for r in results),
        "sigterm_exit_codes": sorted({r["kills"][0]["exit_code"] for r in term}),
        "sigterm_max_exit_seconds": max(r["kills"][0]["exit_seconds"] for r in term),
        "sigterm_steps_trained_twice": sum(len(r["sigterm_retrained"]) for r in term),
        "sigterm_retrained_steps": sum(len(r["retrained_steps"]) for r in term),
        "sigkill_retrained_steps": sum(len(r["retrained_steps"]) for r in kill),
        "trials": results,
        "seconds": round(time.monotonic() - started, 1),
        "workdir": str(root),
    }
