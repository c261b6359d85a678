"""Step contracts: one typed model per step summary, used by its writer and by every reader.

A step's summary is its XCom (the JSON it writes to `--summary-json` and prints, or an operator's return
value). The step builds its model and emits `model.model_dump(mode="json")`; a Python reader parses the
XCom with `Model.model_validate(...)` and reads attributes; a DAG template reads keys by name, which
`tests/llmops/test_contracts.py` checks against these models (`TASK_SUMMARIES`), so a renamed key fails in the
test suite instead of at run time.

`extra="forbid"`: a writer that adds a key must declare it here first. Fields a step leaves out on one
of its paths (a no-op preprocessing run has no timings) default to None.

This module imports only pydantic: the DAG processor may import it at parse time.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

from llmops.docstrings import field_docstrings


class Summary(BaseModel):
    """Base of every step summary: unknown keys are an error, the model is frozen (a summary is a record)."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    def to_json(self) -> dict[str, Any]:
        """The summary as the JSON object the step emits (its XCom)."""
        return self.model_dump(mode="json")


# --- data ------------------------------------------------------------------------------------------


@field_docstrings
class QuarantinedDocument(Summary):
    """A document left out of the corpus."""

    path: str
    """The document's URI."""
    reason: str
    """Why it was left out."""


@field_docstrings
class VectorStoreRef(Summary):
    """Where the chunks were upserted."""

    uri: str
    """Milvus Lite file or server URI."""
    collection: str
    """Milvus collection name."""


@field_docstrings
class PreprocessSummary(Summary):
    """`llmops preprocess` (`llmops.rag.job.run_preprocess`): the corpus snapshot it produced or kept."""

    snapshot_id: str
    """Id of the current corpus snapshot."""
    snapshot_uri: str
    """Folder of the snapshot's Parquet files."""
    snapshot_changed: bool
    """False when nothing changed and no new snapshot was written (no corpus event then)."""
    previous_snapshot_id: str | None
    """The snapshot before this run, if any."""
    output_uri: str
    """The preprocessing output folder (manifest, quarantine report, snapshots)."""
    input_uri: str
    """The documents folder that was read."""
    manifest_uri: str
    """`manifest.json` of the output."""
    quarantine_uri: str
    """`quarantine.json` of the output: every document left out, with its reason."""
    vector_store: VectorStoreRef
    """Where the chunks live."""
    embedding_model: str
    """Sentence-transformers model of the embeddings."""
    embedding_backend: str | None = None
    """`torch`, `onnx`, `onnx-int8`, `onnx-int8-fused` or `openvino`; None on a run that embedded nothing."""
    embedding_dim: int | None
    """Embedding dimension."""
    chunking: dict[str, Any]
    """Chunking parameters (size, overlap, tokenizer)."""
    documents_seen: int
    """Documents found under the input."""
    documents_indexed: int
    """Documents (re)chunked and embedded by this run."""
    documents_new: int
    """Documents not in the previous snapshot."""
    documents_changed: int
    """Documents whose content changed."""
    documents_unchanged: int
    """Documents reused from the previous snapshot."""
    documents_deleted: int
    """Documents gone from the input since the previous snapshot."""
    documents_quarantined: list[QuarantinedDocument]
    """Documents left out (at most `llmops.rag.job.SUMMARY_QUARANTINE_LIMIT`; quarantine.json has all)."""
    documents_quarantined_count: int
    """How many documents were left out in all."""
    chunks_total: int
    """Chunks in the snapshot."""
    chunks_written: int
    """Chunks upserted into the vector store."""
    chunks_embedded: int
    """Chunks embedded by this run."""
    chunks_reused: int
    """Chunks (and embeddings) reused from the previous snapshot."""
    chunks_deleted: int
    """Chunks deleted from the vector store."""
    duplicates_removed: int
    """Duplicate chunks dropped."""
    full_rebuild: bool
    """True when the chunking or the model changed and every document was processed again."""
    torch_threads_per_task: int | None = None
    """Torch threads per Spark task; None on a run that embedded nothing."""
    spark_parallelism: int | None = None
    """Spark partitions of the embedding stage; None on a run that embedded nothing."""
    timings: dict[str, float] | None = None
    """Seconds per stage; None on a run that wrote no snapshot."""
    duration_s: float
    """Wall time of the job."""


