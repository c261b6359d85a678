"""The on-disk format of one evaluation, shared by `llmops evaluate` (writer) and `llmops gate` (reader).

    DIR/results.json                 per task: metrics with standard errors, sample count, data hash;
                                     for the domain tasks also `slices` ({"new": {"n", "metrics"}, ...})
                                     and the dataset version evaluated on (`dataset_uri`)
    DIR/samples/<task>.jsonl         lm-eval's logged samples, one line per document and filter, each
                                     with `sample_id` (the document's stable `id`, else lm-eval's
                                     `doc_id`), `scores` ({"acc,none": 1.0, ...}) and, for the domain
                                     tasks, `item_id` and `slice`

Metric keys are lm-eval's `metric,filter` (`acc,none`); a bare `acc` means `acc,none`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from llmops import storage
from llmops.exceptions import EvaluationError

RESULTS_FILE = "results.json"
SAMPLES_DIR = "samples"
FORMAT_VERSION = 1


def metric_key(metric: str) -> str:
    """`acc` -> `acc,none`; `exact_match,strict-match` stays as is."""
    return metric if "," in metric else f"{metric},none"


@dataclass
class MetricValue:
    value: float | None
    stderr: float | None
    higher_is_better: bool = True


@dataclass
class SliceResult:
    n: int
    metrics: dict[str, MetricValue]


@dataclass
class TaskResult:
    name: str
    n: int
    metrics: dict[str, MetricValue]
    samples_file: str | None
    data_sha256: str | None = None
    dataset_uri: str | None = None
    slices: dict[str, SliceResult] = field(default_factory=dict)
    """slice name -> its sample count and metrics (the domain tasks)."""
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    """metric key -> sample id -> score (filled by `load_scores`)."""
    sample_slices: dict[str, str] = field(default_factory=dict)
    """sample id -> slice (filled by `load_scores` for samples that carry one)."""


@dataclass
class Evaluation:
    uri: str
    model: dict[str, Any]
    tasks: dict[str, TaskResult]
    raw: dict[str, Any]

    def task(self, name: str) -> TaskResult:
        if name not in self.tasks:
            raise EvaluationError(
                f"{self.uri} has no results for task {name!r} (it has: {', '.join(sorted(self.tasks)) or 'none'}); "
                f"evaluate with --tasks {name}"
            )
        return self.tasks[name]

    def load_scores(self, task: str) -> TaskResult:
        """Read the per-sample scores of one task (once)."""
        result = self.task(task)
        if result.scores or not result.samples_file:
            return result
        uri = storage.join(self.uri, result.samples_file)
        try:
            lines = storage.read_text(uri).splitlines()
        except FileNotFoundError:
            raise EvaluationError(
                f"per-sample results {uri} are missing: the gate needs them (re-run llmops evaluate)"
            ) from None
        scores: dict[str, dict[str, float]] = {}
        for lineno, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvaluationError(f"{uri}:{lineno}: not JSON ({exc.msg})") from None
            sid = str(record["sample_id"])
            if record.get("slice") is not None:
                result.sample_slices[sid] = str(record["slice"])
            for key, value in record.get("scores", {}).items():
                per_metric = scores.setdefault(key, {})
                if sid in per_metric:
                    raise EvaluationError(f"{uri}:{lineno}: sample {sid!r} appears twice for {key}")
                per_metric[sid] = value
        result.scores = scores
        return result


def _metrics(t: dict[str, Any]) -> dict[str, MetricValue]:
    return {
        key: MetricValue(m.get("value"), m.get("stderr"), bool(m.get("higher_is_better", True)))
        for key, m in t.get("metrics", {}).items()
    }


def load_evaluation(uri: str) -> Evaluation:
    """Read `results.json` of an evaluation folder (local or `s3://`)."""
    storage.check_uri(uri, "evaluation folder")
    path = storage.join(uri, RESULTS_FILE)
    try:
        raw = json.loads(storage.read_text(path))
    except FileNotFoundError:
        raise EvaluationError(
            f"{path} does not exist: give the --output folder of a finished `llmops evaluate` run"
        ) from None
    except json.JSONDecodeError as exc:
        raise EvaluationError(f"{path} is not valid JSON ({exc.msg})") from None
    tasks = {}
    for name, t in raw.get("tasks", {}).items():
        tasks[name] = TaskResult(
            name=name,
            n=int(t.get("n", 0)),
            metrics=_metrics(t),
            samples_file=t.get("samples_file"),
            data_sha256=t.get("data_sha256"),
            dataset_uri=t.get("dataset_uri"),
            slices={k: SliceResult(int(v.get("n", 0)), _metrics(v)) for k, v in (t.get("slices") or {}).items()},
        )
    if not tasks:
        raise EvaluationError(f"{path} holds no task results")
    return Evaluation(uri=uri, model=raw.get("model", {}), tasks=tasks, raw=raw)
