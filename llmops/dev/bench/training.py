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

DATASHEET_PEAK_TFLOPS = {"NVIDIA H100 80GB HBM3": 989.4, "NVIDIA H200": 989.4}
"""Dense bf16/fp16 tensor-core peak of the SXM parts by their CUDA device name (vendor datasheet); other
devices (or another figure, such as a measured matmul rate) need `--peak-tflops`."""


def device_peak_tflops(device: str, dtype: str, given: float | None = None) -> float | None:
    """The peak the MFU is taken against: `given`, else the datasheet figure of a known GPU in bf16/fp16."""
    if given is not None:
        return given
    return DATASHEET_PEAK_TFLOPS.get(device) if dtype in ("bfloat16", "float16") else None


def lora_flops_per_token(frozen_linear_params: int, trainable_params: int, layers: int, attention_width: int,
                         context: float) -> float:
    """Model FLOPs of one trained token of a LoRA step (recomputation not counted).

    `4 * frozen_linear_params`: forward (2) and the gradient with respect to the inputs (2) through every
    frozen matrix, the output head included; a frozen weight gets no gradient (the 2 more of full
    fine-tuning's 6). `6 * trainable_params`: forward, input and weight gradient of the adapter.
    `6 * layers * attention_width * context`: causal attention (QK^T and AV, 2 FLOPs per multiply-add,
    half the square; backward twice the forward), with `context` = sum(len^2) / sum(len) over the rows,
    the exact average for unpadded rows of different lengths."""
    return 4.0 * frozen_linear_params + 6.0 * trainable_params + 6.0 * layers * attention_width * context


def model_flops_per_token(model, rows) -> dict[str, Any]:
    """`lora_flops_per_token` of a PEFT model on these rows, with the counts it used."""
    import torch

    frozen = sum(m.in_features * m.out_features for m in model.modules()
                 if isinstance(m, torch.nn.Linear) and not m.weight.requires_grad)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    cfg = model.config
    width = cfg.num_attention_heads * (getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads)
    lengths = [e.length for e in rows]
    context = sum(n * n for n in lengths) / sum(lengths)
    return {
        "flops_per_token": lora_flops_per_token(frozen, trainable, cfg.num_hidden_layers, width, context),
        "frozen_linear_parameters": frozen,
        "trainable_parameters": trainable,
        "attention_context": round(context, 1),
    }


def _reset_peak_memory(device) -> None:
    import gc

    import torch

    gc.collect()
    if device.type == "cuda" and torch.cuda.is_initialized():  # before the first use there is nothing to reset
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(device)


def _peak_memory_gib(device) -> dict[str, float | None]:
    import torch

    if device.type != "cuda":
        return {"allocated": None, "reserved": None}
    return {"allocated": round(torch.cuda.max_memory_allocated(device) / 2**30, 2),
            "reserved": round(torch.cuda.max_memory_reserved(device) / 2**30, 2)}


def bare_loop(model_path: str, base_model: str, config, rows, steps: int) -> dict[str, Any]:
    """A bare PEFT + torch loop: the trainer's model (device, dtype, quantization, LoRA), optimizer and
    batches; no tracking, step log, scheduler or checkpoints. Tokens/s, peak GPU memory, FLOPs per token."""
    import torch

    from llmops.training.data import DataOrder, collate
    from llmops.training.trainer import Dist, _device_and_dtype, load_model

    device, dtype = _device_and_dtype(config, Dist())
    _reset_peak_memory(device)
    torch.manual_seed(config.seed)
    model = load_model(model_path, base_model, config, device, dtype)
    flops = model_flops_per_token(model, rows)
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
            batch = {k: v.to(device) for k, v in
                     collate([rows[i] for i in order.indices(position, config.batch_size)], pad).items()}
            position += config.batch_size
            loss = model(**batch).loss / config.grad_accum_steps
            loss.backward()
            tokens += int(batch["attention_mask"].sum())
        if config.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(params, config.max_grad_norm)
        opt.step()
        opt.zero_grad(set_to_none=True)
        loss.item()  # waits for the step, as the trainer's loss logging does
    seconds = time.perf_counter() - started
    return {"tokens_per_s": tokens / seconds, "peak_gpu_memory_gib": _peak_memory_gib(device), **flops,
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "dtype": str(dtype).removeprefix("torch.")}