@field_docstrings
class DatasetBuildSummary(Summary):
    """`llmops dataset build` (`llmops.dataset.build.build_dataset`): the dataset version of the corpus."""

    dataset_uri: str
    """The dataset version folder (train/, eval/, dataset.json)."""
    dataset_root: str
    """The folder holding the item cache and the versions."""
    dataset_hash: str
    """Content hash of the version (its folder name)."""
    written: bool
    """False when the version already existed (an unchanged corpus)."""
    snapshot_id: str
    """Corpus snapshot the items come from."""
    generator: str
    """`extractive` or `teacher`."""
    generator_version: str
    """Version of the generator's rules or prompt."""
    generator_config_hash: str
    """Hash of the generator's configuration (part of the item cache key)."""
    rows_train: int
    """Training rows."""
    rows_eval: int
    """Evaluation rows."""
    rows_eval_new: int
    """Evaluation rows of the `new` slice (chunks new since the parent version)."""
    rows_eval_retained: int
    """Evaluation rows of the `retained` slice."""
    items_train: int
    """Items in the training split."""
    items_eval: int
    """Items in the evaluation split."""
    items_ambiguous: int
    """Items left out because their answer was ambiguous."""
    items_moved_to_train: int
    """Evaluation items moved to training (their chunk was already trained on)."""
    items_quarantined: int
    """Items rejected by the checks."""
    items_generated: int
    """Items generated by this build."""
    items_reused: int
    """Items taken from the cache."""
    teacher_calls: int
    """Calls to the teacher endpoint."""
    chunks_total: int
    """Chunks of the corpus snapshot."""
    chunks_generated: int
    """Chunks items were generated for by this build."""
    chunks_new: int
    """Chunks not in the parent version."""
    chunks_deleted: int
    """Chunks of the parent version gone from the corpus."""
    chunks_pending: int
    """Chunks left for a later build (the budget ran out)."""
    parent_dataset_hash: str | None
    """The version this one follows, if any."""
    steered_by: str | None
    """The drift event whose steer file ordered the generation, if any."""
    generation_seconds: float
    """Time spent generating items."""
    seconds: float
    """Wall time of the build."""


@field_docstrings
class DatasetInputs(Summary):
    """The dataset DAG's `dataset_inputs` task (`llmops_operators.dataset.build_inputs`)."""

    trigger: str
    """`corpus`, `drift` or `manual`."""
    steer: str
    """Steer file for `llmops dataset build --steer` ("" for none)."""
    drift: dict[str, Any] | None = None
    """The newest drift event's report fields, when a drift event triggered the run."""


# --- training ----------------------------------------------------------------------------------------


@field_docstrings
class TriggerSummary(Summary):
    """The fine-tune DAG's `check_trigger` task: why the run started and whether it goes ahead."""

    trigger: str
    """`corpus`, `drift`, `schedule` or `manual` (recorded as a tag of the training run)."""
    decision: str
    """`proceed` or `skipped`."""
    reason: str
    """Why."""
    snapshot_id: str | None
    """Newest corpus snapshot."""
    dataset_hash: str | None
    """The dataset version the run would train on."""
    time: str
    """When the trigger happened (ISO 8601, UTC)."""
    run_id: str
    """The Airflow run id."""
    report_uri: str | None
    """The drift report behind a drift trigger."""
    p_values: dict[str, float | None]
    """The drift event's p-values."""
    cooldown_hours: float
    """The retrain cooldown applied."""
    ledger_uri: str
    """The trigger ledger file."""
    dataset_uri: str | None
    """The dataset (version) the run trains on."""
    training_params_sha256: str
    """Hash of the run's training parameters (recorded with the model version)."""
    champion_version: str | None
    """The champion's version when it was asked (a dataset version to compare with)."""


