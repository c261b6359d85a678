"""The LoRA training loop behind `llmops train`.

A small custom loop instead of HF Trainer, for two reasons: exact resume (the whole state, including
the data position and the RNG, is ours to save and restore) and low overhead (nothing runs per step
but the step itself, a line in the step log and a buffered metric).

One run:

1. inputs: the base model and the dataset are checked and the rows tokenized (bad rows counted,
   too many of them fail the run) before the model weights are loaded;
2. resume: under the lease on the output and checkpoint folders (one writer at a time, `llmops.lease`),
   `--resume auto|true|false` picks the newest complete checkpoint (see `checkpoint.py`);
3. the loop: micro-batches from the seeded data order, AdamW on the adapter, a checkpoint every
   `save_every` steps and at the end, the eval loss on the held-out rows; on SIGTERM the step in
   flight finishes, a checkpoint is written and the run exits with `TrainingInterrupted` (143);
4. outputs: the adapter (PEFT `save_pretrained` layout) in `<output_dir>/adapter`, the per-step log
   `<output_dir>/steps.jsonl`, the loss curve, MLflow params/metrics/artifacts, the summary.

Multi-GPU runs are torchrun workers (`WORLD_SIZE` > 1): DDP over the adapter, each rank taking its
slice of every global micro-batch, rank 0 writing checkpoints, logs and outputs.
"""

from __future__ import annotations

import io
import json
import logging
import math
import os
import random
import signal
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.contracts import TrainSummary
from llmops.exceptions import CheckpointError, ModelLoadError, TrainingInterrupted
from llmops.lease import Leases
from llmops.settings import Settings
from llmops.training import checkpoint as ckpt
from llmops.training.config import TrainConfig
from llmops.training.data import DataOrder, Example, collate, read_dataset, split, tokenize_dataset
from llmops.training.inputs import check_base_model, check_dataset

log = logging.getLogger(__name__)

STEP_LOG = "steps.jsonl"
SUMMARY = "train_summary.json"


# --- signals -----------------------------------------------------------------------------------------


class StopFlag:
    """Set by SIGTERM/SIGINT; the loop checks it after every optimizer step."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._previous: dict[int, Any] = {}

    def __bool__(self) -> bool:
        return self.signal is not None

    def _handle(self, signum, frame) -> None:
        if self.signal is None:
            log.warning("Received %s: finishing the current step, then checkpointing", signal.Signals(signum).name)
        self.signal = signum

    def install(self) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._previous[sig] = signal.signal(sig, self._handle)

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()


# --- distributed -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """torchrun's environment -> process group (NCCL on GPUs, Gloo on CPU); a single process otherwise."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch
    import torch.distributed as dist

    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=local_rank)


def _any_rank(flag: bool, d: Dist, device) -> bool:
    """True on every rank when any rank has the flag (all ranks must stop at the same step)."""
    if d.world == 1:
        return flag
    import torch
    import torch.distributed as dist

    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def _barrier(d: Dist) -> None:
    if d.world > 1:
        import torch.distributed as dist

        dist.barrier()


# --- model -------------------------------------------------------------------------------------------


def resolve_base_model(ref: str, settings: Settings) -> str:
    """A path or hub id `from_pretrained` can load: S3 models are downloaded into the model cache."""
    kind = check_base_model(ref)
    if kind != "s3":
        return str(Path(ref.removeprefix("file://")).expanduser()) if kind == "local" else ref
    # The registry's download: into a `.partial` sibling, renamed when complete, so a killed task never
    # leaves half a model that the next run would take for a complete one.
    from llmops.registry import local_model_path

    return local_model_path(ref, cache_dir=settings.model_cache)


def _device_and_dtype(config: TrainConfig, d: Dist):
    import torch

    if torch.cuda.is_available():
        device = torch.device("cuda", d.local_rank)
        if config.precision == "auto":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float32
        else:
            dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[config.precision]
        return device, dtype
    if config.quantization == "4bit":
        raise ModelLoadError("quantization 4bit (QLoRA) needs a CUDA GPU: set quantization=none or auto on CPU")
    dtype = {"auto": torch.float32, "fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[
        config.precision
    ]
    return torch.device("cpu"), dtype


