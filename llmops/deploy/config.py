"""The deployment config: how a registered model version is served by vLLM on Kubernetes.

A config file (YAML) holds only what differs from the defaults in `k8s_templates/vllm/values.yaml`
(the one place defaults live); `load_config` merges the two and validates the result here. A few
cluster-wide values default to the settings (`namespace`, GPU tolerations, the model cache PVC, secret
names) when the config leaves them empty, so one config works across clusters.

Every field has a docstring; `llmops render --explain` prints them as a Markdown table. Errors name the
field, the bad value and the fix.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.exceptions import ConfigError
from llmops.settings import QUANTITY, Settings
from llmops.validation import config_error

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DNS1123_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
VLLM_LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)
"""The `--max-lora-rank` values vLLM accepts (`vllm.config.lora.MaxLoRARanks`)."""
NAME_MAX = 45
"""Longest deployment name: `<name>-canary-predictor` (KServe's Service) must stay a 63-character label."""
VALUES_FILE = "vllm/values.yaml"


def _dns_label(value: str | None, max_len: int = 63) -> str | None:
    if value is None:
        return value
    if len(value) > max_len or not DNS1123_LABEL.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 label: use lower-case letters, digits and '-', "
            f"starting and ending with a letter or digit, at most {max_len} characters"
        )
    return value


def _dns_subdomain(value: str | None) -> str | None:
    if value is None:
        return value
    if len(value) > 253 or not DNS1123_SUBDOMAIN.match(value):
        raise ValueError(
            f"{value!r} is not a DNS-1123 name: use lower-case letters, digits, '-' and '.', at most 253 characters"
        )
    return value


def _quantity(value: str | None) -> str | None:
    if value is not None and not QUANTITY.match(value):
        raise ValueError(f"{value!r} is not a Kubernetes quantity such as '4', '500m', '16Gi'")
    return value


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_assignment=True, use_attribute_docstrings=True)


class SourceConfig(_Section):
    """Where the serving pod finds the weights (base model and adapter, or the merged model)."""

    kind: Literal["pvc", "s3"]
    """`pvc`: the weights are on a PersistentVolumeClaim (the model cache) mounted read-only at
    `mount_path`; `s3`: init containers copy them from `s3://` into an in-pod volume before vLLM starts.
    A base model given as a hub id (`org/name`) is downloaded by vLLM itself in both cases."""

    claim_name: str | None
    """`pvc`: the PVC holding the model cache. Default: the `model_cache_pvc` setting."""

    mount_path: str
    """Where the model volume is mounted in the serving pod."""

    mirrors: str | None
    """`pvc`: the local folder or `s3://` prefix whose content the PVC holds, so `<mirrors>/a/b` is served
    from `<mount_path>/a/b`. Paths already under `mount_path` are used as they are. Default: the
    `data_root` setting (the training pods' model cache layout)."""

    credentials_secret: str | None
    """`s3`: Secret with `AWS_ACCESS_KEY_ID` and `AWS_SECRET_ACCESS_KEY` keys, read by `secretKeyRef`.
    Default: the `s3_credentials_secret` setting; none means the pod's own identity (IRSA, workload identity)."""

    endpoint_url: str | None
    """`s3`: custom S3 endpoint (MinIO). Default: the `s3_endpoint_url` setting."""

    region: str | None
    """`s3`: AWS region of the bucket, passed as `AWS_DEFAULT_REGION` (none: the SDK default)."""

    copy_image: str
    """`s3`: image of the init containers that copy the weights (runs `aws s3 cp --recursive`)."""

    volume_size: str
    """`s3`: size limit of the in-pod volume (`emptyDir`) the weights are copied into."""

    _claim = field_validator("claim_name", "credentials_secret")(classmethod(lambda cls, v: _dns_subdomain(v)))
    _size = field_validator("volume_size")(classmethod(lambda cls, v: _quantity(v)))

    @field_validator("mount_path")
    @classmethod
    def _absolute(cls, value: str) -> str:
        if not value.startswith("/") or value == "/":
            raise ValueError(f"{value!r} must be an absolute path below / (e.g. /models)")
        return value.rstrip("/")


