"""`llmops evaluate`: run lm-eval-harness on a model and keep every per-sample score.

The model is anything `llmops.registry.resolve` understands (a base model folder, an adapter folder, a
`models:/` URI, an `s3://` folder); lm-eval's `hf` backend loads the base with the adapter (`peft=`).
Tasks are the project's domain tasks (`corpus_mc`, `corpus_qa`: `tasks/*.yaml`, rows from the evaluation
split of `--dataset`, see `data.py`) unless standard lm-eval task names are given (those need their
datasets in the local HF cache: no hub access here).

Output (see `results.py`): `results.json` with per-task metrics and standard errors (and, for the domain
tasks, the same per slice `new`/`retained`), `samples/<task>.jsonl` with lm-eval's logged samples (each
with its `sample_id`, `item_id` and `slice`), and `data/` with the domain tasks' data files. The same files and the
metrics are logged to an MLflow run (one per output folder: a retry reuses it).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.contracts import EvaluateSummary
from llmops.evaluation.data import DATA_DIR_KEY, DOMAIN_PREFIX, DOMAIN_TASKS, SLICES, write_task_data
from llmops.evaluation.results import FORMAT_VERSION, RESULTS_FILE, SAMPLES_DIR
from llmops.exceptions import EvaluationError
from llmops.resources import lm_eval_tasks_dir
from llmops.settings import Settings, load_settings

log = logging.getLogger(__name__)

SEED = 1234
"""lm-eval's seeds (Python, NumPy, torch, few-shot sampling): an evaluation is reproducible."""

TAG_EVAL_OUTPUT = "llmops.eval_output"
TAG_STEP = "llmops.step"


def parse_tasks(values: Sequence[str] | None) -> list[str]:
    """`--tasks a,b --tasks c` -> [a, b, c]; nothing -> the domain tasks."""
    tasks: list[str] = []
    for value in values or ():
        tasks += [t.strip() for t in value.split(",") if t.strip()]
    return list(dict.fromkeys(tasks)) or list(DOMAIN_TASKS)


def _task_manager(tasks: list[str], data_dir: Path):
    from lm_eval.tasks import TaskManager

    # Indexing lm-eval's ~15,000 bundled task files takes 10-30 s: only when a standard task is asked.
    needs_defaults = any(not t.startswith(DOMAIN_PREFIX) for t in tasks)
    tm = TaskManager(
        include_path=str(lm_eval_tasks_dir()),
        include_defaults=needs_defaults,
        metadata={DATA_DIR_KEY: str(data_dir)},
    )
    unknown = [t for t in tasks if t not in tm.all_tasks]
    if unknown:
        raise EvaluationError(
            f"unknown lm-eval task(s) {', '.join(unknown)}: use the domain tasks ({', '.join(DOMAIN_TASKS)}) "
            "or a task name from `lm_eval ls tasks`"
        )
    return tm


def _load_lm(resolved, *, batch_size: int, device: str | None, max_length: int | None):
    import torch
    from lm_eval.models.huggingface import HFLM

    from llmops.registry import TOKENIZER_FILES, local_model_path

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if resolved.adapter_path:
        pretrained = local_model_path(resolved.base_model)
        has_tokenizer = any((Path(resolved.adapter_path) / f).exists() for f in TOKENIZER_FILES)
        tokenizer = resolved.adapter_path if has_tokenizer else pretrained
    else:
        pretrained = resolved.model_path
        tokenizer = pretrained
    kwargs: dict[str, Any] = {}
    if max_length:
        kwargs["max_length"] = max_length
    try:
        return HFLM(
            pretrained=pretrained,
            peft=resolved.adapter_path,
            tokenizer=tokenizer,
            device=device,
            dtype="float32" if device == "cpu" else "auto",
            batch_size=batch_size,
            **kwargs,
        )
    except OSError as exc:
        from llmops.exceptions import ModelLoadError

        raise ModelLoadError(f"cannot load {resolved.uri} (base {resolved.base_model}): {exc}") from None


