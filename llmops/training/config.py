"""The typed training config: a YAML file plus `--set key=value` overrides, validated before anything
heavy is loaded.

Precedence, highest first: `--set` overrides, the YAML file (`--config`), the deployment's
`train_defaults` setting, the defaults below (tuned for the tiny local model: a real model wants a
learning rate around 2e-4; see the README). Every error names the key, the bad value and the fix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops.docstrings import describe, field_docstrings
from llmops.exceptions import ConfigError
from llmops.validation import config_error

DEFAULT_TARGET_MODULES = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj", "embed_tokens"]
"""Every linear layer of a Llama block plus the input embeddings: on the tiny local model the embedding
adapter is what lets LoRA learn new facts about new names within the time budget (README, training)."""


@field_docstrings
class TrainConfig(BaseModel):
    """One fine-tuning run: what to train on, the LoRA adapter, the optimisation, the checkpoints."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, defer_build=True)

    # --- inputs ------------------------------------------------------------------------------------
    base_model: str | None = None
    """Base model: a hub id, a local folder or an `s3://` folder. Default: the `base_model` setting
    (the tiny local model under `<data_root>/models/tiny-llama`)."""

    dataset: str | None = None
    """Training rows, JSONL or Parquet, local or `s3://`: `prompt`/`completion` or chat `messages`.
    Default: the `dataset_uri` setting."""

    max_seq_len: int = Field(default=256, ge=8, le=131072)
    """Longest row in tokens (prompt + completion); longer rows are skipped and counted as bad."""

    eval_fraction: float = Field(default=0.1, ge=0.0, le=0.5)
    """Share of the rows held out (seeded) for the eval loss; 0 disables evaluation."""

    max_bad_fraction: float = Field(default=0.05, ge=0.0, le=1.0)
    """The run fails when more than this share of rows is bad (empty, missing fields, too long)."""

    # --- LoRA --------------------------------------------------------------------------------------
    lora_r: int = Field(default=32, ge=1, le=1024)
    """Rank of the LoRA matrices."""

    lora_alpha: float = Field(default=32.0, gt=0, le=4096)
    """LoRA scaling numerator: the update is scaled by `lora_alpha / lora_r`."""

    lora_dropout: float = Field(default=0.0, ge=0.0, lt=1.0)
    """Dropout on the LoRA input."""

    target_modules: list[str] = Field(default_factory=lambda: list(DEFAULT_TARGET_MODULES), min_length=1)
    """Module names that get adapters (`q_proj`, ..., `embed_tokens`), or `["all-linear"]`."""

    # --- optimisation ------------------------------------------------------------------------------
    learning_rate: float = Field(default=3e-3, gt=0, le=1.0)
    """Peak learning rate of AdamW (after warm-up)."""

    weight_decay: float = Field(default=0.0, ge=0.0, le=1.0)
    """AdamW weight decay of the adapter weights."""

    lr_schedule: Literal["cosine", "linear", "constant"] = "cosine"
    """Decay after warm-up, down to `min_lr_ratio` of the peak."""

    warmup_steps: int = Field(default=20, ge=0, le=100_000)
    """Linear warm-up steps."""

    min_lr_ratio: float = Field(default=0.1, ge=0.0, le=1.0)
    """Final learning rate as a share of the peak."""

    max_steps: int = Field(default=0, ge=0, le=10_000_000)
    """Optimizer steps to train; 0: as many as `epochs` take."""

    epochs: float = Field(default=15.0, gt=0, le=10_000)
    """Passes over the training rows when `max_steps` is 0."""

    batch_size: int = Field(default=16, ge=1, le=4096)
    """Rows per micro-batch on each device."""

    grad_accum_steps: int = Field(default=1, ge=1, le=1024)
    """Micro-batches per optimizer step."""

    max_grad_norm: float = Field(default=1.0, ge=0.0)
    """Gradient clipping norm; 0 disables clipping."""

    seed: int = Field(default=42, ge=0, le=2**31 - 1)
    """Seed of the adapter initialisation, dropout, the held-out split and the data order."""

    # --- checkpoints and logging -------------------------------------------------------------------
    save_every: int = Field(default=100, ge=1, le=10_000_000)
    """Write a checkpoint every this many optimizer steps (and at the end, and on SIGTERM)."""

    keep_last: int = Field(default=2, ge=1, le=1000)
    """Complete checkpoints kept; older ones are deleted after a newer one is complete."""

    eval_every: int = Field(default=100, ge=0, le=10_000_000)
    """Compute the eval loss every this many steps (and always at the end); 0: only at the end.
    Nothing is evaluated when `eval_fraction` is 0."""

    log_every: int = Field(default=10, ge=1, le=100_000)
    """Send buffered per-step metrics to MLflow every this many steps."""

    # --- hardware ----------------------------------------------------------------------------------
    quantization: Literal["auto", "none", "4bit"] = "auto"
    """`4bit`: QLoRA (bitsandbytes NF4, needs a CUDA GPU); `auto`: 4bit on GPU, none on CPU."""

    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    """Compute dtype: `auto` is bf16 on a GPU that supports it, else fp32."""

    gradient_checkpointing: bool = False
    """Trade compute for memory on long sequences."""

    threads: int = Field(default=0, ge=0, le=1024)
    """CPU threads of torch; 0 keeps torch's default."""

    @field_validator("target_modules", mode="before")
    @classmethod
    def _modules_from_string(cls, value: Any) -> Any:
        # `--set target_modules=q_proj,v_proj` is friendlier than YAML list syntax on a command line.
        if isinstance(value, str):
            return [m.strip() for m in value.split(",") if m.strip()]
        return value

    @field_validator("base_model", "dataset")
    @classmethod
    def _not_blank(cls, value: str | None) -> str | None:
        if value is not None and not value.strip():
            return None
        return value