class ProbesConfig(_Section):
    """Health checks on vLLM's `/health` endpoint."""

    startup_budget_s: int = Field(ge=30, le=14400)
    """How long vLLM may take to start (download, load and compile a large model) before the pod is
    restarted: the startup probe allows `startup_budget_s / period_s` failures."""

    period_s: int = Field(ge=1, le=300)
    """Seconds between two startup and readiness checks."""

    liveness_period_s: int = Field(ge=1, le=300)
    """Seconds between two liveness checks once started."""

    failure_threshold: int = Field(ge=1, le=30)
    """Consecutive failed readiness/liveness checks before the pod is marked unready/restarted."""

    timeout_s: int = Field(ge=1, le=60)
    """Timeout of one health request."""


class AutoscalingConfig(_Section):
    """Horizontal scaling of the stable deployment on vLLM's queue length."""

    engine: Literal["keda", "hpa", "none"]
    """`keda`: a KEDA ScaledObject with a Prometheus trigger on `vllm:num_requests_waiting`; `hpa`: an
    autoscaling/v2 HorizontalPodAutoscaler on the per-pod metric `hpa_metric` (served by
    prometheus-adapter); `none`: a fixed `replicas` count."""

    min_replicas: int = Field(ge=1, le=1000)
    """Fewest replicas. At least 1: the queue metric comes from running vLLM pods, so with none there
    would be nothing to scale up from."""

    max_replicas: int = Field(ge=1, le=1000)
    """Most replicas."""

    waiting_requests_target: float = Field(gt=0)
    """Target number of requests waiting in vLLM's queue per replica; above it, scale out."""

    prometheus_url: str
    """`keda`: Prometheus server queried by the trigger."""

    polling_interval_s: int = Field(ge=1, le=3600)
    """`keda`: seconds between two metric queries."""

    cooldown_s: int = Field(ge=0, le=86400)
    """`keda`: seconds after the last active trigger before scaling to `min_replicas`."""

    hpa_metric: str
    """`hpa`: the Pods metric name prometheus-adapter exposes for `vllm:num_requests_waiting`."""

    @model_validator(mode="after")
    def _bounds(self) -> AutoscalingConfig:
        if self.engine != "none" and self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.min_replicas ({self.min_replicas}) is larger than autoscaling.max_replicas "
                f"({self.max_replicas}): lower min_replicas or raise max_replicas"
            )
        return self


class RolloutConfig(_Section):
    """How a new version replaces the running one."""

    max_surge: int | str
    """Extra pods during a rolling update (a count or a percentage). A surge pod needs free GPUs."""

    max_unavailable: int | str
    """Pods that may be down during a rolling update (a count or a percentage)."""

    timeout_s: int = Field(ge=60, le=86400)
    """Rollout budget on top of `probes.startup_budget_s`: their sum is the Deployment's
    `progressDeadlineSeconds`, after which the rollout counts as failed and the deploy step rolls back."""


class MonitoringConfig(_Section):
    """Prometheus scraping of vLLM's `/metrics`."""

    enabled: bool
    """Render a ServiceMonitor (a PodMonitor with KServe) for the Prometheus operator."""

    interval: str
    """Scrape interval (Prometheus duration)."""

    labels: dict[str, str]
    """Extra labels on the ServiceMonitor, e.g. the `release` label your Prometheus selects on."""

    @field_validator("interval")
    @classmethod
    def _duration(cls, value: str) -> str:
        if not re.fullmatch(r"[0-9]+(ms|s|m|h)", value):
            raise ValueError(f"{value!r} is not a Prometheus duration such as '15s' or '1m'")
        return value


class NetworkPolicyConfig(_Section):
    """Who may reach the vLLM port."""

    enabled: bool
    """Render a NetworkPolicy that admits traffic to the vLLM port only from the listed namespaces
    (and from pods of the deployment's own namespace)."""

    allow_namespaces: list[str]
    """Namespaces allowed in: the gateway's and Prometheus', typically."""

    _ns = field_validator("allow_namespaces")(classmethod(lambda cls, v: [_dns_label(n) for n in v]))