def _sample_record(sample: dict[str, Any]) -> dict[str, Any]:
    doc = sample.get("doc") or {}
    sid = doc.get("id") if isinstance(doc, dict) and doc.get("id") is not None else sample["doc_id"]
    extra = {k: doc[k] for k in ("item_id", "slice") if isinstance(doc, dict) and doc.get(k) is not None}
    filt = sample.get("filter", "none")
    scores = {}
    for metric in sample.get("metrics", []):
        value = sample.get(metric)
        if isinstance(value, bool):
            value = float(value)
        scores[f"{metric},{filt}"] = value if isinstance(value, int | float) else None
    return {"sample_id": str(sid), "scores": scores, **extra, **sample}


def _task_summary(name: str, res: dict[str, Any], eval_out: dict[str, Any], samples_file: str, data_info) -> dict:
    metrics = {}
    hib = eval_out.get("higher_is_better", {}).get(name, {})
    for key, value in res.items():
        if "," not in key or "_stderr," in key:
            continue
        metric, filt = key.split(",", 1)
        stderr = res.get(f"{metric}_stderr,{filt}")
        metrics[key] = {
            "value": value if isinstance(value, int | float) else None,
            "stderr": stderr if isinstance(stderr, int | float) else None,
            "higher_is_better": bool(hib.get(metric, True)),
        }
    n = eval_out.get("n-samples", {}).get(name, {}).get("effective")
    return {
        "n": int(n if n is not None else res.get("sample_len", 0)),
        "metrics": metrics,
        "samples_file": samples_file,
        "version": eval_out.get("versions", {}).get(name),
        "data_sha256": data_info["sha256"] if data_info else None,
        **({"dataset_uri": data_info["dataset_uri"], "dataset_sha256": data_info["dataset_sha256"]} if data_info else {}),
    }


def slice_metrics(records: list[dict[str, Any]], metrics: dict[str, Any]) -> dict[str, Any]:
    """Per slice (`new`, `retained`): sample count and, per metric, the mean of the per-sample scores with
    its standard error (lm-eval's `mean` aggregation and its `sample_stddev / sqrt(n)`)."""
    import math

    out: dict[str, Any] = {}
    for name in SLICES:
        chosen = [r for r in records if r.get("slice") == name]
        per_metric = {}
        for key, m in metrics.items():
            values = [r["scores"].get(key) for r in chosen]
            values = [float(v) for v in values if isinstance(v, int | float)]
            n = len(values)
            mean = sum(values) / n if n else None
            stderr = (
                math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1) / n) if n > 1 and mean is not None else None
            )
            per_metric[key] = {"value": mean, "stderr": stderr, "higher_is_better": m["higher_is_better"]}
        out[name] = {"n": len(chosen), "metrics": per_metric}
    return out


def _seed() -> None:
    import numpy as np
    from lm_eval.utils import set_torch_seed

    random.seed(SEED)
    np.random.seed(SEED)
    set_torch_seed(SEED)


def load_tasks(task_manager, tasks: list[str]) -> dict[str, Any]:
    """Build lm-eval's tasks (their data is loaded here, before any model: a missing dataset fails fast)."""
    _seed()  # some tasks' document processing draws random numbers, as in simple_evaluate
    try:
        loaded = task_manager.load(tasks)
    except (OSError, ValueError) as exc:  # ConnectionError and the hub's offline errors are OSErrors
        raise EvaluationError(
            f"cannot load the data of {', '.join(tasks)}: {exc}. Standard lm-eval tasks need their dataset in "
            "the local Hugging Face cache when the hub is unreachable; the domain tasks need nothing"
        ) from None
    for task_obj in loaded["tasks"].values():
        if task_obj.get_config("num_fewshot") is None:
            task_obj.set_config(key="num_fewshot", value=0)
        task_obj.set_fewshot_seed(seed=SEED)
    return loaded