def bench_train(
    base_model: str,
    dataset: str,
    settings: Settings,
    config_path: str | None = None,
    steps: int | None = None,
    rounds: int = 2,
    overrides: list[str] | None = None,
    peak_tflops: float | None = None,
) -> dict[str, Any]:
    """The trainer's tokens/s against the bare loop's, the checkpoint overhead at the default interval,
    peak GPU memory, and the model FLOP utilisation against `peak_tflops` (default: the datasheet peak
    of a known GPU, else none)."""
    from llmops.training.config import load_config
    from llmops.training.data import read_dataset, split, tokenize_dataset
    from llmops.training.trainer import (
        Dist,
        RunOptions,
        Trainer,
        _device_and_dtype,
        load_tokenizer,
        resolve_base_model,
    )

    cfg = load_config(config_path, [*(overrides or []), f"base_model={base_model}", f"dataset={dataset}"],
                      defaults=settings.training.train_defaults)
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
    device, _dtype = _device_and_dtype(cfg, Dist())
    ours: list[dict[str, Any]] = []
    bare: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="llmops-bench-train-") as tmp:
        # MLflow on its own SQLite file: the benchmark must not add runs to the project's experiment.
        bench_settings = settings.with_overrides(mlflow_tracking_uri=f"sqlite:///{tmp}/mlflow.db",
                                                 mlflow_artifacts_uri=f"{tmp}/artifacts")
        for i in range(rounds):
            # Alternate which loop goes first, so warm caches and a busy neighbour favour neither.
            order = ("bare", "ours") if i % 2 == 0 else ("ours", "bare")
            for which in order:
                if which == "bare":
                    bare.append(bare_loop(model_path, base_model, cfg, rows, steps))
                else:
                    options = RunOptions(output_dir=f"{tmp}/run-{i}", resume="false", run_name=f"bench-{i}")
                    _reset_peak_memory(device)
                    summary = Trainer(cfg, options, bench_settings).run()
                    ours.append({**summary, "peak_gpu_memory_gib": _peak_memory_gib(device)})
    best = max(ours, key=lambda s: s["tokens_per_s"])
    baseline = max(bare, key=lambda s: s["tokens_per_s"])
    flops = baseline["flops_per_token"]
    peak = device_peak_tflops(baseline["device"], baseline["dtype"], peak_tflops)

    def tflops(tokens_per_s: float) -> float:
        return tokens_per_s * flops / 1e12

    return {
        "steps": steps,
        "rounds": rounds,
        "save_every": cfg.save_every,
        "tokens_per_s": best["tokens_per_s"],
        "baseline_tokens_per_s": round(baseline["tokens_per_s"], 2),
        "ratio": round(best["tokens_per_s"] / baseline["tokens_per_s"], 4),
        "checkpoint_overhead": round(best["checkpoint_seconds"] / best["train_seconds"], 4),
        "checkpoint_seconds": best["checkpoint_seconds"],
        "checkpoints_per_run": len(best["checkpoints_written"]),
        "train_seconds": best["train_seconds"],
        "all_tokens_per_s": [s["tokens_per_s"] for s in ours],
        "all_baseline_tokens_per_s": [round(b["tokens_per_s"], 2) for b in bare],
        "batch_size": cfg.batch_size,
        "grad_accum_steps": cfg.grad_accum_steps,
        "max_seq_len": cfg.max_seq_len,
        "mean_row_tokens": round(sum(e.length for e in rows) / len(rows), 1),
        "max_row_tokens": max(e.length for e in rows),
        "device": baseline["device"],
        "dtype": baseline["dtype"],
        "quantization": cfg.quantization,
        "gradient_checkpointing": cfg.gradient_checkpointing,
        "peak_gpu_memory_gib": best["peak_gpu_memory_gib"],
        "baseline_peak_gpu_memory_gib": baseline["peak_gpu_memory_gib"],
        **{k: baseline[k] for k in ("flops_per_token", "frozen_linear_parameters", "trainable_parameters",
                                    "attention_context")},
        "model_tflops_per_s": round(tflops(best["tokens_per_s"]), 3),
        "baseline_model_tflops_per_s": round(tflops(baseline["tokens_per_s"]), 3),
        "peak_tflops": peak,
        "mfu": round(tflops(best["tokens_per_s"]) / peak, 4) if peak else None,
        "baseline_mfu": round(tflops(baseline["tokens_per_s"]) / peak, 4) if peak else None,
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
           "LLMOPS_MLFLOW_ARTIFACTS_URI": str(root / "artifacts")}
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
