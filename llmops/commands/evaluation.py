"""`llmops evaluate`, `llmops gate`, `llmops register`, `llmops promote` and `llmops bench gate`.

The fine-tune DAG runs them in this order:

    train -> evaluate (candidate), evaluate (champion, skipped when there is none) -> gate
          -> register (also after a rejection: lineage and the report are recorded) -> promote

Exit codes: 0 success / promote, 3 a "no" (gate rejected; no champion to evaluate with
`--skip-if-missing`; promote of a rejected candidate), 2 an error.
"""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmops.contracts import TrainSummary


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "evaluate",
        help="run lm-eval on a model (folder, adapter, s3:// or models:/ URI); write results.json and per-sample scores",
    )
    p.add_argument("--model", required=True, help="base model folder, adapter folder, s3:// folder, or models:/NAME@alias / models:/NAME/VERSION")
    p.add_argument(
        "--tasks",
        action="append",
        help="comma-separated lm-eval task names (repeatable); default: the domain tasks corpus_mc,corpus_qa "
        "(multiple choice and short answer on --dataset's evaluation split, reported per slice new/retained)",
    )
    p.add_argument(
        "--dataset",
        help="dataset version folder or s3:// URI (`llmops dataset build`'s dataset_uri) whose eval split the domain "
        "tasks ask; default: the latest version under the dataset_root setting",
    )
    p.add_argument("--output", required=True, help="folder or s3:// prefix for results.json and samples/")
    p.add_argument("--limit", type=int, help="evaluate only the first N samples of each task (0: all)")
    p.add_argument("--batch-size", type=int, default=16, help="lm-eval batch size (default 16)")
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--max-length", type=int, help="context length for lm-eval (default: the model's)")
    p.add_argument(
        "--skip-if-missing",
        action="store_true",
        help="exit 3 (skip) instead of failing when the model does not exist (e.g. no champion yet)",
    )
    p.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    p.add_argument("--tag", action="append", default=[], metavar="KEY=VALUE", help="extra MLflow run tag (repeatable)")
    p.add_argument("--dag-id", help="Airflow dag_id (recorded as an MLflow tag)")
    p.add_argument("--airflow-run-id", help="Airflow run_id (recorded as an MLflow tag)")
    p.add_argument("--summary-json", help="write the step summary JSON here")
    p.set_defaults(handler=_evaluate)

    g = sub.add_parser(
        "gate",
        help="decide with paired statistics whether the candidate replaces the champion (exit 0 promote, 3 reject)",
    )
    g.add_argument("--candidate", required=True, help="evaluation folder of the candidate (llmops evaluate --output)")
    g.add_argument("--baseline", required=True, help="evaluation folder of the champion, or `none` (floors alone decide)")
    g.add_argument("--policy", required=True, help="gate policy YAML (see examples/local/gate.yaml)")
    g.add_argument("--report", required=True, help="report JSON path or s3:// URI; the Markdown table is written beside it (.md)")
    g.add_argument("--summary-json", help="write the step summary JSON here")
    g.set_defaults(handler=_gate)

    r = sub.add_parser(
        "register",
        help="register a training run's adapter as a model version (alias challenger) with lineage tags; idempotent",
    )
    r.add_argument(
        "--training-summary",
        help="the train step's summary: a JSON string or a file/s3:// URI (gives --training-run-id, --adapter, "
        "--base-model, --dataset-hash unless given)",
    )
    r.add_argument("--training-run-id", help="MLflow run id of the training run")
    r.add_argument("--adapter", help="adapter folder (or training output folder with adapter/)")
    r.add_argument("--base-model", help="base model URI recorded with the version (default: the adapter's base)")
    r.add_argument("--name", help="registered model name (default: setting registered_model_name)")
    r.add_argument("--manifest", help="preprocessing manifest.json (default: <processed>/manifest.json; absence tolerated)")
    r.add_argument("--training-config", help="training config file, logged with the run")
    r.add_argument("--dataset-hash", help="fine-tuning dataset hash (default: the dataset version's, else the training files' sha256)")
    r.add_argument("--training-params-sha256", help="hash of the training parameters (the fine-tune DAG's trigger check computes it)")
    r.add_argument("--gate-report", help="gate report JSON: its decision and file are recorded")
    r.add_argument("--dag-id", help="Airflow dag_id")
    r.add_argument("--airflow-run-id", help="Airflow run_id")
    r.add_argument("--trigger", help="what started the pipeline run (corpus, drift, schedule, manual)")
    r.add_argument("--summary-json", help="write the step summary JSON here")
    r.set_defaults(handler=_register)

    pr = sub.add_parser(
        "promote",
        help="move the champion alias to a version whose gate report passed (exit 3 if it did not); idempotent",
    )
    pr.add_argument("--version", required=True, help="model version to promote")
    pr.add_argument("--gate-report", required=True, help="gate report JSON of that version")
    pr.add_argument("--name", help="registered model name (default: setting registered_model_name)")
    pr.add_argument("--summary-json", help="write the step summary JSON here")
    pr.set_defaults(handler=_promote)


def register_bench(bench_sub: argparse._SubParsersAction) -> None:
    b = bench_sub.add_parser(
        "gate",
        help="fine-tune the tiny model, evaluate and gate it against its base; print figures and timings",
    )
    b.add_argument("--work", help="work folder (default: <data_root>/bench/gate); artefacts there are reused")
    b.add_argument("--base", help="use this base model folder instead of building one")
    b.add_argument("--adapter", help="use this fine-tuned adapter instead of training one")
    b.add_argument(
        "--dataset",
        help="dataset version to train on and evaluate with (default: one built from the sample corpus in --work)",
    )
    b.add_argument("--train-config", help="training config (default: examples/local/finetune.yaml when present, else the built-in defaults)")
    b.add_argument("--policy", help="gate policy (default: examples/local/gate.yaml)")
    b.add_argument(
        "--small-gain-scales",
        type=_two_floats,
        default=(0.2, 0.3),
        metavar="LOW,HIGH",
        help="LoRA scales of the champion and the candidate of the small-gain case (default 0.2,0.3)",
    )
    b.add_argument("--small-limit", type=int, default=20, help="samples per task of the 'too few samples' case")
    b.add_argument("--json", action="store_true", help="print the figures as JSON")
    b.set_defaults(handler=_bench)


def _two_floats(value: str) -> tuple[float, float]:
    try:
        low, high = (float(x) for x in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not LOW,HIGH (two numbers)") from None
    if not 0 <= low < high:
        raise argparse.ArgumentTypeError(f"{value!r}: need 0 <= LOW < HIGH")
    return low, high


def _tags(pairs: list[str], dag_id: str | None, run_id: str | None) -> dict[str, str]:
    from llmops.exceptions import ConfigError

    tags = {}
    for pair in pairs:
        if "=" not in pair:
            raise ConfigError(f"--tag {pair!r} is not KEY=VALUE")
        k, v = pair.split("=", 1)
        tags[k.strip()] = v
    if dag_id:
        tags["llmops.airflow.dag_id"] = dag_id
    if run_id:
        tags["llmops.airflow.run_id"] = run_id
    return tags


def _evaluate(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.evaluation.harness import evaluate_model
    from llmops.exceptions import SKIP_EXIT_CODE, ModelNotFound

    try:
        summary = evaluate_model(
            args.model,
            args.output,
            tasks=args.tasks,
            dataset=args.dataset or _latest_dataset(args.tasks),
            limit=args.limit,
            batch_size=args.batch_size,
            device=args.device,
            max_length=args.max_length,
            mlflow_log=not args.no_mlflow,
            tags=_tags(args.tag, args.dag_id, args.airflow_run_id),
        )
    except ModelNotFound as exc:
        if not args.skip_if_missing:
            raise
        print(f"llmops evaluate: skipped: {exc}", flush=True)
        return SKIP_EXIT_CODE
    return emit_summary(args, summary)


def _latest_dataset(tasks: list[str] | None) -> str | None:
    """The newest dataset version under the `dataset_root` setting, when the domain tasks need one."""
    from llmops.evaluation.data import DOMAIN_PREFIX, latest_dataset_uri
    from llmops.evaluation.harness import parse_tasks
    from llmops.settings import load_settings

    if not any(t.startswith(DOMAIN_PREFIX) for t in parse_tasks(tasks)):
        return None
    return latest_dataset_uri(load_settings().dataset_root)


def _gate(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.contracts import GateSummary
    from llmops.evaluation.gate import run_gate
    from llmops.exceptions import GateRejected

    report, json_uri, md_uri = run_gate(args.candidate, args.baseline, args.policy, args.report)
    # The Markdown table and the reasons go to stdout: the Airflow task log shows why.
    print(report.to_markdown(), flush=True)
    summary = GateSummary(
        decision=report.decision,
        passed=report.passed,
        reasons=report.reasons,
        report_uri=json_uri,
        report_markdown_uri=md_uri,
        candidate=args.candidate,
        baseline=None if args.baseline in ("", "none") else args.baseline,
        verdicts={m.label: m.verdict for m in report.metrics},
    )
    emit_summary(args, summary.to_json())
    if not report.passed:
        print("llmops gate: REJECTED: " + "; ".join(report.reasons), flush=True)
        return GateRejected.exit_code
    return 0


def _training_summary(value: str | None) -> TrainSummary | None:
    """The train step's summary given as `--training-summary` (JSON or a file), checked against its model."""
    from pydantic import ValidationError

    from llmops import storage
    from llmops.contracts import TrainSummary
    from llmops.exceptions import ConfigError
    from llmops.validation import config_error

    if not value:
        return None
    text = value.strip()
    if not text.startswith("{"):
        storage.check_uri(text, "--training-summary")
        text = storage.read_text(text)
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--training-summary is not JSON ({exc.msg}): pass the train step's summary") from None
    if not isinstance(data, dict):
        raise ConfigError("--training-summary must be a JSON object (the train step's summary)")
    try:
        return TrainSummary.model_validate(data)
    except ValidationError as exc:
        raise config_error("--training-summary (the train step's summary)", exc) from None


def _register(args: argparse.Namespace) -> int:
    from llmops import storage
    from llmops.cli import emit_summary
    from llmops.exceptions import ConfigError
    from llmops.registry import Lineage, read_manifest, register
    from llmops.settings import load_settings
    from llmops.training.inputs import dataset_version

    s = load_settings()
    ts = _training_summary(args.training_summary)
    run_id = args.training_run_id or (ts.mlflow_run_id if ts else None)
    adapter = args.adapter or (ts.adapter_dir if ts else None)
    if not run_id:
        raise ConfigError("--training-run-id is required (or --training-summary with mlflow_run_id)")
    if not adapter:
        raise ConfigError("--adapter is required (or --training-summary with adapter_dir)")
    manifest = read_manifest(args.manifest or storage.join(s.processed, "manifest.json"))
    config = args.training_config
    version = dataset_version(ts.dataset) if ts else None
    lineage = Lineage(
        corpus_snapshot_id=manifest.get("snapshot_id"),
        embedding_model=manifest.get("embedding_model"),
        chunking=manifest.get("chunking"),
        dataset=ts.dataset if ts else None,
        dataset_hash=args.dataset_hash or (version or {}).get("dataset_hash") or (ts.dataset_hash if ts else None),
        dataset_version=version,
        training_data_sha256=ts.dataset_hash if ts else None,
        training_params_sha256=args.training_params_sha256,
        base_model=args.base_model or (ts.base_model if ts else None),
        training_config=config,
        training_config_sha256=_sha(config),
        dag_id=args.dag_id,
        airflow_run_id=args.airflow_run_id,
        trigger=args.trigger,
    )
    summary = register(
        adapter=adapter,
        training_run_id=run_id,
        base_model=args.base_model or (ts.base_model if ts else None),
        name=args.name,
        lineage=lineage,
        gate_report=args.gate_report,
        training_summary=ts.to_json() if ts else None,
        settings=s,
    )
    return emit_summary(args, summary)


def _sha(uri: str | None) -> str | None:
    if not uri:
        return None
    import hashlib

    from llmops import storage

    try:
        return hashlib.sha256(storage.read_bytes(uri)).hexdigest()
    except FileNotFoundError:
        return None


def _promote(args: argparse.Namespace) -> int:
    from llmops.cli import emit_summary
    from llmops.registry import promote

    summary = promote(version=args.version, gate_report=args.gate_report, name=args.name)
    return emit_summary(args, summary)


def _bench(args: argparse.Namespace) -> int:
    from llmops.dev.bench.evaluation import run_bench

    return run_bench(args)