def load_tokenizer(path: str, ref: str):
    from transformers import AutoTokenizer

    try:
        tok = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # transformers raises OSError, ValueError, ... depending on what is missing
        raise ModelLoadError(f"cannot load the tokenizer of base model {ref}: {exc}") from None
    if tok.pad_token_id is None:
        # Padding positions are masked out of the loss and attention, so any token will do.
        tok.pad_token = tok.eos_token
    return tok


def load_model(path: str, ref: str, config: TrainConfig, device, dtype):
    """The base model with LoRA adapters (4-bit quantized base for QLoRA on a GPU)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    kwargs: dict[str, Any] = {"dtype": dtype}
    quantize = config.quantization == "4bit" or (config.quantization == "auto" and device.type == "cuda")
    if quantize:
        # Imported only here: bitsandbytes needs CUDA and is not installed on CPU-only machines.
        try:
            import bitsandbytes  # noqa: F401
        except ImportError:
            if config.quantization == "4bit":
                raise ModelLoadError(
                    "quantization=4bit (QLoRA) needs bitsandbytes: install it in the trainer image, "
                    "or set quantization=none"
                ) from None
            log.warning("bitsandbytes is not installed: training LoRA on the unquantized base model")
            quantize = False
    if quantize:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype=dtype,
        )
        kwargs["device_map"] = {"": device.index or 0}
    try:
        model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    except Exception as exc:  # same: many exception types for one meaning
        raise ModelLoadError(f"cannot load base model {ref}: {exc}") from None
    if quantize:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=config.gradient_checkpointing)
    elif config.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if not quantize:
        model.to(device)
    targets: Any = config.target_modules
    if targets == ["all-linear"]:
        targets = "all-linear"
    lora = LoraConfig(
        r=config.lora_r,
        lora_alpha=config.lora_alpha,
        lora_dropout=config.lora_dropout,
        target_modules=targets,
        task_type="CAUSAL_LM",
    )
    try:
        model = get_peft_model(model, lora)
    except ValueError as exc:
        raise ModelLoadError(f"cannot add LoRA to {ref}: {exc}; set target_modules to module names of this model") from None
    # The adapter's record of its base must be the reference other steps can load, not a cache path.
    model.peft_config["default"].base_model_name_or_path = _portable_ref(ref)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
    return model


def _portable_ref(ref: str) -> str:
    kind = check_base_model(ref)
    if kind == "local":
        return str(Path(ref.removeprefix("file://")).expanduser().resolve())
    return ref


# --- state -------------------------------------------------------------------------------------------


def _torch_bytes(obj: Any) -> bytes:
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


def _torch_load(data: bytes) -> Any:
    import torch

    return torch.load(io.BytesIO(data), map_location="cpu", weights_only=False)


def rng_state() -> dict[str, Any]:
    import numpy as np
    import torch

    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    import numpy as np
    import torch

    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def adapter_state(model) -> dict[str, Any]:
    from peft import get_peft_model_state_dict

    # save_embedding_layers=False: with an adapter on the embeddings PEFT would otherwise copy the base
    # embedding matrix into every checkpoint and adapter; the vocabulary never changes here.
    state = get_peft_model_state_dict(_unwrap(model), save_embedding_layers=False)
    return {k: v.detach().to("cpu").contiguous() for k, v in state.items()}


def _unwrap(model):
    return model.module if hasattr(model, "module") and not hasattr(model, "peft_config") else model


def lr_lambda(config: TrainConfig, total_steps: int) -> Callable[[int], float]:
    """Learning-rate multiplier per step: linear warm-up, then cosine/linear decay to `min_lr_ratio`."""
    warmup = min(config.warmup_steps, max(0, total_steps - 1))
    floor = config.min_lr_ratio

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / (warmup + 1)
        if config.lr_schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total_steps - warmup))
        if config.lr_schedule == "linear":
            return floor + (1 - floor) * (1 - progress)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


@dataclass
class TrainState:
    """What a checkpoint records beyond tensors: where the run is."""

    step: int = 0
    position: int = 0
    tokens: int = 0
    mlflow_run_id: str | None = None
    last_train_loss: float | None = None
    last_eval_loss: float | None = None
    checkpoints: list[int] = field(default_factory=list)


@dataclass
class _Run:
    """One attempt's model, optimizer and data, as the loop, the checkpoints and the outputs use them."""

    model: Any  # the PEFT model, unwrapped: what is saved and evaluated
    ddp_model: Any  # `model`, or its DistributedDataParallel wrapper: what is trained
    trainable: list[Any]  # the parameters the optimizer updates (gradient clipping)
    optimizer: Any
    scheduler: Any
    tokenizer: Any
    train_rows: list[Example]
    eval_rows: list[Example]
    total_steps: int
    device: Any
    d: Dist
    tracker: Tracker
    dataset_sha: str
    state: TrainState