@field_docstrings
class ResolvedInputs(Summary):
    """The fine-tune DAG's `resolve_inputs` task (`llmops.training.inputs.resolve_inputs`)."""

    base_model: str
    """The base model to adapt (hub id, folder or s3://)."""
    base_model_kind: str
    """How the base model was recognised (hub, local, s3)."""
    dataset: str
    """The training data: a dataset version folder or a rows file."""
    dataset_files: int
    """Data files found."""
    corpus_manifest: str | None
    """The corpus manifest read for lineage."""
    corpus_snapshot_id: str | None
    """Newest corpus snapshot."""
    dataset_hash: str | None
    """The dataset version's hash (None for a rows file)."""
    dataset_snapshot_id: str | None
    """The corpus snapshot the dataset version was built from."""
    eval_dataset: str
    """The dataset version whose eval split the gate evaluates on ("" for a rows file)."""


@field_docstrings
class TrainSummary(Summary):
    """`llmops train` (`llmops.training.trainer.train`)."""

    mlflow_run_id: str | None
    """The MLflow run (None with tracking off)."""
    steps: int
    """Optimizer steps done in all attempts."""
    total_steps: int
    """Optimizer steps of the whole run."""
    steps_this_attempt: int
    """Steps done since this attempt started (or resumed)."""
    tokens: int
    """Training tokens seen in all attempts."""
    tokens_per_s: float
    """Throughput of this attempt."""
    train_seconds: float
    """Training wall time of this attempt."""
    checkpoint_seconds: float
    """Time spent writing checkpoints in this attempt."""
    lease_verify_seconds: float | None
    """Time spent checking the lease (included in checkpoint_seconds); None without a lease."""
    train_loss: float | None
    """Mean training loss of this attempt's last steps."""
    eval_loss: float | None
    """Loss on the evaluation rows, when there are any."""
    checkpoints_written: list[str]
    """Checkpoint folders written by this attempt."""
    checkpoint_dir: str
    """The checkpoint folder."""
    resumed_from: str | None
    """The checkpoint this attempt resumed from."""
    adapter_dir: str
    """The LoRA adapter written at the end."""
    output_dir: str
    """The run folder (adapter, steps.jsonl, loss curve, train_summary.json)."""
    base_model: str
    """The base model adapted."""
    dataset: str
    """The training data."""
    dataset_hash: str
    """SHA-256 of the training rows."""
    rows: int
    """Rows read."""
    bad_rows: int
    """Rows rejected."""
    bad_reasons: dict[str, int]
    """Rejected rows by reason."""
    rows_train: int | None = None
    """Rows trained on (absent from train_summary.json, written before the split is counted)."""
    rows_eval: int | None = None
    """Rows evaluated on."""


@field_docstrings
class EvaluateSummary(Summary):
    """`llmops evaluate` (`llmops.evaluation.harness.evaluate_model`)."""

    output: str
    """Folder of the results (the gate's --candidate / --baseline)."""
    results_uri: str
    """The lm-eval results file."""
    model: str
    """The model evaluated, as given."""
    model_label: str
    """How the model is named in the reports."""
    registered_model_name: str | None
    """Registered model, for a `models:/` URI."""
    version: str | None
    """Its version."""
    metrics: dict[str, dict[str, Any]]
    """Task -> metric -> value."""
    n: dict[str, int]
    """Task -> samples."""
    slices: dict[str, dict[str, dict[str, Any]]]
    """Task -> slice (`new`, `retained`) -> n and metrics."""
    dataset: str | None
    """The dataset version evaluated on."""
    mlflow_run_id: str | None
    """The evaluation's MLflow run."""
    mlflow_experiment_id: str | None
    """Its experiment."""
    duration_s: float
    """Wall time."""


@field_docstrings
class GateSummary(Summary):
    """`llmops gate`."""

    decision: str
    """`promote` or `reject`."""
    passed: bool
    """True when the candidate may be promoted."""
    reasons: list[str]
    """Why it was rejected (empty when it passed)."""
    report_uri: str
    """`gate.json`, the full report."""
    report_markdown_uri: str
    """The report as a Markdown table."""
    candidate: str
    """The candidate's evaluation folder."""
    baseline: str | None
    """The champion's evaluation folder; None without a champion."""
    verdicts: dict[str, str]
    """Metric -> verdict."""