class RouteConfig(_Section):
    """A Gateway API HTTPRoute in front of the Service(s)."""

    gateway: str | None
    """Name of the Gateway the HTTPRoute attaches to; none renders no HTTPRoute (a canary needs one)."""

    gateway_namespace: str | None
    """Namespace of the Gateway (none: the deployment's namespace)."""

    hostnames: list[str]
    """Hostnames the route answers for (empty: all of the Gateway's)."""

    path_prefix: str
    """Path prefix routed to vLLM."""

    _gw = field_validator("gateway")(classmethod(lambda cls, v: _dns_subdomain(v)))
    _gwns = field_validator("gateway_namespace")(classmethod(lambda cls, v: _dns_label(v)))

    @field_validator("path_prefix")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"{value!r} must start with '/'")
        return value


class CanaryConfig(_Section):
    """A challenger served beside the stable champion, with a weighted traffic split."""

    enabled: bool
    """Serve the rendered version as a canary beside the stable version, traffic split by weight."""

    weight: int = Field(ge=0, le=100)
    """Percent of requests routed to the canary."""

    replicas: int = Field(ge=1, le=100)
    """Fixed replica count of the canary (only the stable deployment autoscales)."""

    stable_model_uri: str | None
    """The stable version: a `models:/` URI or a model folder. Default: `models:/<name>@champion` for a
    registered model; required for a folder."""


class KServeConfig(_Section):
    """A KServe InferenceService with a vLLM ServingRuntime instead of the plain Deployment."""

    enabled: bool
    """Render a ServingRuntime + InferenceService (KServe creates the Deployment, Service and autoscaler)."""

    deployment_mode: Literal["RawDeployment", "Standard", "Serverless"]
    """KServe deployment mode annotation (`RawDeployment` is called `Standard` from KServe 0.15)."""