def run_lm_eval(lm, loaded: dict[str, Any], *, limit: int | None, bootstrap_iters: int) -> dict[str, Any]:
    """lm-eval's `evaluate` with what `simple_evaluate` would set (seeds, zero-shot default), minus its
    environment report (seconds of `collect_env` per run)."""
    from lm_eval.evaluator import evaluate

    _seed()
    return evaluate(
        lm=lm,
        task_dict=loaded,
        limit=limit,
        bootstrap_iters=bootstrap_iters,
        log_samples=True,
    )


def evaluate_model(
    model: str,
    output: str,
    *,
    tasks: Sequence[str] | None = None,
    dataset: str | None = None,
    limit: int | None = None,
    batch_size: int = 16,
    device: str | None = None,
    max_length: int | None = None,
    bootstrap_iters: int = 1000,
    mlflow_log: bool = True,
    tags: dict[str, str] | None = None,
    settings: Settings | None = None,
) -> dict[str, Any]:
    """Evaluate `model` on `tasks` and write the results under `output`; return the step summary."""
    from lm_eval.utils import handle_non_serializable

    from llmops.registry import resolve

    s = settings or load_settings()
    storage.check_uri(output, "--output")
    if limit is not None and limit < 0:
        raise EvaluationError(f"--limit must be a number of samples per task (0: all), got {limit}")
    limit = limit or None  # 0 means every sample (a DAG Param's "no limit")
    task_names = parse_tasks(tasks)
    domain = [t for t in task_names if t.startswith(DOMAIN_PREFIX)]
    if domain and not dataset:
        raise EvaluationError(
            f"{', '.join(domain)} evaluate on a dataset's evaluation split: give --dataset <dataset_uri> "
            "(the folder `llmops dataset build` reports as dataset_uri)"
        )
    started = time.monotonic()
    resolved = resolve(model, settings=s)
    remote = storage.is_s3(output)
    work = Path(tempfile.mkdtemp(prefix="llmops-eval-")) if remote else storage.local_path(output)
    work.mkdir(parents=True, exist_ok=True)
    try:
        data_dir = work / "data"
        data_info = write_task_data(data_dir, dataset) if domain else {}
        loaded = load_tasks(_task_manager(task_names, data_dir), task_names)
        lm = _load_lm(resolved, batch_size=batch_size, device=device, max_length=max_length)
        out = run_lm_eval(lm, loaded, limit=limit, bootstrap_iters=bootstrap_iters)
        shutil.rmtree(data_dir / ".hf-cache", ignore_errors=True)

        task_results = {}
        samples_dir = work / SAMPLES_DIR
        samples_dir.mkdir(exist_ok=True)
        for name, res in sorted(out["results"].items()):
            if name not in out.get("samples", {}):
                continue  # a group's aggregate row; its subtasks have their own
            rel = f"{SAMPLES_DIR}/{name}.jsonl"
            lines = [
                json.dumps(_sample_record(sm), default=handle_non_serializable, sort_keys=True, ensure_ascii=False)
                for sm in out["samples"][name]
            ]
            (work / rel).write_text("".join(line + "\n" for line in lines))
            task_results[name] = _task_summary(name, res, out, rel, data_info.get(name))
            if name in data_info:
                records = [json.loads(line) for line in lines]
                task_results[name]["slices"] = slice_metrics(records, task_results[name]["metrics"])
        if not task_results:
            raise EvaluationError(f"lm-eval returned no results for {', '.join(task_names)}")
        duration = time.monotonic() - started
        results = {
            "format_version": FORMAT_VERSION,
            "model": resolved.to_dict(),
            "tasks": task_results,
            "dataset": dataset,
            "limit": limit,
            "seed": SEED,
            "lm_eval_version": _version("lm_eval"),
            "duration_s": round(duration, 3),
        }
        run_id = experiment_id = None
        if mlflow_log:
            run_id, experiment_id = _log_to_mlflow(output, work, results, tags or {}, s)
            results["mlflow_run_id"] = run_id
        (work / RESULTS_FILE).write_text(json.dumps(results, indent=2, sort_keys=True) + "\n")
        if remote:
            storage.upload_dir(work, output)
    finally:
        if remote:
            shutil.rmtree(work, ignore_errors=True)
    return EvaluateSummary(
        output=output,
        results_uri=storage.join(output, RESULTS_FILE),
        model=model,
        model_label=resolved.label,
        registered_model_name=resolved.name,
        version=resolved.version,
        metrics={
            t: {k: m["value"] for k, m in r["metrics"].items()} for t, r in task_results.items()
        },
        n={t: r["n"] for t, r in task_results.items()},
        slices={
            t: {s: {"n": v["n"], **{k: m["value"] for k, m in v["metrics"].items()}} for s, v in r["slices"].items()}
            for t, r in task_results.items()
            if "slices" in r
        },
        dataset=dataset,
        mlflow_run_id=run_id,
        mlflow_experiment_id=experiment_id,
        duration_s=round(time.monotonic() - started, 3),
    ).to_json()