@field_docstrings
class RegisterSummary(Summary):
    """`llmops register` (`llmops.registry.register`)."""

    registered_model_name: str
    """The registered model."""
    version: str
    """The model version of the training run."""
    model_uri: str
    """`models:/NAME/VERSION`."""
    aliases: list[str]
    """The version's aliases (`challenger`, ...)."""
    created: bool
    """False when the training run was already registered (a retry)."""
    mlflow_run_id: str
    """The training run."""
    mlflow_experiment_id: str
    """Its experiment."""
    base_model: str
    """The base model of the adapter."""
    adapter_uri: str | None
    """Where the registered adapter lives."""
    gate_decision: str | None
    """`promote` or `reject`, when a gate report was given."""
    tags: dict[str, str]
    """The version's `llmops.*` tags (lineage)."""


@field_docstrings
class PromoteSummary(Summary):
    """`llmops promote` (`llmops.registry.promote`)."""

    registered_model_name: str
    """The registered model."""
    version: str
    """The new champion."""
    model_uri: str
    """`models:/NAME@champion`."""
    aliases: list[str]
    """The version's aliases."""
    previous_champion: str | None
    """The version it replaced."""
    changed: bool
    """False when it already was the champion."""
    mlflow_run_id: str | None
    """The training run of the version."""


# --- serving -----------------------------------------------------------------------------------------


@field_docstrings
class RenderSummary(Summary):
    """`llmops render`: the validated manifests of one model version."""

    manifests_uri: str
    """The version's manifest folder."""
    out: str
    """The GitOps root it was written under."""
    model: str
    """The served model name."""
    model_dir: str
    """The model folder the server mounts."""
    version: str
    """The model version."""
    run_id: str | None
    """Its training run."""
    stable_version: str | None
    """The stable (champion) version of a canary rollout."""
    name: str
    """The deployment's name."""
    namespace: str
    """Its namespace."""
    files: list[str]
    """The files written."""
    changed: bool
    """False when the folder already held the same files."""
    validated_by: dict[str, str]
    """`Kind/name` -> the schema source that validated it."""
    render_validate_s: float
    """Rendering and validation time."""
    write_s: float
    """Write time."""


@field_docstrings
class DeploySummary(Summary):
    """`llmops deploy` and the DAG's `deploy` task (`llmops.deploy.publish.deploy_folder`)."""

    manifests_uri: str
    """The version folder made live."""
    model: str
    """The served model."""
    version: str
    """The version made live."""
    previous_version: str | None
    """The version live before."""
    objects: list[str]
    """`Kind/name` of the objects."""
    applied: bool
    """True when applied to the cluster (else the GitOps pointer only)."""
    canary_weight: int = 0
    """Traffic percent to the canary (0 without one)."""
    deleted: list[str] | None = None
    """Objects deleted by the apply (None when not applied)."""
    rollout: dict[str, str] | None = None
    """Rollout status per object (None when not applied)."""
    live_changed: bool
    """False when the pointer already named this version."""
    live: str
    """The live version now."""
    deploy_s: float
    """Wall time."""


@field_docstrings
class SmokeSummary(Summary):
    """`llmops smoke` (`llmops.deploy.smoke.smoke`): one version served and asked a question.

    Two engines fill it: `vllm` (the pinned vLLM with the rendered arguments, `vllm_serve.serve_and_check`)
    and `transformers` (the fallback when the serving environment is absent, which `fallback_reason` says).
    Fields of the other engine stay None."""

    model_uri: str
    """The URI asked for."""
    name: str
    """The registered model (or folder) name."""
    version: str
    """The version it resolved to."""
    run_id: str | None
    """Its training run."""
    adapter: bool
    """True for a LoRA adapter on a base."""
    engine: str
    """`vllm` or `transformers`."""
    prompt: str
    """The question asked."""
    answer: str
    """The answer (greedy)."""
    generate_s: float
    """Time to answer: the first request (vLLM) or `generate` (transformers)."""
    new_tokens: int
    """Tokens generated."""
    tokens_per_s: float | None
    """Tokens per second of that answer."""
    fallback_reason: str | None = None
    """Why vLLM was not run (transformers engine only)."""
    lora_modules: int | None = None
    """LoRA modules applied (transformers)."""
    parameters: int | None = None
    """Model parameters (transformers)."""
    prompt_tokens: int | None = None
    """Prompt length in tokens (transformers)."""
    load_s: float | None = None
    """Load time (transformers)."""
    vllm_version: str | None = None
    """The installed vLLM (vllm)."""
    manifest: str | None = None
    """The rendered file whose container arguments were run (vllm)."""
    rendered_args: list[str] | None = None
    """Those arguments (vllm)."""
    command: list[str] | None = None
    """The command run here (vllm)."""
    translated: list[str] | None = None
    """Every change from the rendered arguments for this machine (vllm)."""
    startup_s: float | None = None
    """Server start-up until /health answered (vllm)."""
    model: str | None = None
    """The served model name asked (vllm)."""
    latency_s: float | None = None
    """First request's latency (vllm)."""
    ttft_s: float | None = None
    """Time to first token, streamed (vllm)."""
    latency_warm_s: float | None = None
    """A warm request's latency (vllm)."""
    tokens_per_s_warm: float | None = None
    """Tokens per second of the warm request (vllm)."""
    served_models: list[dict[str, Any]] | None = None
    """`/v1/models`: id and parent of each served model (vllm)."""
    answers: dict[str, Any] | None = None
    """Each served model's answers (vllm)."""
    metrics: dict[str, Any] | None = None
    """The /metrics values checked (vllm)."""
    metric_names: int | None = None
    """How many metric names /metrics exposed (vllm)."""
    stopped: str | None = None
    """How the server was stopped: `exited`, `terminated` or `killed` (vllm)."""