class DeployConfig(_Section):
    """Everything that decides the rendered manifests besides the model version itself."""

    name: str | None
    """Name of the Deployment, Service and friends (DNS-1123 label, at most 45 characters). Default:
    the registered model name, lower-cased with invalid characters replaced by '-'."""

    namespace: str | None
    """Namespace to deploy into. Default: the `namespace` setting."""

    served_model_name: str | None
    """Model name clients send in OpenAI requests (`model`). Default: `name` when set, else the registered
    model name. With an adapter this is the LoRA module name; the bare base model is served as
    `<served_model_name>-base`."""

    image: str
    """vLLM OpenAI-compatible server image. Default (null): the pinned vLLM release
    (`llmops/deploy/vllm_pin.py`), `vllm/vllm-openai:v<VLLM_VERSION>`, or vLLM's CPU image of the same
    release when `gpus` is 0."""

    image_pull_policy: Literal["Always", "IfNotPresent", "Never"]
    """Pull policy of the vLLM container."""

    service_account: str | None
    """Service account of the serving pods (none: the namespace's default)."""

    replicas: int = Field(ge=0, le=1000)
    """Replicas when `autoscaling.engine` is `none` (else the autoscaler decides, from `min_replicas`)."""

    gpus: int = Field(ge=0, le=64)
    """GPUs per replica (0: CPU serving with vLLM's CPU image)."""

    tensor_parallel_size: int | None = Field(ge=1, le=64)
    """`--tensor-parallel-size`: GPUs one model is sharded across; must equal `gpus` (default: `gpus`, or
    1 on CPU)."""

    max_model_len: int = Field(ge=16, le=10_000_000)
    """`--max-model-len`: longest prompt + completion in tokens."""

    gpu_memory_utilization: float = Field(gt=0, le=1)
    """`--gpu-memory-utilization`: fraction of each GPU's memory vLLM may take (weights + KV cache)."""

    dtype: Literal["auto", "half", "float16", "bfloat16", "float", "float32"]
    """`--dtype` of weights and activations."""

    enable_prefix_caching: bool
    """`--enable-prefix-caching` (or `--no-enable-prefix-caching`): reuse the KV cache of shared prompt prefixes."""

    max_lora_rank: int
    """`--max-lora-rank`: largest adapter rank vLLM reserves memory for; one of 1, 8, 16, 32, 64, 128, 256,
    320, 512, and at least the adapter's rank `r`."""

    max_loras: int = Field(ge=1, le=256)
    """`--max-loras`: adapters in one batch."""

    extra_args: list[str]
    """More `vllm serve` flags, appended as given (e.g. `["--max-num-seqs", "128"]`)."""

    port: int = Field(ge=1024, le=65535)
    """Port vLLM listens on (and the Service's target port)."""

    cpu: str
    """CPU request of the vLLM container."""

    memory: str
    """Memory request and limit of the vLLM container."""

    shm_size: str
    """Size of the in-memory `/dev/shm` (NCCL and tensor-parallel workers need it)."""

    cache_size: str
    """Size limit of the scratch volume at `/cache` (HOME, compile caches, hub downloads without a PVC)."""

    gpu_resource_name: str | None
    """Extended resource name of GPUs. Default: the `gpu_resource_name` setting."""

    tolerations: list[dict[str, Any]] | None
    """Tolerations of GPU pods (Kubernetes JSON). Default: the `tolerations` setting."""

    node_selector: dict[str, str] | None
    """Node selector of GPU pods. Default: the `node_selector` setting."""

    priority_class: str | None
    """PriorityClass of the serving pods. Default: the `priority_class` setting."""

    hf_token_secret: str | None
    """Secret with an `HF_TOKEN` key, for a gated hub base model. Default: the `hf_token_secret` setting."""

    termination_grace_s: int = Field(ge=0, le=3600)
    """Seconds vLLM gets to finish in-flight requests after SIGTERM."""

    run_as_user: int = Field(ge=1)
    """Non-root user id of the serving pods (also their group and fsGroup)."""

    labels: dict[str, str]
    """Extra labels on every object."""

    max_unavailable: int | str
    """PodDisruptionBudget: pods a voluntary disruption (node drain) may take down at once."""

    source: SourceConfig
    probes: ProbesConfig
    autoscaling: AutoscalingConfig
    rollout: RolloutConfig
    monitoring: MonitoringConfig
    network_policy: NetworkPolicyConfig
    route: RouteConfig
    canary: CanaryConfig
    kserve: KServeConfig

    _name = field_validator("name")(classmethod(lambda cls, v: _dns_label(v, NAME_MAX)))
    _ns = field_validator("namespace")(classmethod(lambda cls, v: _dns_label(v)))
    _sa = field_validator("service_account", "priority_class", "hf_token_secret")(
        classmethod(lambda cls, v: _dns_subdomain(v))
    )
    _qty = field_validator("cpu", "memory", "shm_size", "cache_size")(classmethod(lambda cls, v: _quantity(v)))

    @field_validator("max_lora_rank")
    @classmethod
    def _rank(cls, value: int) -> int:
        if value not in VLLM_LORA_RANKS:
            raise ValueError(f"{value} is not a rank vLLM accepts: use one of {', '.join(map(str, VLLM_LORA_RANKS))}")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> DeployConfig:
        tp = self.tensor_parallel_size
        if self.gpus == 0:
            if tp not in (None, 1):
                raise ValueError(
                    f"tensor_parallel_size ({tp}) is larger than the GPUs asked for (gpus: 0): "
                    "set gpus to the tensor parallel size, or tensor_parallel_size to 1 for CPU serving"
                )
        elif tp is not None and tp > self.gpus:
            raise ValueError(
                f"tensor_parallel_size ({tp}) is larger than the GPUs asked for (gpus: {self.gpus}): "
                f"set gpus: {tp}, or tensor_parallel_size: {self.gpus} or less"
            )
        elif tp is not None and tp < self.gpus:
            raise ValueError(
                f"tensor_parallel_size ({tp}) is smaller than gpus ({self.gpus}): the other GPUs would sit "
                f"idle; set gpus: {tp} or tensor_parallel_size: {self.gpus}"
            )
        if self.canary.enabled and not self.route.gateway:
            raise ValueError(
                "canary.enabled needs route.gateway: the traffic split is an HTTPRoute attached to a Gateway"
            )
        if self.kserve.enabled and self.autoscaling.engine == "hpa":
            raise ValueError(
                "autoscaling.engine 'hpa' does not work with kserve.enabled (KServe's HPA scales on CPU or "
                "memory only): use 'keda' or 'none'"
            )
        return self

    @property
    def tp_size(self) -> int:
        return self.tensor_parallel_size or max(self.gpus, 1)


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """`override` onto `base`, recursively for mappings; lists and scalars are replaced."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def default_values() -> dict[str, Any]:
    from llmops.k8s.templates import load_values

    return load_values(VALUES_FILE)


def _from_settings(values: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Fill the cluster-wide fields a config leaves empty from the settings."""
    out = copy.deepcopy(values)
    top = {
        "namespace": settings.kubernetes.namespace,
        "gpu_resource_name": settings.kubernetes.gpu_resource_name,
        "tolerations": settings.kubernetes.tolerations,
        "node_selector": settings.kubernetes.node_selector,
        "priority_class": settings.kubernetes.priority_class,
        "hf_token_secret": settings.kubernetes.hf_token_secret,
    }
    for key, value in top.items():
        if out.get(key) is None:
            out[key] = copy.deepcopy(value)
    source = out.setdefault("source", {})
    if isinstance(source, dict):
        for key, value in {
            "claim_name": settings.kubernetes.model_cache_pvc,
            "credentials_secret": settings.kubernetes.s3_credentials_secret,
            "endpoint_url": settings.storage.s3_endpoint_url,
            "mirrors": settings.storage.data_root,
        }.items():
            if source.get(key) is None:
                source[key] = value
    return out


