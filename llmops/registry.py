"""The model registry: register fine-tuned adapters in MLflow, move aliases, and resolve model URIs.

Stable API (used by evaluation and deployment; keep these signatures):

    resolve(uri, *, settings=None, download=True, cache_dir=None) -> ResolvedModel
    current_champion(name=None, *, settings=None, download=True) -> ResolvedModel | None
    local_model_path(uri, *, cache_dir=None) -> str

`uri` is one of

- `models:/NAME@ALIAS` or `models:/NAME/VERSION` (`models:/NAME/latest`: the highest version);
- a local folder (or `file://`) holding a full model (`config.json`): base or merged model;
- a local adapter folder (`adapter_config.json`; its base is the config's `base_model_name_or_path`),
  or a training output folder with an `adapter/` subfolder;
- an `s3://` folder of either kind (downloaded into a local cache);
- a hub id (`org/model`), passed through for transformers to load.

A registered version is an `mlflow.pyfunc` model (models-from-code, `llmops/pyfunc_model.py`) holding
the adapter as an artifact and the base model URI in its model config: base weights are never copied.
`mlflow.pyfunc.load_model("models:/NAME@champion").predict(["Question: ...\\nAnswer:"])` generates text.

Registration is idempotent per training run: a version is looked up by its `llmops.training_run_id`
tag before one is created, so a retried task never registers a second version. New versions get the
alias `challenger`; `promote` moves `champion` to a version whose gate report passed and tags the
previous champion `llmops.previous_champion=true`.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import re
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmops import storage
from llmops.contracts import PromoteSummary, RegisterSummary
from llmops.exceptions import ModelLoadError, ModelNotFound, RegistryError
from llmops.hub import is_hub_id
from llmops.settings import Settings, load_settings

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion

log = logging.getLogger(__name__)

CHAMPION = "champion"
CHALLENGER = "challenger"
MODEL_ARTIFACT_NAME = "llmops-adapter"
"""Name of the logged (pyfunc) model inside the training run."""

TAG_TRAINING_RUN = "llmops.training_run_id"
TAG_BASE_MODEL = "llmops.base_model"
TAG_ADAPTER_URI = "llmops.adapter_uri"
TAG_ADAPTER_SOURCE = "llmops.adapter_source"
TAG_PREVIOUS_CHAMPION = "llmops.previous_champion"
TAG_SUPERSEDED_BY = "llmops.superseded_by"
TAG_PROMOTED_FROM = "llmops.promoted_from"
TAG_GATE_DECISION = "llmops.gate.decision"
TAG_GATE_REPORT = "llmops.gate.report_uri"

MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[\w-]+)|/(?P<version>\d+|latest))/?$")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
"""An adapter folder holding one of these carries its own tokenizer (else the base's is used)."""
PIP_REQUIREMENTS = ["airflow-llmops[train]", "mlflow", "torch", "transformers", "peft"]
"""Declared, not inferred: inference would load the model in a subprocess at registration time."""


# --- resolving ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's pieces are, whatever URI named it."""

    uri: str
    """The URI as given."""
    kind: Literal["registry", "adapter", "model", "hub"]
    """`registry`: a registered version; `adapter`: a PEFT adapter folder; `model`: a full model folder;
    `hub`: a hub id."""
    base_model: str
    """URI or path of the base model (for a full model: the model itself)."""
    adapter_path: str | None
    """Local folder of the adapter; None for a full model (or, with `download=False`, a remote adapter)."""
    model_path: str | None
    """Local folder (or hub id) of a full model; None for an adapter."""
    name: str | None = None
    """Registered model name (registry only)."""
    version: str | None = None
    """Registered model version (registry only)."""
    alias: str | None = None
    """The alias the URI used (`champion` in `models:/NAME@champion`)."""
    aliases: tuple[str, ...] = ()
    """Every alias currently on the version."""
    run_id: str | None = None
    """MLflow run that produced the model (the training run)."""
    tags: dict[str, str] = field(default_factory=dict)
    """Model version tags (registry), including the lineage tags `llmops.*`."""
    adapter_uri: str | None = None
    """Where the adapter lives (artifact store URI or the folder given), also without a download."""
    model_uri: str | None = None
    """Canonical `models:/NAME/VERSION` of a registered version."""

    @property
    def label(self) -> str:
        """Short human label: `llmops-assistant v3 (champion)`, or the folder."""
        if self.kind == "registry":
            extra = f" ({', '.join(self.aliases)})" if self.aliases else ""
            return f"{self.name} v{self.version}{extra}"
        return self.adapter_path or self.model_path or self.uri

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "kind": self.kind,
            "label": self.label,
            "base_model": self.base_model,
            "adapter_path": self.adapter_path,
            "adapter_uri": self.adapter_uri,
            "model_path": self.model_path,
            "name": self.name,
            "version": self.version,
            "alias": self.alias,
            "aliases": list(self.aliases),
            "run_id": self.run_id,
            "model_uri": self.model_uri,
        }