# --- drift -------------------------------------------------------------------------------------------


@field_docstrings
class DriftGroup(Summary):
    """A group of uncovered traffic."""

    size: int
    """Requests in the group."""
    share: float
    """Its share of the traffic."""
    chunk_ids: list[str]
    """The corpus chunks nearest to it."""


@field_docstrings
class DriftSummary(Summary):
    """`llmops drift` (`llmops.drift.monitor.summary_of`)."""

    status: str
    """`drift`, `no_drift` or `not_enough_data`."""
    drift: bool
    """True on drift."""
    p_value: float | None
    """p-value of the coverage test."""
    uncovered_share: float | None
    """Share of the traffic farther from the reference than its own documents are."""
    expected_share: float | None
    """The reference's own uncovered share."""
    excess: float | None
    """uncovered_share - expected_share."""
    min_effect: float | None
    """The effect-size floor."""
    alpha: float | None
    """The false-alarm rate."""
    p_value_mmd: float | None
    """Descriptive MMD test."""
    p_value_classifier: float | None
    """Descriptive domain-classifier test."""
    auc: float | None
    """The domain classifier's AUC."""
    partial_auc: float | None
    """Its partial AUC."""
    mmd2: float | None
    """The squared MMD."""
    n_reference: int | None
    """Reference texts compared."""
    n_current: int | None
    """Traffic texts compared."""
    report_uri: str | None
    """The report folder (report.html)."""
    report_dir: str | None
    """The report folder as a local path, when local."""
    report_json_uri: str | None
    """report.json."""
    mlflow_run_id: str | None
    """The drift check's MLflow run."""
    created_at: str | None
    """When the check ran (ISO 8601)."""
    embedding_model: str | None
    """The embedding model compared with."""
    drift_event: str | None
    """Id of the drift event (on drift)."""
    steer_uri: str | None
    """steer.json beside the report (on drift, when chunks were found)."""
    reference_uri: str
    """The reference data."""
    current_uri: str
    """The traffic."""
    reference_snapshot_id: str | None
    """The corpus snapshot of the reference."""
    groups: list[DriftGroup]
    """The uncovered traffic, grouped."""
    reason: str | None = None
    """Why there is no verdict or no drift despite a low p-value."""


TASK_SUMMARIES: dict[str, type[Summary]] = {
    "preprocess": PreprocessSummary,
    "dataset_inputs": DatasetInputs,
    "build": DatasetBuildSummary,
    "check_trigger": TriggerSummary,
    "resolve_inputs": ResolvedInputs,
    "train": TrainSummary,
    "evaluate_candidate": EvaluateSummary,
    "evaluate_champion": EvaluateSummary,
    "gate": GateSummary,
    "register": RegisterSummary,
    "promote": PromoteSummary,
    "render_manifests": RenderSummary,
    "smoke_test": SmokeSummary,
    "deploy": DeploySummary,
    "detect_drift": DriftSummary,
}
"""The project DAGs' task ids whose XCom other tasks read, and the model of that XCom."""