@dataclass
class _Progress:
    """This attempt's progress, for its throughput and its final train loss."""

    started: float
    tokens_before: int
    first_step: int
    losses: list[float] = field(default_factory=list)


# --- MLflow --------------------------------------------------------------------------------------------


class Tracker:
    """MLflow for one run, with per-step metrics buffered and sent asynchronously in batches."""

    def __init__(self, settings: Settings, enabled: bool) -> None:
        self.enabled = enabled
        self.settings = settings
        self.client = None
        self.run_id: str | None = None
        self._buffer: list[Any] = []

    def start(self, run_id: str | None, run_name: str | None, tags: dict[str, str]) -> str | None:
        if not self.enabled:
            return None
        import mlflow
        from mlflow.tracking import MlflowClient

        uri = self.settings.mlflow_tracking
        if uri.startswith("sqlite:///"):
            Path(uri.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        mlflow.set_tracking_uri(uri)
        self.client = MlflowClient(tracking_uri=uri)
        if run_id:
            # A resumed run continues the MLflow run of the run it resumes (the id is in the checkpoint).
            from mlflow.exceptions import MlflowException

            try:
                self.client.update_run(run_id, status="RUNNING")
                self.run_id = run_id
                return run_id
            except MlflowException as exc:
                log.warning("Cannot continue MLflow run %s (%s): starting a new run", run_id, exc)
        from llmops.registry import experiment_id

        exp_id = experiment_id(self.client, self.settings)
        run = self.client.create_run(exp_id, run_name=run_name, tags={"llmops.step": "train", **tags})
        self.run_id = run.info.run_id
        return self.run_id

    def log_params(self, params: dict[str, Any]) -> None:
        if self.client is None:
            return
        from mlflow.entities import Param

        items = [Param(k, str(v)[:6000]) for k, v in sorted(params.items())]
        for i in range(0, len(items), 100):
            self.client.log_batch(self.run_id, params=items[i : i + 100])

    def metric(self, key: str, value: float, step: int) -> None:
        if self.client is None:
            return
        from mlflow.entities import Metric

        self._buffer.append(Metric(key, float(value), int(time.time() * 1000), step))

    def flush(self, wait: bool = False) -> None:
        if self.client is None:
            return
        while self._buffer:
            batch, self._buffer = self._buffer[:1000], self._buffer[1000:]
            self.client.log_batch(self.run_id, metrics=batch, synchronous=False)
        if wait:
            import mlflow

            mlflow.flush_async_logging()

    def log_artifact(self, path: Path, artifact_path: str | None = None) -> None:
        if self.client is not None:
            self.client.log_artifact(self.run_id, str(path), artifact_path)

    def log_artifacts(self, path: Path, artifact_path: str) -> None:
        if self.client is not None:
            self.client.log_artifacts(self.run_id, str(path), artifact_path)

    def loss_history(self) -> dict[str, list[tuple[int, float]]]:
        """train and eval loss by step over the whole run (also before a resume); the latest value wins."""
        out: dict[str, list[tuple[int, float]]] = {}
        if self.client is None:
            return out
        for key in ("train_loss", "eval_loss"):
            by_step = {}
            for m in sorted(self.client.get_metric_history(self.run_id, key), key=lambda m: m.timestamp):
                by_step[m.step] = m.value
            out[key] = sorted(by_step.items())
        return out

    def end(self, status: str) -> None:
        if self.client is None:
            return
        self.flush(wait=True)
        self.client.set_terminated(self.run_id, status=status)
        log.info("MLflow run %s: %s", self.run_id, status)


def plot_losses(history: dict[str, list[tuple[int, float]]], path: Path) -> Path | None:
    """The loss curve (train per step, eval at its steps) as a PNG, or None without data."""
    if not history.get("train_loss"):
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4), dpi=100)
    steps, values = zip(*history["train_loss"], strict=True)
    ax.plot(steps, values, label="train loss", linewidth=1)
    if history.get("eval_loss"):
        e_steps, e_values = zip(*history["eval_loss"], strict=True)
        ax.plot(e_steps, e_values, "o-", label="eval loss")
    ax.set_xlabel("step")
    ax.set_ylabel("loss (completion tokens)")
    ax.set_yscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