def mlflow_client(settings: Settings | None = None) -> MlflowClient:
    """An MLflow client on `settings.mlflow_tracking` (tracking and registry on the same server)."""
    from mlflow import MlflowClient

    s = settings or load_settings()
    return MlflowClient(tracking_uri=s.mlflow_tracking, registry_uri=s.mlflow_tracking)


@contextlib.contextmanager
def tracking(settings: Settings):
    """Point MLflow's fluent API (`mlflow.start_run`, `log_model`) at `settings.mlflow_tracking` for a block,
    then restore the previous URI: library callers keep their own MLflow configuration."""
    import mlflow

    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(settings.mlflow_tracking)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(previous)


def ensure_experiment(settings: Settings | None = None) -> str:
    """The id of `settings.mlflow_experiment` on the configured tracking server (see `experiment_id`)."""
    s = settings or load_settings()
    return experiment_id(mlflow_client(s), s)


def experiment_id(client: Any, settings: Settings) -> str:
    """The id of `settings.mlflow_experiment` on `client`, created when missing with `mlflow_artifacts` as
    its artifact root (a local folder is created and given as a `file://` URI); a concurrent creation is
    tolerated. Every step (train, register, drift) gets its experiment here, so the artifacts land in the
    same place whichever step creates the experiment first."""
    from mlflow.exceptions import MlflowException

    name = settings.mlflow.mlflow_experiment
    exp = client.get_experiment_by_name(name)
    if exp is not None:
        return exp.experiment_id
    location = settings.mlflow_artifacts
    if not storage.scheme(location):
        Path(location).mkdir(parents=True, exist_ok=True)
        location = Path(location).resolve().as_uri()
    try:
        return client.create_experiment(name, artifact_location=location)
    except MlflowException:
        exp = client.get_experiment_by_name(name)  # another step created it in the meantime
        if exp is None:
            raise
        return exp.experiment_id


COMPLETE_MARKER = ".llmops-complete"
"""Written last into a downloaded model folder (same marker and layout as `llmops train`'s downloads, so a
base model fetched by training is reused by evaluation on the same cache volume)."""


def _cache_root(cache_dir: str | Path | None) -> Path:
    """`cache_dir`, else the `model_cache` setting (the model cache PVC `/models` in pods when set)."""
    return Path(cache_dir) if cache_dir else Path(load_settings().model_cache)


