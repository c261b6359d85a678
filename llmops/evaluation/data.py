"""The data of the project's domain lm-eval tasks, taken from a dataset version's evaluation split.

`llmops dataset build` writes `<dataset_uri>/eval/` (Parquet or JSON Lines; see the dataset contract in
the README): one row per item and phrasing, never trained on (the split is by item). Two tasks ask
about those rows with the prompt the fine-tuning rows use (`prompt`):

- `corpus_mc`: multiple choice, the answer among its distractors (`choices`, `label`; metrics `acc`,
  `acc_norm`);
- `corpus_qa`: short-answer generation (`answer`) scored with ROUGE-L and exact match.

Every row carries a stable `id` (`<item_id>#<phrasing>`), its `item_id` and its `slice` (`new`: from a
document the previous dataset version did not have; `retained`: the others), so two evaluations of two
models pair sample by sample and every metric is reported per slice too. The Larkspur sample product's
tasks are the case of the dataset built from the sample corpus (`llmops sample-data`).

`llmops evaluate` writes the rows as JSON Lines into a local folder and passes it in the task metadata
(`llmops_data_dir`); the task YAML files next to this module point lm-eval at `corpus_mc_dataset` /
`corpus_qa_dataset` (`custom_dataset`), which load them with `datasets`' local `json` builder: no hub
access, works with `HF_DATASETS_OFFLINE=1`.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from llmops import storage
from llmops.exceptions import EvaluationError, InputDataError
from llmops.training.inputs import latest_dataset

DOMAIN_TASKS = ("corpus_mc", "corpus_qa")
"""The project's own tasks: what `llmops evaluate` runs when no `--tasks` are given."""

DOMAIN_PREFIX = "corpus_"
"""Task names of the project's own tasks start with this (they need `--dataset`)."""

SLICES = ("new", "retained")
"""The evaluation slices: items from documents new in this dataset version, and the others."""

DATA_DIR_KEY = "llmops_data_dir"
"""Task metadata key naming the local folder the data files are written to (set by `llmops evaluate`)."""

REQUIRED = ("item_id", "prompt", "answer", "choices", "label", "slice")
"""Columns an evaluation row must have."""


def latest_dataset_uri(dataset_root: str) -> str | None:
    """The newest dataset version's folder under `dataset_root`, or None when nothing was built yet."""
    latest = latest_dataset(dataset_root)
    return str(latest["dataset_uri"]) if latest else None


def read_eval_rows(dataset_uri: str) -> tuple[list[dict[str, Any]], str]:
    """The rows of `<dataset_uri>/eval` (checked) and the sha256 of their files."""
    from llmops.training.data import read_dataset

    storage.check_uri(dataset_uri, "--dataset")
    eval_uri = storage.join(dataset_uri, "eval")
    try:
        data = read_dataset(eval_uri)
    except (InputDataError, FileNotFoundError):
        raise EvaluationError(
            f"--dataset {dataset_uri} has no evaluation split ({eval_uri} holds no .parquet or .jsonl file): "
            "give a dataset version folder written by `llmops dataset build` (its summary's dataset_uri)"
        ) from None
    rows = []
    for where, row in data.rows:
        if not isinstance(row, dict):
            raise EvaluationError(f"{eval_uri} {where}: not a row object")
        missing = [c for c in REQUIRED if row.get(c) is None]
        if missing:
            raise EvaluationError(f"{eval_uri} {where}: evaluation row lacks {', '.join(missing)}")
        choices = list(row["choices"])
        label = int(row["label"])
        if not 0 <= label < len(choices) or choices[label] != row["answer"]:
            raise EvaluationError(
                f"{eval_uri} {where}: label {label} does not point at the answer {row['answer']!r} in {choices}"
            )
        if row["slice"] not in SLICES:
            raise EvaluationError(f"{eval_uri} {where}: slice {row['slice']!r} is not one of {', '.join(SLICES)}")
        rows.append(row)
    if not rows:
        raise EvaluationError(f"{eval_uri} holds no evaluation rows: the dataset has nothing to evaluate on")
    rows.sort(key=lambda r: (str(r["item_id"]), int(r.get("phrasing") or 0)))
    return rows, data.sha256