# --- the run -------------------------------------------------------------------------------------------


@dataclass
class RunOptions:
    """Where one `llmops train` run reads and writes."""

    output_dir: str
    checkpoint_dir: str | None = None
    resume: str = "auto"
    run_name: str | None = None
    tracking: bool = True
    tags: dict[str, str] = field(default_factory=dict)

    @property
    def checkpoints(self) -> str:
        return self.checkpoint_dir or storage.join(self.output_dir, "checkpoints")


class Trainer:
    def __init__(self, config: TrainConfig, options: RunOptions, settings: Settings, stop: StopFlag | None = None):
        self.config = config
        self.options = options
        self.settings = settings
        self.stop = stop if stop is not None else StopFlag()
        self.base_model = config.base_model or settings.base_model
        self.dataset_uri = config.dataset or settings.dataset
        self.checkpoint_seconds = 0.0
        self.written: list[str] = []
        self.leases: Leases | None = None

    # -- the whole run --

    def run(self) -> dict[str, Any]:
        """The whole run, holding the lease on its output and checkpoint folders (one writer at a time:
        a second run on the same folders waits, or fails naming this one; see `llmops.lease`)."""
        opts = self.options
        storage.check_uri(opts.output_dir, "--output-dir")
        storage.check_uri(opts.checkpoints, "checkpoint dir")
        check_base_model(self.base_model)
        check_dataset(self.dataset_uri)
        d = init_distributed()
        if d.main:
            folders = [(opts.output_dir, "training output"), (opts.checkpoints, "checkpoint dir")]
            self.leases = Leases.of(folders, self.settings).acquire(cancelled=lambda: bool(self.stop))
        # The other ranks look for the checkpoint to resume only once rank 0 holds the folders.
        _barrier(d)
        try:
            return self._run()
        finally:
            if self.leases is not None:
                self.leases.release()
                self.leases = None

    def _verify_lease(self) -> None:
        """Before each durable write: stop (`LeaseLost`) if another writer has taken the folders over."""
        if self.leases is not None:
            self.leases.verify()

    def _run(self) -> dict[str, Any]:
        import torch

        cfg, opts = self.config, self.options
        if cfg.threads:
            torch.set_num_threads(cfg.threads)
        d = init_distributed()
        resume_ref = ckpt.find_resume(opts.checkpoints, opts.resume)

        dataset = read_dataset(self.dataset_uri)
        model_path = resolve_base_model(self.base_model, self.settings)
        tokenizer = load_tokenizer(model_path, self.base_model)
        examples, report = tokenize_dataset(dataset, tokenizer, cfg.max_seq_len, cfg.max_bad_fraction)
        train_rows, eval_rows = split(examples, cfg.eval_fraction, cfg.seed)
        log.info(
            "Dataset %s: %d rows, %d bad, %d train, %d eval", self.dataset_uri, report.total, report.bad_count,
            len(train_rows), len(eval_rows),
        )
        rows_per_step = cfg.batch_size * cfg.grad_accum_steps * d.world
        total_steps = cfg.max_steps or max(1, math.ceil(cfg.epochs * len(train_rows) / rows_per_step))

        device, dtype = _device_and_dtype(cfg, d)
        # The adapter's initial weights and dropout come from the seed (a resume overwrites both).
        torch.manual_seed(cfg.seed)
        random.seed(cfg.seed)
        model = load_model(model_path, self.base_model, cfg, device, dtype)
        trainable = [p for p in model.parameters() if p.requires_grad]
        optimizer = torch.optim.AdamW(trainable, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))

        state = TrainState()
        if resume_ref is not None:
            state = self._restore(resume_ref, model, optimizer, scheduler, total_steps, dataset.sha256, d)
        if d.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ddp_model = DistributedDataParallel(model, device_ids=[d.local_rank] if device.type == "cuda" else None)
        else:
            ddp_model = model

        tracker = Tracker(self.settings, enabled=opts.tracking and d.main)
        tracker_tags = {"dataset_sha256": dataset.sha256, **opts.tags}
        run_id = tracker.start(state.mlflow_run_id, opts.run_name, tracker_tags)
        state.mlflow_run_id = run_id
        run = _Run(
            model=model, ddp_model=ddp_model, trainable=trainable, optimizer=optimizer, scheduler=scheduler,
            tokenizer=tokenizer, train_rows=train_rows, eval_rows=eval_rows, total_steps=total_steps,
            device=device, d=d, tracker=tracker, dataset_sha=dataset.sha256, state=state,
        )
        if resume_ref is None:
            tracker.log_params(
                {
                    **{k: (",".join(v) if isinstance(v, list) else v) for k, v in cfg.model_dump().items()},
                    "base_model": self.base_model,
                    "dataset": self.dataset_uri,
                    "dataset_sha256": dataset.sha256,
                    "total_steps": total_steps,
                    "world_size": d.world,
                    "train_rows": len(train_rows),
                    "eval_rows": len(eval_rows),
                    "bad_rows": report.bad_count,
                    "trainable_parameters": sum(p.numel() for p in trainable),
                }
            )
            if d.main:
                with tempfile.TemporaryDirectory() as tmp:
                    path = Path(tmp) / "train_config.json"
                    path.write_text(json.dumps(cfg.model_dump(), indent=2, sort_keys=True) + "\n")
                    tracker.log_artifact(path)

        status = "FAILED"
        try:
            attempt = self._loop(run)
            eval_loss = self._evaluate(model, eval_rows, tokenizer, device, cfg.batch_size, d) if eval_rows else None
            if eval_loss is not None:
                state.last_eval_loss = eval_loss
                tracker.metric("eval_loss", eval_loss, state.step)
            summary = self._finish(run, attempt, report, resume_ref)
            status = "FINISHED"
            return TrainSummary(**{**summary, "rows_train": len(train_rows), "rows_eval": len(eval_rows)}).to_json()
        except TrainingInterrupted:
            status = "KILLED"
            raise
        finally:
            tracker.end(status)

    # -- the loop --

    def _loop(self, run: _Run) -> dict[str, float]:
        """Train from `run.state.step` to `run.total_steps`, checkpointing every `save_every` steps; a stop
        signal checkpoints the step just done and raises `TrainingInterrupted`."""
        cfg, state = self.config, run.state
        order = DataOrder(len(run.train_rows), cfg.seed)
        step_log = self._open_step_log(run.d, fresh=state.step == 0)
        run.ddp_model.train()
        progress = _Progress(started=time.perf_counter(), tokens_before=state.tokens, first_step=state.step)
        try:
            if _any_rank(bool(self.stop), run.d, run.device):
                raise TrainingInterrupted(f"stopped by signal before step {state.step + 1}; nothing to checkpoint")
            while state.step < run.total_steps:
                loss_value, lr = self._train_step(run, order)
                progress.losses.append(loss_value)
                self._log_step(run, progress, step_log, loss_value, lr)
                self._evaluate_every(run)
                self._checkpoint_or_stop(run)
        finally:
            step_log.close()
        elapsed = time.perf_counter() - progress.started
        trained = state.tokens - progress.tokens_before
        losses_window = progress.losses
        return {
            "seconds": elapsed,
            "steps": state.step - progress.first_step,
            "tokens": trained,
            "tokens_per_s": trained / elapsed if elapsed > 0 and trained else 0.0,
            "train_loss": (sum(losses_window[-cfg.log_every:]) / len(losses_window[-cfg.log_every:]))
            if losses_window else state.last_train_loss,
        }

    def _train_step(self, run: _Run, order: DataOrder) -> tuple[float, float]:
        """One optimizer step over `grad_accum_steps` micro-batches (gradients synchronized across ranks on
        the last one); returns the step's loss (averaged over ranks) and the learning rate it used."""
        import torch

        cfg, d, state = self.config, run.d, run.state
        step_loss = torch.zeros((), device=run.device)
        step_tokens = 0
        for micro in range(cfg.grad_accum_steps):
            idx = order.indices(state.position + d.rank * cfg.batch_size, cfg.batch_size)
            state.position += cfg.batch_size * d.world
            rows = [run.train_rows[i] for i in idx]
            batch = {k: v.to(run.device) for k, v in collate(rows, run.tokenizer.pad_token_id).items()}
            sync = micro == cfg.grad_accum_steps - 1 or d.world == 1
            with nullcontext() if sync else run.ddp_model.no_sync():
                loss = run.ddp_model(**batch).loss / cfg.grad_accum_steps
                loss.backward()
            step_loss += loss.detach()
            step_tokens += int(batch["attention_mask"].sum())
        if cfg.max_grad_norm:
            torch.nn.utils.clip_grad_norm_(run.trainable, cfg.max_grad_norm)
        lr = run.scheduler.get_last_lr()[0]
        run.optimizer.step()
        run.scheduler.step()
        run.optimizer.zero_grad(set_to_none=True)
        state.step += 1
        if d.world > 1:
            import torch.distributed as dist

            packed = torch.tensor([float(step_loss), float(step_tokens)], device=run.device)
            dist.all_reduce(packed)
            loss_value, step_tokens = packed[0].item() / d.world, int(packed[1].item())
        else:
            loss_value = step_loss.item()
        state.tokens += step_tokens
        state.last_train_loss = loss_value
        return loss_value, lr

    def _log_step(self, run: _Run, progress: _Progress, step_log, loss_value: float, lr: float) -> None:
        """The step's line in the step log (rank 0) and its metrics; throughput every `log_every` steps."""
        state, tracker = run.state, run.tracker
        if run.d.main:
            step_log.write(
                json.dumps({"step": state.step, "loss": round(loss_value, 6), "lr": lr,
                            "tokens": state.tokens, "pid": os.getpid()}) + "\n"
            )
            step_log.flush()
        tracker.metric("train_loss", loss_value, state.step)
        tracker.metric("learning_rate", lr, state.step)
        if state.step % self.config.log_every == 0:
            elapsed = time.perf_counter() - progress.started
            tracker.metric("tokens_per_s", (state.tokens - progress.tokens_before) / max(elapsed, 1e-9), state.step)
            tracker.flush()

    def _evaluate_every(self, run: _Run) -> None:
        """The held-out loss every `eval_every` steps (the last step's comes after the loop)."""
        cfg, state = self.config, run.state
        if run.eval_rows and cfg.eval_every and state.step % cfg.eval_every == 0 and state.step < run.total_steps:
            state.last_eval_loss = self._evaluate(run.model, run.eval_rows, run.tokenizer, run.device,
                                                  cfg.batch_size, run.d)
            run.tracker.metric("eval_loss", state.last_eval_loss, state.step)
            run.ddp_model.train()

    def _checkpoint_or_stop(self, run: _Run) -> None:
        """A checkpoint every `save_every` steps, at the last step and when any rank was signalled to stop;
        after the latter, `TrainingInterrupted`."""
        state, total_steps = run.state, run.total_steps
        stopping = _any_rank(bool(self.stop), run.d, run.device)
        if stopping or state.step % self.config.save_every == 0 or state.step == total_steps:
            self._save(run)
        if stopping:
            run.tracker.flush()
            raise TrainingInterrupted(
                f"stopped by signal {self.stop.signal} after step {state.step} of {total_steps}; "
                f"checkpoint {ckpt.step_name(state.step)} written under {self.options.checkpoints}: "
                "run again with --resume auto to continue"
            )

    def _open_step_log(self, d: Dist, fresh: bool):
        if not d.main:
            return open(os.devnull, "w")  # noqa: SIM115 - closed by the loop's finally
        if storage.is_s3(self.options.output_dir):
            self._step_log_path = Path(tempfile.mkdtemp(prefix="llmops-train-")) / STEP_LOG
        else:
            self._step_log_path = storage.local_path(self.options.output_dir) / STEP_LOG
            self._step_log_path.parent.mkdir(parents=True, exist_ok=True)
        # A run that starts over (nothing to resume) starts a new log; a resumed one appends to it.
        return open(self._step_log_path, "w" if fresh else "a", buffering=1)  # noqa: SIM115

    def _evaluate(self, model, rows: list[Example], tokenizer, device, batch_size: int, d: Dist) -> float:
        """Mean loss per completion token on the held-out rows (each rank a slice, summed over ranks)."""
        import torch

        model.eval()
        total = torch.zeros(2, dtype=torch.float64, device=device)
        mine = rows[d.rank :: d.world]
        with torch.no_grad():
            for i in range(0, len(mine), batch_size):
                batch = {k: v.to(device) for k, v in collate(mine[i : i + batch_size], tokenizer.pad_token_id).items()}
                n = int((batch["labels"][:, 1:] != -100).sum())
                total[0] += model(**batch).loss.double() * n
                total[1] += n
        if d.world > 1:
            import torch.distributed as dist

            dist.all_reduce(total)
        model.train()
        return float(total[0] / total[1]) if total[1] else float("nan")

    # -- checkpoints --

    def _save(self, run: _Run) -> None:
        from safetensors.torch import save as save_safetensors

        model, optimizer, scheduler, state, d = run.model, run.optimizer, run.scheduler, run.state, run.d
        total_steps, dataset_sha = run.total_steps, run.dataset_sha

        started = time.perf_counter()
        rng = rng_state()
        if d.world > 1:
            import torch.distributed as dist

            gathered: list[Any] = [None] * d.world
            dist.all_gather_object(gathered, rng)
        else:
            gathered = [rng]
        if d.main:
            state.checkpoints.append(state.step)
            meta = {
                "step": state.step,
                "position": state.position,
                "tokens": state.tokens,
                "mlflow_run_id": state.mlflow_run_id,
                "last_train_loss": state.last_train_loss,
                "last_eval_loss": state.last_eval_loss,
                "checkpoints": state.checkpoints,
                "total_steps": total_steps,
                "world_size": d.world,
                "dataset_sha256": dataset_sha,
                "base_model": self.base_model,
            }
            self._verify_lease()
            files = {
                "adapter.safetensors": save_safetensors(adapter_state(model)),
                "optimizer.pt": _torch_bytes(optimizer.state_dict()),
                "scheduler.pt": _torch_bytes(scheduler.state_dict()),
                **{f"rng-{r}.pt": _torch_bytes(s) for r, s in enumerate(gathered)},
                "state.json": json.dumps(meta, indent=1).encode(),
                "config.json": json.dumps(self.config.model_dump(), indent=1, sort_keys=True).encode(),
            }
            uri = ckpt.write_checkpoint(self.options.checkpoints, state.step, files, {"tokens": state.tokens})
            self.written.append(uri)
            ckpt.prune(self.options.checkpoints, self.config.keep_last)
            log.info("Checkpoint %s", uri)
        _barrier(d)
        self.checkpoint_seconds += time.perf_counter() - started

    def _restore(self, ref: ckpt.CheckpointRef, model, optimizer, scheduler, total_steps: int, dataset_sha: str,
                 d: Dist) -> TrainState:
        from peft import set_peft_model_state_dict
        from safetensors.torch import load as load_safetensors

        files, _ = ckpt.read_checkpoint(ref)
        meta = json.loads(files["state.json"])
        if meta.get("world_size", 1) != d.world:
            raise CheckpointError(
                f"checkpoint {ref.uri} was written by {meta.get('world_size')} processes, this run has {d.world}: "
                "resume with the same GPU count (the data order depends on it), or start fresh with --resume false"
            )
        if meta.get("dataset_sha256") != dataset_sha:
            raise CheckpointError(
                f"checkpoint {ref.uri} was trained on other data (dataset sha256 {meta.get('dataset_sha256')}, "
                f"now {dataset_sha}): use a new output dir, or --resume false to start over"
            )
        if meta.get("total_steps") != total_steps:
            log.warning("Checkpoint planned %s steps, this run %s: the learning-rate schedule changes",
                        meta.get("total_steps"), total_steps)
        set_peft_model_state_dict(model, load_safetensors(files["adapter.safetensors"]))
        optimizer.load_state_dict(_torch_load(files["optimizer.pt"]))
        scheduler.load_state_dict(_torch_load(files["scheduler.pt"]))
        rng_file = f"rng-{d.rank}.pt" if f"rng-{d.rank}.pt" in files else "rng-0.pt"
        set_rng_state(_torch_load(files[rng_file]))
        log.info("Resuming from %s (step %s)", ref.uri, meta["step"])
        return TrainState(
            step=meta["step"],
            position=meta["position"],
            tokens=meta["tokens"],
            mlflow_run_id=meta.get("mlflow_run_id"),
            last_train_loss=meta.get("last_train_loss"),
            last_eval_loss=meta.get("last_eval_loss"),
            checkpoints=list(meta.get("checkpoints", [])),
        )

    # -- outputs --

    def _finish(self, run: _Run, attempt: dict[str, float], report, resume_ref) -> dict[str, Any]:
        model, state, tracker, d = run.model, run.state, run.tracker, run.d
        total_steps, dataset_sha = run.total_steps, run.dataset_sha
        if d.main:
            self._verify_lease()
        adapter_uri = storage.join(self.options.output_dir, "adapter")
        summary = TrainSummary(
            mlflow_run_id=state.mlflow_run_id,
            steps=state.step,
            total_steps=total_steps,
            steps_this_attempt=attempt["steps"],
            tokens=state.tokens,
            tokens_per_s=round(attempt["tokens_per_s"], 2),
            train_seconds=round(attempt["seconds"], 3),
            checkpoint_seconds=round(self.checkpoint_seconds, 3),
            # Time spent checking the lease before checkpoints and outputs (included in checkpoint_seconds).
            lease_verify_seconds=round(self.leases.verify_seconds, 6) if self.leases else None,
            train_loss=attempt["train_loss"],
            eval_loss=state.last_eval_loss,
            checkpoints_written=self.written,
            checkpoint_dir=self.options.checkpoints,
            resumed_from=resume_ref.uri if resume_ref else None,
            adapter_dir=adapter_uri,
            output_dir=self.options.output_dir,
            base_model=self.base_model,
            dataset=self.dataset_uri,
            dataset_hash=dataset_sha,
            **report.as_dict(),
        ).to_json()
        if not d.main:
            _barrier(d)
            return summary
        with tempfile.TemporaryDirectory(prefix="llmops-adapter-") as tmp:
            local_adapter = (
                Path(tmp) / "adapter" if storage.is_s3(adapter_uri) else storage.local_path(adapter_uri)
            )
            _unwrap(model).save_pretrained(str(local_adapter), save_embedding_layers=False)
            if storage.is_s3(adapter_uri):
                storage.upload_dir(local_adapter, adapter_uri)
            tracker.flush(wait=True)
            plot = plot_losses(tracker.loss_history(), Path(tmp) / "loss_curve.png")
            if plot is not None:
                storage.write_bytes(storage.join(self.options.output_dir, "loss_curve.png"), plot.read_bytes())
                tracker.log_artifact(plot)
            tracker.log_artifacts(local_adapter, "adapter")
            if storage.is_s3(self.options.output_dir) and getattr(self, "_step_log_path", None):
                storage.write_bytes(
                    storage.join(self.options.output_dir, f"steps-from-{state.step - attempt['steps']:06d}.jsonl"),
                    self._step_log_path.read_bytes(),
                )
        for key in ("train_loss", "eval_loss"):
            if summary[key] is not None:
                tracker.metric(f"final_{key}", summary[key], state.step)
        tracker.metric("final_tokens_per_s", summary["tokens_per_s"], state.step)
        storage.write_text(
            storage.join(self.options.output_dir, SUMMARY), json.dumps(summary, indent=2, sort_keys=True) + "\n"
        )
        _barrier(d)
        return summary


def train(config: TrainConfig, options: RunOptions, settings: Settings) -> dict[str, Any]:
    """Run one training job with SIGTERM/SIGINT turned into a checkpoint and `TrainingInterrupted`."""
    stop = StopFlag()
    stop.install()
    try:
        return Trainer(config, options, settings, stop).run()
    finally:
        stop.restore()