def _version(package: str) -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None


def _log_to_mlflow(
    output: str, work: Path, results: dict[str, Any], tags: dict[str, str], s: Settings
) -> tuple[str, str]:
    """Metrics (`<task>.<metric>` and `<task>.<metric>_stderr`) and the output files, in one run per
    output folder (found again by the `llmops.eval_output` tag on a retry)."""
    import mlflow

    from llmops.registry import ensure_experiment, mlflow_client, tracking

    experiment_id = ensure_experiment(s)
    client = mlflow_client(s)
    found = client.search_runs(
        [experiment_id], filter_string=f"tags.`{TAG_EVAL_OUTPUT}` = '{output}'", max_results=1
    )
    model = results["model"]
    run_tags = {
        TAG_STEP: "evaluate",
        TAG_EVAL_OUTPUT: output,
        "llmops.evaluated_model": model["uri"],
        **({"llmops.registered_model": model["model_uri"]} if model.get("model_uri") else {}),
        **({"llmops.training_run_id": model["run_id"]} if model.get("run_id") else {}),
        **tags,
    }
    with tracking(s), mlflow.start_run(
        run_id=found[0].info.run_id if found else None,
        experiment_id=experiment_id,
        run_name=None if found else f"evaluate {model['label']}"[:250],
        tags=run_tags if not found else None,
    ) as run:
        if found:
            mlflow.set_tags(run_tags)
        metrics = {}
        for task, r in results["tasks"].items():
            for key, m in r["metrics"].items():
                metric, filt = key.split(",", 1)
                suffix = "" if filt == "none" else f".{filt}"
                if m["value"] is not None:
                    metrics[f"{task}.{metric}{suffix}"] = m["value"]
                if m["stderr"] is not None:
                    metrics[f"{task}.{metric}_stderr{suffix}"] = m["stderr"]
            for slice_name, sl in r.get("slices", {}).items():
                for key, m in sl["metrics"].items():
                    metric, filt = key.split(",", 1)
                    suffix = "" if filt == "none" else f".{filt}"
                    if m["value"] is not None:
                        metrics[f"{task}.{slice_name}.{metric}{suffix}"] = m["value"]
        mlflow.log_metrics(metrics)
        mlflow.log_params(
            {
                "model": model["uri"][:500],
                "tasks": ",".join(results["tasks"]),
                "limit": results["limit"],
                "dataset": (results.get("dataset") or "")[:500],
            }
        )
        mlflow.log_dict(results, "evaluation/results.json")
        mlflow.log_artifacts(str(work / SAMPLES_DIR), artifact_path="evaluation/samples")
        return run.info.run_id, experiment_id