def field_docs() -> dict[str, str]:
    """Key -> one-line description (for `--help`, DAG Params and the README)."""
    return {name: " ".join((f.description or "").split()) for name, f in describe(TrainConfig).model_fields.items()}


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """`["lora_r=8", "target_modules=[q_proj, v_proj]"]` -> typed values (YAML scalars and lists)."""
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {pair!r} is not KEY=VALUE: write it like --set learning_rate=2e-4")
        _check_key(key, f"--set {pair}")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        # YAML reads `2e-4` as a string; a URI with a colon stays a string either way.
        out[key] = raw if isinstance(value, dict) else value
    return out


def _check_key(key: str, where: str) -> None:
    if key in TrainConfig.model_fields:
        return
    import difflib  # only on a bad key: not paid by the finetune DAG's parse

    close = difflib.get_close_matches(key, list(TrainConfig.model_fields), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else f"; known keys: {', '.join(TrainConfig.model_fields)}"
    raise ConfigError(f"{where}: {key!r} is not a training config key{hint}")


def load_config(
    path: str | None = None,
    overrides: Sequence[str] | Mapping[str, Any] = (),
    defaults: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """The validated config from defaults, a YAML file (local or `s3://`) and overrides."""
    values: dict[str, Any] = {}
    for key, value in (defaults or {}).items():
        _check_key(key, "setting train_defaults")
        values[key] = value
    source = "defaults"
    if path:
        from llmops import storage

        try:
            loaded = yaml.safe_load(storage.read_text(path)) or {}
        except FileNotFoundError:
            raise ConfigError(f"training config {path} does not exist: give an existing YAML file to --config") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"training config {path} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"training config {path} must be a YAML mapping of keys to values, got {type(loaded).__name__}")
        for key in loaded:
            _check_key(str(key), f"training config {path}")
        values.update(loaded)
        source = path
    extra = parse_overrides(overrides) if not isinstance(overrides, Mapping) else dict(overrides)
    values.update(extra)
    try:
        return TrainConfig(**values)
    except ValidationError as exc:

        def fix(field: str) -> str:
            key = field.split(".")[0]
            return f"; fix it in {'--set' if key in extra else source} or with --set {key}=..."

        raise config_error("training config", exc, hint=fix) from None


def param_spec(key: str, defaults: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """JSON-schema bits of one config key for an Airflow `Param`: default (the deployment's
    `train_defaults` win over the built-in one), type, bounds and description; cheap, no I/O."""
    import annotated_types as at

    field = describe(TrainConfig).model_fields[key]
    default = (defaults or {}).get(key, field.get_default(call_default_factory=True))
    spec: dict[str, Any] = {"default": default, "description": " ".join((field.description or "").split())}
    annotation = field.annotation
    if annotation is int:
        spec["type"] = "integer"
    elif annotation is float:
        spec["type"] = "number"
    elif annotation is bool:
        spec["type"] = "boolean"
    elif key == "target_modules":
        spec.update(type="array", items={"type": "string"}, minItems=1)
    else:
        spec["type"] = "string"
    for meta in field.metadata:
        if isinstance(meta, at.Ge):
            spec["minimum"] = meta.ge
        elif isinstance(meta, at.Gt):
            # Both keys: the form shows the bound, the schema excludes it.
            spec["minimum"] = spec["exclusiveMinimum"] = meta.gt
        elif isinstance(meta, at.Le):
            spec["maximum"] = meta.le
        elif isinstance(meta, at.Lt):
            spec["maximum"] = spec["exclusiveMaximum"] = meta.lt
    return spec