def _download_once(uri: str, dest: Path, fetch) -> Path:
    """Download into `dest` unless a previous complete download is there (marked by `COMPLETE_MARKER`);
    a download in progress goes to a sibling folder first, so a killed task never leaves half a model."""
    if (dest / COMPLETE_MARKER).exists():
        return dest
    partial = dest.with_name(dest.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    fetch(partial)
    (partial / COMPLETE_MARKER).write_text(uri + "\n")
    shutil.rmtree(dest, ignore_errors=True)
    partial.rename(dest)
    return dest


def local_model_path(uri: str, *, cache_dir: str | Path | None = None) -> str:
    """A path transformers can load: local folders as they are, `s3://` folders downloaded into the
    model cache (once, `<model_cache>/<sha256(uri)[:16]>`), hub ids passed through."""
    if storage.is_s3(uri):
        dest = _cache_root(cache_dir) / hashlib.sha256(uri.encode()).hexdigest()[:16]
        return str(_download_once(uri, dest, lambda d: storage.download_dir(uri, d)))
    if storage.scheme(uri) == "file":
        return str(storage.local_path(uri))
    return uri


def _adapter_base(adapter_dir: Path) -> str:
    try:
        cfg = json.loads((adapter_dir / "adapter_config.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"cannot read {adapter_dir / 'adapter_config.json'}: {exc}") from None
    base = cfg.get("base_model_name_or_path")
    if not base:
        raise ModelLoadError(
            f"{adapter_dir / 'adapter_config.json'} has no base_model_name_or_path: "
            "save the adapter with PeftModel.save_pretrained from a model loaded from its base"
        )
    if not storage.scheme(base) and not Path(base).is_absolute() and (adapter_dir / base).exists():
        base = str((adapter_dir / base).resolve())
    return base


def _resolve_folder(uri: str, local: Path, source_uri: str | None = None) -> ResolvedModel:
    for candidate in (local, local / "adapter"):
        if (candidate / "adapter_config.json").is_file():
            adapter = str(candidate.resolve())
            return ResolvedModel(
                uri=uri,
                kind="adapter",
                base_model=_adapter_base(candidate),
                adapter_path=adapter,
                model_path=None,
                adapter_uri=source_uri or adapter,
            )
    if (local / "config.json").is_file():
        path = str(local.resolve())
        return ResolvedModel(uri=uri, kind="model", base_model=source_uri or path, adapter_path=None, model_path=path)
    raise ModelLoadError(
        f"{uri} is neither a model folder (config.json) nor an adapter folder (adapter_config.json, "
        "or adapter/adapter_config.json): give a base model, an adapter or a models:/NAME@alias URI"
    )


def _version_for(client: MlflowClient, name: str, alias: str | None, version: str | None) -> ModelVersion:
    from mlflow.exceptions import MlflowException

    try:
        if alias:
            return client.get_model_version_by_alias(name, alias)
        if version == "latest":
            versions = client.search_model_versions(f"name = '{name}'", max_results=1000)
            if not versions:
                raise ModelNotFound(f"registered model {name!r} has no versions")
            return max(versions, key=lambda v: int(v.version))
        return client.get_model_version(name, str(version))
    except MlflowException as exc:
        code = getattr(exc, "error_code", "")
        what = f"models:/{name}@{alias}" if alias else f"models:/{name}/{version}"
        if code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            raise ModelNotFound(f"{what} does not exist in the MLflow registry: {exc.message}") from None
        raise RegistryError(f"cannot look up {what}: {exc.message}") from None


def _adapter_artifact_uri(client: MlflowClient, mv: ModelVersion) -> str:
    if mv.tags.get(TAG_ADAPTER_URI):
        return mv.tags[TAG_ADAPTER_URI]
    raise ModelLoadError(
        f"models:/{mv.name}/{mv.version} was not registered by llmops (no {TAG_ADAPTER_URI} tag): "
        "register adapters with `llmops register`"
    )


def _download_artifact(artifact_uri: str, dest: Path) -> Path:
    import mlflow

    def fetch(partial: Path) -> None:
        mlflow.artifacts.download_artifacts(artifact_uri=artifact_uri, dst_path=str(partial))

    dest = _download_once(artifact_uri, dest, fetch)
    # download_artifacts keeps the last path component: <dest>/adapter/...
    inner = [p for p in dest.iterdir() if p.is_dir()]
    return inner[0] if len(inner) == 1 and not (dest / "adapter_config.json").exists() else dest


def _resolve_registry(
    uri: str, name: str, alias: str | None, version: str | None, settings: Settings, download: bool, cache_dir
) -> ResolvedModel:
    client = mlflow_client(settings)
    mv = _version_for(client, name, alias, version)
    adapter_uri = _adapter_artifact_uri(client, mv)
    adapter_path: str | None = None
    if storage.scheme(adapter_uri) in ("", "file"):
        adapter_path = str(storage.local_path(adapter_uri))
    elif download:
        dest = _cache_root(cache_dir) / "registry" / name / str(mv.version)
        with tracking(settings):  # for mlflow-artifacts:/ URIs (a tracking server that proxies artifacts)
            adapter_path = str(_download_artifact(adapter_uri, dest))
    base = mv.tags.get(TAG_BASE_MODEL)
    if not base and adapter_path:
        base = _adapter_base(Path(adapter_path))
    if not base:
        raise ModelLoadError(f"models:/{name}/{mv.version} names no base model (tag {TAG_BASE_MODEL})")
    return ResolvedModel(
        uri=uri,
        kind="registry",
        base_model=base,
        adapter_path=adapter_path,
        model_path=None,
        name=name,
        version=str(mv.version),
        alias=alias,
        aliases=tuple(sorted(mv.aliases or ())),
        run_id=mv.run_id,
        tags=dict(mv.tags or {}),
        adapter_uri=adapter_uri,
        model_uri=f"models:/{name}/{mv.version}",
    )


def resolve(
    uri: str,
    *,
    settings: Settings | None = None,
    download: bool = True,
    cache_dir: str | Path | None = None,
) -> ResolvedModel:
    """Find the base model, adapter and registry facts of any model URI (see the module docstring).

    Remote adapters (registry artifacts on S3, `s3://` folders) are downloaded into `cache_dir`
    (default: the `model_cache` setting) unless `download=False`, which only fills `adapter_uri`.
    Raises `ModelNotFound` for a registry URI that names nothing, `ModelLoadError` for a folder that
    holds neither a model nor an adapter.
    """
    uri = str(uri).strip()
    if not uri:
        raise ModelLoadError("model URI is empty: give a folder, an s3:// URI or models:/NAME@alias")
    if cache_dir is None and settings is not None:
        cache_dir = settings.model_cache
    if uri.startswith("models:/"):
        m = MODELS_URI.match(uri)
        if not m:
            raise ModelLoadError(f"{uri!r} is not a registry URI: use models:/NAME@ALIAS or models:/NAME/VERSION")
        return _resolve_registry(
            uri, m["name"], m["alias"], m["version"], settings or load_settings(), download, cache_dir
        )
    if storage.is_s3(uri):
        if not storage.exists(uri):
            raise ModelNotFound(f"{uri} does not exist")
        uri_in = uri
        uri = s3_adapter_root(uri)
        if not download:
            files = {f.uri.rsplit("/", 1)[-1] for f in storage.list_files(uri, recursive=False)}
            if "adapter_config.json" in files:
                base = json.loads(storage.read_text(storage.join(uri, "adapter_config.json")))
                return ResolvedModel(uri=uri_in, kind="adapter", base_model=base.get("base_model_name_or_path", ""),
                                     adapter_path=None, model_path=None, adapter_uri=uri)
            return ResolvedModel(uri=uri_in, kind="model", base_model=uri, adapter_path=None, model_path=None)
        local = Path(local_model_path(uri, cache_dir=cache_dir))
        return _resolve_folder(uri_in, local, source_uri=uri)
    storage.check_uri(uri, "model")
    local = storage.local_path(uri)
    if local.is_dir():
        return _resolve_folder(uri, local)
    if local.exists():
        raise ModelLoadError(f"{uri} is a file: give the model or adapter folder")
    if is_hub_id(uri):
        return ResolvedModel(uri=uri, kind="hub", base_model=uri, adapter_path=None, model_path=uri)
    raise ModelNotFound(f"{uri} does not exist: give a model folder, an adapter folder, s3:// or models:/ URI")


def current_champion(
    name: str | None = None, *, settings: Settings | None = None, download: bool = True
) -> ResolvedModel | None:
    """The version under the `champion` alias, or None when no version holds it yet."""
    s = settings or load_settings()
    name = name or s.mlflow.registered_model_name
    try:
        return resolve(f"models:/{name}@{CHAMPION}", settings=s, download=download)
    except ModelNotFound:
        return None


# --- registering -------------------------------------------------------------------------------------


@dataclass
class Lineage:
    """Where a fine-tuned model comes from; set as `llmops.*` tags on the training run and the version."""

    corpus_snapshot_id: str | None = None
    embedding_model: str | None = None
    chunking: dict[str, Any] | None = None
    dataset: str | None = None
    dataset_hash: str | None = None
    """The dataset version's hash (`llmops dataset build`), else the sha256 of the training files."""
    dataset_version: dict[str, Any] | None = None
    """The dataset version's manifest (`<dataset>/dataset.json`): snapshot id, generator, its version and
    config, parent hash, steered_by."""
    training_data_sha256: str | None = None
    """sha256 of the training files as read by `llmops train`."""
    training_params_sha256: str | None = None
    """Hash of the fine-tune DAG's training parameters (base model and hyperparameters)."""
    base_model: str | None = None
    training_config: str | None = None
    training_config_sha256: str | None = None
    dag_id: str | None = None
    airflow_run_id: str | None = None
    trigger: str | None = None
    """What started the pipeline run: corpus, drift, schedule or manual."""

    def tags(self) -> dict[str, str]:
        values = {
            "llmops.corpus_snapshot_id": self.corpus_snapshot_id,
            "llmops.embedding_model": self.embedding_model,
            "llmops.chunking": json.dumps(self.chunking, sort_keys=True) if self.chunking else None,
            "llmops.dataset": self.dataset,
            "llmops.dataset_hash": self.dataset_hash,
            **self._dataset_version_tags(),
            "llmops.training_data_sha256": self.training_data_sha256,
            "llmops.training_params_sha256": self.training_params_sha256,
            TAG_BASE_MODEL: self.base_model,
            "llmops.training_config": self.training_config,
            "llmops.training_config_sha256": self.training_config_sha256,
            "llmops.airflow.dag_id": self.dag_id,
            "llmops.airflow.run_id": self.airflow_run_id,
            "llmops.trigger": self.trigger,
        }
        return {k: str(v) for k, v in values.items() if v not in (None, "")}

    def _dataset_version_tags(self) -> dict[str, Any]:
        v = self.dataset_version or {}
        config = v.get("generator_config")
        return {
            "llmops.dataset.snapshot_id": v.get("snapshot_id"),
            "llmops.dataset.generator": v.get("generator"),
            "llmops.dataset.generator_version": v.get("generator_version"),
            "llmops.dataset.generator_config": json.dumps(config, sort_keys=True)[:5000] if config else None,
            "llmops.dataset.parent_hash": v.get("parent_dataset_hash"),
            "llmops.dataset.steered_by": v.get("steered_by"),
        }


def read_manifest(uri: str | None) -> dict[str, Any]:
    """The preprocessing manifest's lineage fields, or {} when there is none (tolerated: a model can be
    fine-tuned without a RAG corpus)."""
    from llmops.rag.snapshot import MANIFEST
    from llmops.rag.snapshot import read_manifest as read_corpus_manifest

    if not uri:
        return {}
    # `uri` is the manifest file or the preprocessing output folder holding it.
    path = uri.rstrip("/")
    folder = "." if path == MANIFEST else path.removesuffix("/" + MANIFEST)
    if not storage.exists(storage.join(folder, MANIFEST)):
        log.warning("No preprocessing manifest at %s: corpus lineage tags are left out", uri)
        return {}
    data = read_corpus_manifest(folder)  # InputDataError on bad JSON or another schema version
    return {k: data.get(k) for k in ("snapshot_id", "embedding_model", "chunking") if data.get(k) is not None}


def absolute(uri: str | None) -> str | None:
    """Local paths made absolute (tags must mean the same thing from any working directory)."""
    if not uri or storage.scheme(uri) not in ("", "file"):
        return uri
    return str(storage.local_path(uri).resolve())


def s3_adapter_root(uri: str) -> str:
    """An `s3://` training output folder's `adapter/` subfolder when the adapter lives there (so that
    checkpoints next to it are never downloaded), else the URI itself."""
    if not storage.exists(storage.join(uri, "adapter_config.json")) and storage.exists(
        storage.join(uri, "adapter", "adapter_config.json")
    ):
        return storage.join(uri, "adapter")
    return uri


def _local_adapter(adapter: str, tmp: Path) -> Path:
    if storage.is_s3(adapter):
        return storage.download_dir(s3_adapter_root(adapter), tmp / "adapter")
    local = storage.local_path(adapter)
    if not (local / "adapter_config.json").is_file() and (local / "adapter" / "adapter_config.json").is_file():
        local = local / "adapter"
    if not (local / "adapter_config.json").is_file():
        raise ModelLoadError(f"{adapter} is not an adapter folder (no adapter_config.json)")
    return local


def _find_version(client: MlflowClient, name: str, training_run_id: str) -> ModelVersion | None:
    found = client.search_model_versions(
        f"name = '{name}' and tags.`{TAG_TRAINING_RUN}` = '{training_run_id}'", max_results=10
    )
    if not found:
        return None
    # Never more than one by construction; the oldest wins if a concurrent race made two.
    return min(found, key=lambda v: int(v.version))


def _find_logged_model(client: MlflowClient, experiment_id: str, run_id: str):
    models = client.search_logged_models(
        experiment_ids=[experiment_id],
        filter_string=f"source_run_id = '{run_id}' AND name = '{MODEL_ARTIFACT_NAME}' AND status = 'READY'",
        max_results=10,
    )
    return models[0] if models else None


def _log_adapter_model(
    client: MlflowClient, run_id: str, adapter_dir: Path, base_model: str, settings: Settings, tmp: Path
) -> tuple[Any, str]:
    """Log the adapter as a pyfunc model of the training run (once); return it and its adapter's URI."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    run = client.get_run(run_id)
    logged = _find_logged_model(client, run.info.experiment_id, run_id)
    if logged is None:
        signature = ModelSignature(
            inputs=Schema([ColSpec("string")]),
            outputs=Schema([ColSpec("string")]),
            params=ParamSchema([ParamSpec("max_new_tokens", "long", 32)]),
        )
        # The artifact keeps the folder's name: a clean copy named `adapter` gives every version the
        # same layout (and leaves anything else in a training output folder behind).
        clean = tmp / "logged" / "adapter"
        shutil.copytree(adapter_dir, clean)
        code = Path(__file__).resolve().parent / "pyfunc_model.py"
        # Re-opening the finished training run links the logged model to it (status returns to FINISHED).
        # MLflow's advice to add type hints or an input example does not apply: the signature is explicit,
        # and an input example would load the model at registration time.
        with tracking(settings), mlflow.start_run(run_id=run_id), warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=UserWarning, module=r"mlflow\..*")
            info = mlflow.pyfunc.log_model(
                name=MODEL_ARTIFACT_NAME,
                python_model=str(code),
                artifacts={"adapter": str(clean)},
                model_config={"base_model": base_model, "max_new_tokens": 32},
                signature=signature,
                pip_requirements=PIP_REQUIREMENTS,
            )
        logged = client.get_logged_model(info.model_id)
    from mlflow.models import get_model_info

    with tracking(settings):  # models:/<model_id> resolves through the fluent tracking URI
        flavor = get_model_info(logged.model_uri).flavors["python_function"]
    rel = flavor["artifacts"]["adapter"]["path"]
    return logged, f"{logged.artifact_location.rstrip('/')}/{rel}"


def _ensure_registered_model(client: MlflowClient, name: str) -> None:
    from mlflow.exceptions import MlflowException

    try:
        client.get_registered_model(name)
    except MlflowException:
        try:
            client.create_registered_model(
                name, description="Fine-tuned LoRA adapters on a base model, registered by airflow-llmops."
            )
        except MlflowException:
            client.get_registered_model(name)  # created concurrently: fine; anything else re-raises


def register(
    *,
    adapter: str,
    training_run_id: str,
    base_model: str | None = None,
    name: str | None = None,
    lineage: Lineage | None = None,
    gate_report: str | None = None,
    training_summary: dict[str, Any] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Register the adapter of a training run as a model version with alias `challenger` (idempotent).

    Sets the lineage tags (and the gate decision, when a report is given) on the training run and the
    version, and logs the gate report and training config as artifacts of the training run. Returns a
    summary: `registered_model_name`, `version`, `model_uri`, `created`, `mlflow_run_id`, ...
    """
    s = settings or load_settings()
    name = name or s.mlflow.registered_model_name
    lineage = lineage or Lineage()
    adapter, gate_report = absolute(adapter), absolute(gate_report)
    lineage.training_config = absolute(lineage.training_config)
    client = mlflow_client(s)
    run = _training_run(client, training_run_id, s)
    report = _gate_report(gate_report)

    # MLflow's SQL registry resolves `models:/<model_id>` sources through the global tracking URI
    # (a TODO in mlflow/store/model_registry/sqlalchemy_store.py): set it for the whole registration.
    with tracking(s), tempfile.TemporaryDirectory(prefix="llmops-register-") as tmp:
        adapter_dir = _local_adapter(adapter, Path(tmp))
        base = _base_model_of(adapter_dir, base_model)
        lineage.base_model = lineage.base_model or base
        tags = _registration_tags(lineage, report, gate_report)

        _ensure_registered_model(client, name)
        mv = _find_version(client, name, training_run_id)
        created = mv is None
        if mv is None:
            mv = _create_version(client, name, training_run_id, _Adapter(adapter, adapter_dir, base), tags, s, Path(tmp))
        else:
            log.info("Training run %s is already %s version %s: not registering again", training_run_id, name, mv.version)
            _retag_version(client, name, mv, tags)

        registered = f"models:/{name}/{mv.version}"
        for key, value in tags.items():
            client.set_tag(training_run_id, key, value)
        client.set_tag(training_run_id, "llmops.registered_model", registered)
        _log_run_files(client, training_run_id, lineage.training_config, gate_report, Path(tmp))
        _log_lineage(client, training_run_id, tags, lineage, registered, training_summary)
        client.set_registered_model_alias(name, CHALLENGER, mv.version)

    mv = client.get_model_version(name, mv.version)
    return RegisterSummary(
        registered_model_name=name,
        version=str(mv.version),
        model_uri=f"models:/{name}/{mv.version}",
        aliases=sorted(mv.aliases or ()),
        created=created,
        mlflow_run_id=training_run_id,
        mlflow_experiment_id=run.info.experiment_id,
        base_model=base,
        adapter_uri=mv.tags.get(TAG_ADAPTER_URI),
        gate_decision=tags.get(TAG_GATE_DECISION),
        tags={k: v for k, v in mv.tags.items() if k.startswith("llmops.")},
    ).to_json()


@dataclass(frozen=True)
class _Adapter:
    """The adapter being registered: where it was given, its local copy, and the base model it adapts."""

    source: str
    local: Path
    base: str


def _training_run(client: MlflowClient, training_run_id: str, settings: Settings):
    """The training run the adapter comes from, or `RegistryError` naming it."""
    from mlflow.exceptions import MlflowException

    try:
        return client.get_run(training_run_id)
    except MlflowException as exc:
        raise RegistryError(
            f"training run {training_run_id!r} not found on {settings.mlflow_tracking} ({exc.message}): "
            "pass the mlflow_run_id of the train step's summary"
        ) from None


def _gate_report(gate_report: str | None) -> dict[str, Any] | None:
    if not gate_report:
        return None
    from llmops.evaluation.gate import read_report

    return read_report(gate_report)


def _base_model_of(adapter_dir: Path, base_model: str | None) -> str:
    """The base model given, else the adapter's own; a local folder as an absolute path."""
    base = base_model or _adapter_base(adapter_dir)
    if storage.scheme(base) in ("", "file") and Path(storage.local_path(base)).exists():
        base = str(Path(storage.local_path(base)).resolve())
    return base


def _registration_tags(lineage: Lineage, report: dict[str, Any] | None, gate_report: str | None) -> dict[str, str]:
    """The lineage tags, with the gate's decision and report when a report is given."""
    tags = lineage.tags()
    if report is not None:
        tags[TAG_GATE_DECISION] = "promote" if report["passed"] else "reject"
        tags[TAG_GATE_REPORT] = gate_report
    return tags


def _create_version(
    client: MlflowClient, name: str, training_run_id: str, adapter: _Adapter, tags: dict[str, str],
    settings: Settings, tmp: Path,
) -> ModelVersion:
    """Log the adapter as the training run's model and register it as a new version of `name`."""
    logged, adapter_uri = _log_adapter_model(client, training_run_id, adapter.local, adapter.base, settings, tmp)
    version_tags = {
        **tags,
        TAG_TRAINING_RUN: training_run_id,
        TAG_ADAPTER_URI: adapter_uri,
        TAG_ADAPTER_SOURCE: str(adapter.source),
    }
    # Tags are set in the same call that creates the version: a crash cannot leave an
    # untagged version that a retry would not find.
    mv = client.create_model_version(
        name,
        source=logged.model_uri,
        run_id=training_run_id,
        tags=version_tags,
        model_id=logged.model_id,
        description=f"Adapter of training run {training_run_id} on base {adapter.base}.",
    )
    log.info("Registered %s version %s for training run %s", name, mv.version, training_run_id)
    return mv


def _retag_version(client: MlflowClient, name: str, mv: ModelVersion, tags: dict[str, str]) -> None:
    """A retried registration: bring the existing version's tags up to date."""
    for key, value in tags.items():
        if mv.tags.get(key) != value:
            client.set_model_version_tag(name, mv.version, key, value)


def _log_lineage(
    client: MlflowClient, run_id: str, tags: dict[str, str], lineage: Lineage, registered: str,
    training_summary: dict[str, Any] | None,
) -> None:
    """Everything known about where the model comes from, in one readable file beside the tags."""
    client.log_dict(
        run_id,
        {"lineage": tags, "chunking": lineage.chunking, "registered_model": registered,
         "training_summary": training_summary or {}},
        "lineage/lineage.json",
    )


def _log_run_files(client: MlflowClient, run_id: str, training_config: str | None, gate_report: str | None, tmp: Path) -> None:
    """Copy the training config and the gate report into the run's artifacts (same paths on a retry)."""
    files: list[tuple[str, str]] = []
    if training_config and storage.exists(training_config):
        files.append((training_config, "config"))
    if gate_report:
        from llmops.evaluation.gate import report_paths

        for uri in report_paths(gate_report):
            if storage.exists(uri):
                files.append((uri, "gate"))
    for uri, folder in files:
        local = tmp / "files" / folder / uri.rstrip("/").rsplit("/", 1)[-1]
        local.parent.mkdir(parents=True, exist_ok=True)
        local.write_bytes(storage.read_bytes(uri))
        client.log_artifact(run_id, str(local), artifact_path=folder)


def promote(*, version: str, gate_report: str | None, name: str | None = None, settings: Settings | None = None) -> dict[str, Any]:
    """Move `champion` to `version` when its gate report passed (idempotent).

    The previous champion keeps its version and gets `llmops.previous_champion=true` and
    `llmops.superseded_by=<version>`; the new one records `llmops.promoted_from`. Raises `GateRejected`
    (exit 3) when the report says reject.
    """
    from llmops.exceptions import GateRejected

    s = settings or load_settings()
    name = name or s.mlflow.registered_model_name
    gate_report = absolute(gate_report)
    if gate_report:
        from llmops.evaluation.gate import read_report

        report = read_report(gate_report)
        if not report["passed"]:
            raise GateRejected(
                f"not promoting {name} v{version}: the gate rejected it: " + "; ".join(report.get("reasons", []))
            )
    client = mlflow_client(s)
    mv = _version_for(client, name, None, str(version))
    if gate_report:
        client.set_model_version_tag(name, mv.version, TAG_GATE_DECISION, "promote")
        client.set_model_version_tag(name, mv.version, TAG_GATE_REPORT, gate_report)

    try:
        previous = _version_for(client, name, CHAMPION, None)
    except ModelNotFound:
        previous = None
    if previous is not None and str(previous.version) == str(mv.version):
        # Already champion (a retry): make sure the previous champion recorded earlier is tagged.
        prior = mv.tags.get(TAG_PROMOTED_FROM)
        if prior and prior != "none":
            _tag_previous(client, name, prior, str(mv.version))
        changed = False
    else:
        prior = str(previous.version) if previous is not None else "none"
        # Record where we come from before moving the alias, so a crash in between is repaired on retry.
        client.set_model_version_tag(name, mv.version, TAG_PROMOTED_FROM, prior)
        client.set_registered_model_alias(name, CHAMPION, mv.version)
        if previous is not None:
            _tag_previous(client, name, prior, str(mv.version))
        changed = True
        log.info("Promoted %s version %s to %s (previous: %s)", name, mv.version, CHAMPION, prior)
    mv = client.get_model_version(name, mv.version)
    return PromoteSummary(
        registered_model_name=name,
        version=str(mv.version),
        model_uri=f"models:/{name}@{CHAMPION}",
        aliases=sorted(mv.aliases or ()),
        previous_champion=mv.tags.get(TAG_PROMOTED_FROM),
        changed=changed,
        mlflow_run_id=mv.run_id,
    ).to_json()


def _tag_previous(client: MlflowClient, name: str, previous: str, new: str) -> None:
    client.set_model_version_tag(name, previous, TAG_PREVIOUS_CHAMPION, "true")
    client.set_model_version_tag(name, previous, TAG_SUPERSEDED_BY, new)