def build_config(
    user: dict[str, Any] | None = None,
    settings: Settings | None = None,
    source: str = "deploy config",
) -> DeployConfig:
    """Defaults from the values file, then `user`, then settings for what is still empty; validated."""
    from llmops.settings import load_settings

    settings = settings or load_settings()
    user = user or {}
    if not isinstance(user, dict):
        raise ConfigError(f"{source}: must be a YAML mapping of fields (see `llmops render --explain`)")
    values = _from_settings(deep_merge(default_values(), user), settings)
    if values.get("image") is None:
        from llmops.deploy.vllm_pin import pinned_image

        values["image"] = pinned_image(cpu=values.get("gpus") == 0)
    try:
        return DeployConfig(**values)
    except ValidationError as exc:
        raise config_error(
            source,
            exc,
            unknown="is not a known field (see `llmops render --explain`)",
            missing=f"a value is required (add it to the config, or to {VALUES_FILE} for a default)",
        ) from None


def load_config(uri: str | None, settings: Settings | None = None, **overrides: Any) -> DeployConfig:
    """Load a config file (local path or `s3://`), merged onto the defaults; `overrides` use dotted keys
    (`{"canary.weight": 20}`)."""
    import yaml

    from llmops import storage
    from llmops.resources import resolve

    user: dict[str, Any] = {}
    label = "deploy config"
    if uri:
        storage.check_uri(uri, "--config")
        # A relative `examples/...` path that does not exist from here is the packaged example.
        uri = resolve(uri)
        label = f"deploy config {uri}"
        try:
            text = storage.read_text(uri)
        except FileNotFoundError:
            raise ConfigError(f"{label}: file not found; give the path of a YAML deploy config") from None
        try:
            user = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"{label}: not valid YAML: {exc}") from None
    for dotted, value in overrides.items():
        node = user
        *parents, leaf = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return build_config(user, settings, label)


def explain_markdown() -> str:
    """A Markdown table of every config field with its default and description (README material)."""
    defaults = default_values()
    rows = ["| field | default | what it is |", "|---|---|---|"]

    def walk(model: type[BaseModel], prefix: str, values: dict[str, Any]) -> None:
        for name, field in model.model_fields.items():
            annotation = field.annotation
            if isinstance(annotation, type) and issubclass(annotation, BaseModel):
                walk(annotation, f"{prefix}{name}.", values.get(name) or {})
                continue
            default = values.get(name)
            desc = " ".join((field.description or "").split()).replace("|", "\\|")
            if default is not None:
                shown = f"`{default}`"
            else:
                shown = "(settings)" if "Default: the `" in desc else ""
            rows.append(f"| `{prefix}{name}` | {shown} | {desc} |")

    walk(DeployConfig, "", defaults)
    return "\n".join(rows)