def _sample_id(row: dict[str, Any]) -> str:
    return f"{row['item_id']}#{int(row.get('phrasing') or 0)}"


def mc_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One multiple-choice row per evaluation row (the dataset fixes the order of the choices)."""
    return [
        {
            "id": _sample_id(r),
            "item_id": str(r["item_id"]),
            "slice": r["slice"],
            "prompt": r["prompt"],
            "choices": [str(c) for c in r["choices"]],
            "gold": int(r["label"]),
        }
        for r in rows
    ]


def qa_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One short-answer row per evaluation row."""
    return [
        {"id": _sample_id(r), "item_id": str(r["item_id"]), "slice": r["slice"], "prompt": r["prompt"], "answer": r["answer"]}
        for r in rows
    ]


ROWS = {"corpus_mc": mc_rows, "corpus_qa": qa_rows}


def write_task_data(data_dir: Path, dataset_uri: str) -> dict[str, dict[str, Any]]:
    """Write `<task>.jsonl` for every domain task from the dataset's evaluation split;
    return {task: {path, rows, sha256, slices: {slice: rows}, dataset_uri, dataset_sha256}}."""
    rows, dataset_sha = read_eval_rows(dataset_uri)
    ids = [_sample_id(r) for r in rows]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise EvaluationError(f"{dataset_uri}/eval: item and phrasing {dup} appear twice")
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for task, make in ROWS.items():
        task_rows = make(rows)
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in task_rows)
        path = data_dir / f"{task}.jsonl"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        out[task] = {
            "path": str(path),
            "rows": len(task_rows),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "slices": {s: sum(r["slice"] == s for r in task_rows) for s in SLICES},
            "dataset_uri": dataset_uri,
            "dataset_sha256": dataset_sha,
        }
    return out


def _load(task: str, metadata: dict[str, Any]):
    import datasets

    raw = metadata.get(DATA_DIR_KEY)
    path = Path(raw) / f"{task}.jsonl" if raw else None
    if path is None or not path.exists():
        raise EvaluationError(
            f"{task} reads its rows from the folder `llmops evaluate --dataset URI` writes; "
            f"run it through `llmops evaluate` (metadata {DATA_DIR_KEY}={raw!r})"
        )
    # A private datasets cache beside the files: never a stale Arrow cache from another version of the rows.
    return datasets.load_dataset("json", data_files={"test": str(path)}, cache_dir=str(path.parent / ".hf-cache"))


def corpus_mc_dataset(**metadata: Any):
    """lm-eval `custom_dataset` of `corpus_mc` (a DatasetDict with a `test` split)."""
    return _load("corpus_mc", metadata)


def corpus_qa_dataset(**metadata: Any):
    """lm-eval `custom_dataset` of `corpus_qa` (a DatasetDict with a `test` split)."""
    return _load("corpus_qa", metadata)


_SCORER = None


def _rouge():
    global _SCORER
    if _SCORER is None:
        from rouge_score import rouge_scorer

        _SCORER = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False)
    return _SCORER


def normalize_answer(text: str) -> str:
    """What exact match compares: the first line, trimmed, without a trailing period, case-folded."""
    first = text.strip().split("\n", 1)[0].strip()
    return first.rstrip(".").strip().casefold()


def process_qa(doc: dict[str, Any], results: list[str]) -> dict[str, float]:
    """lm-eval `process_results` of `corpus_qa`: ROUGE-L F1 and exact match of one generation."""
    prediction = results[0] if results else ""
    target = doc["answer"]
    rouge_l = _rouge().score(target, prediction.strip().split("\n", 1)[0])["rougeL"].fmeasure
    return {
        "rougeL": float(rouge_l),
        "exact_match": float(normalize_answer(prediction) == normalize_answer(target)),
    }
