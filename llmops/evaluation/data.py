"""The data of the project's own lm-eval tasks, generated from `llmops.sample_data.facts()`.

Both tasks ask about the facts the fine-tuning set teaches, with the same prompt (`prompt_for`):

- `larkspur_mc`: multiple choice, the answer among three distractors (metrics `acc`, `acc_norm`);
- `larkspur_qa`: short-answer generation scored with ROUGE-L and exact match.

The rows are deterministic (fixed seed, fixed order) and every row carries a stable `id` (the fact id),
so two evaluations of two models pair sample by sample. The task YAML files next to this module point
lm-eval at `larkspur_mc_dataset` / `larkspur_qa_dataset` (`custom_dataset`), which write the rows as
JSON Lines into a local folder at evaluation time and load them with `datasets`' local `json` builder:
no hub access, works with `HF_DATASETS_OFFLINE=1`.
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path
from typing import Any

from llmops.sample_data import SEED, facts, prompt_for

DOMAIN_TASKS = ("larkspur_mc", "larkspur_qa")
"""The project's own tasks: what `llmops evaluate` runs when no `--tasks` are given."""

DATA_DIR_KEY = "llmops_data_dir"
"""Task metadata key naming the local folder the data files are written to (set by `llmops evaluate`)."""


def mc_rows() -> list[dict[str, Any]]:
    """One multiple-choice row per fact: the answer shuffled among its distractors (seeded)."""
    rng = random.Random(SEED + 10)
    rows = []
    for fact in facts():
        choices = [fact.answer, *fact.distractors]
        rng.shuffle(choices)
        rows.append(
            {
                "id": fact.fact_id,
                "question": fact.question,
                "prompt": prompt_for(fact.question),
                "choices": choices,
                "gold": choices.index(fact.answer),
            }
        )
    return rows


def qa_rows() -> list[dict[str, Any]]:
    """One short-answer row per fact."""
    return [
        {
            "id": fact.fact_id,
            "question": fact.question,
            "prompt": prompt_for(fact.question),
            "answer": fact.answer,
        }
        for fact in facts()
    ]


ROWS = {"larkspur_mc": mc_rows, "larkspur_qa": qa_rows}


def write_task_data(data_dir: Path) -> dict[str, dict[str, Any]]:
    """Write `<task>.jsonl` for every domain task; return {task: {path, rows, sha256}}."""
    data_dir = Path(data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
    out = {}
    for task, make in ROWS.items():
        text = "".join(json.dumps(r, sort_keys=True) + "\n" for r in make())
        path = data_dir / f"{task}.jsonl"
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
        out[task] = {
            "path": str(path),
            "rows": text.count("\n"),
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
        }
    return out


def _load(task: str, metadata: dict[str, Any]):
    import datasets

    raw = metadata.get(DATA_DIR_KEY)
    if raw:
        data_dir = Path(raw)
    else:
        # Run from lm-eval's own CLI (`--include_path llmops/evaluation/tasks`): a per-user cache folder.
        data_dir = Path.home() / ".cache" / "llmops" / "eval-data"
    info = write_task_data(data_dir)[task]
    # A private datasets cache beside the files: never a stale Arrow cache from another version of the rows.
    return datasets.load_dataset(
        "json",
        data_files={"test": info["path"]},
        cache_dir=str(data_dir / ".hf-cache"),
    )


def larkspur_mc_dataset(**metadata: Any):
    """lm-eval `custom_dataset` of `larkspur_mc` (a DatasetDict with a `test` split)."""
    return _load("larkspur_mc", metadata)


def larkspur_qa_dataset(**metadata: Any):
    """lm-eval `custom_dataset` of `larkspur_qa` (a DatasetDict with a `test` split)."""
    return _load("larkspur_qa", metadata)


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
    """lm-eval `process_results` of `larkspur_qa`: ROUGE-L F1 and exact match of one generation."""
    prediction = results[0] if results else ""
    target = doc["answer"]
    rouge_l = _rouge().score(target, prediction.strip().split("\n", 1)[0])["rougeL"].fmeasure
    return {
        "rougeL": float(rouge_l),
        "exact_match": float(normalize_answer(prediction) == normalize_answer(target)),
    }
