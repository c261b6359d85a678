"""Fixtures of the evaluation tests: synthetic evaluation folders (the format `llmops evaluate` writes),
a tiny base model and a LoRA adapter on it, MLflow on SQLite under tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.evaluation.results import FORMAT_VERSION


def write_evaluation(
    out: Path,
    scores: dict[str, dict[str, list[float]]],
    *,
    label: str = "synthetic",
    higher_is_better: dict[str, bool] | None = None,
    ids: list[str] | None = None,
) -> Path:
    """An evaluation folder from per-sample scores: {task: {metric: [score per sample]}}."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "samples").mkdir(exist_ok=True)
    tasks = {}
    for task, metrics in scores.items():
        n = len(next(iter(metrics.values())))
        sample_ids = ids or [f"{task}-{i:04d}" for i in range(n)]
        lines = []
        for i, sid in enumerate(sample_ids):
            lines.append(json.dumps({"sample_id": sid, "doc_id": i, "scores": {f"{m},none": v[i] for m, v in metrics.items()}}))
        (out / "samples" / f"{task}.jsonl").write_text("\n".join(lines) + "\n")
        tasks[task] = {
            "n": n,
            "samples_file": f"samples/{task}.jsonl",
            "data_sha256": "d" * 64,
            "metrics": {
                f"{m},none": {
                    "value": sum(v) / len(v),
                    "stderr": None,
                    "higher_is_better": (higher_is_better or {}).get(m, True),
                }
                for m, v in metrics.items()
            },
        }
    (out / "results.json").write_text(
        json.dumps({"format_version": FORMAT_VERSION, "model": {"uri": label, "label": label}, "tasks": tasks})
    )
    return out


@pytest.fixture
def evaluation(tmp_path):
    def make(name: str, scores, **kwargs) -> str:
        return str(write_evaluation(tmp_path / name, scores, **kwargs))

    return make


@pytest.fixture
def policy_file(tmp_path):
    def make(text: str) -> str:
        path = tmp_path / "policy.yaml"
        path.write_text(text)
        return str(path)

    return make


# --- a tiny model and an adapter ---------------------------------------------------------------------


@pytest.fixture(scope="session")
def tiny_base(tmp_path_factory) -> Path:
    """The project's tiny base model (`llmops base-model build`), shrunk further and not pretrained:
    the tests check plumbing, not what the model knows."""
    from llmops.dev.base_model import build_base_model

    out = tmp_path_factory.mktemp("tiny-base")
    return build_base_model(
        out, pretrain_steps=0, hidden_size=32, num_layers=2, num_heads=2, intermediate_size=64,
        vocab_size=1024, max_positions=256,
    )


@pytest.fixture(scope="session")
def tiny_adapter(tiny_base, tmp_path_factory) -> Path:
    """A LoRA adapter on `tiny_base` with random (non-zero) weights, so it changes the model's output."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    out = tmp_path_factory.mktemp("tiny-adapter")
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_base)
    peft_model = get_peft_model(
        model, LoraConfig(r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    )
    peft_model.save_pretrained(out)
    return out


# --- MLflow on SQLite ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mlflow_store(tmp_path_factory) -> dict[str, str]:
    """One SQLite tracking/registry database per test module (creating one costs seconds)."""
    root = tmp_path_factory.mktemp("mlflow")
    return {
        "LLMOPS_MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "LLMOPS_MLFLOW_ARTIFACTS_URI": str(root / "artifacts"),
    }


@pytest.fixture
def mlflow_settings(mlflow_store, monkeypatch):
    """Settings (and LLMOPS_* environment, for in-process CLI calls) pointing at the module's MLflow."""
    from llmops.settings import load_settings

    for key, value in mlflow_store.items():
        monkeypatch.setenv(key, value)
    return load_settings()


# --- a dataset version (the layout `llmops dataset build` writes; see the README's dataset contract) ---


def eval_rows(n_new: int = 6, n_retained: int = 4, phrasings: int = 1) -> list[dict]:
    """Evaluation rows of a small hand-written dataset: item `i` asks for the port of service `i`."""
    from llmops.dataset.build import prompt_for

    rows = []
    for i in range(n_new + n_retained):
        answer = str(7000 + i)
        choices = [str(7000 + (i + k) % 10 + 100 * k) for k in range(4)]
        choices[0] = answer
        choices = choices[i % 4 :] + choices[: i % 4]
        for p in range(phrasings):
            question = f"Which port does service s{i} listen on?" if p == 0 else f"Service s{i} listens on which port?"
            rows.append(
                {
                    "item_id": f"item-{i:03d}",
                    "phrasing": p,
                    "chunk_id": f"chunk-{i:03d}",
                    "doc_id": f"docs/s{i}.md",
                    "doc_hash": f"h{i}",
                    "generator": "hand",
                    "generator_version": "1",
                    "split": "eval",
                    "slice": "new" if i < n_new else "retained",
                    "question": question,
                    "prompt": prompt_for(question),
                    "answer": answer,
                    "completion": f" {answer}",
                    "choices": choices,
                    "label": choices.index(answer),
                }
            )
    return rows


def write_dataset(root: Path, rows: list[dict], dataset_hash: str = "abc123") -> str:
    """`root/versions/<hash>/{train,eval}/part-00000.parquet` and `root/latest.json`; return the dataset_uri."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    version = root / "versions" / dataset_hash
    for split in ("train", "eval"):
        (version / split).mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(rows), version / "eval" / "part-00000.parquet")
    train = [{**r, "split": "train", "slice": None, "item_id": r["item_id"] + "-t"} for r in rows]
    pq.write_table(pa.Table.from_pylist(train), version / "train" / "part-00000.parquet")
    (version / "dataset.json").write_text(json.dumps({"dataset_hash": dataset_hash, "snapshot_id": "snap-1"}))
    (root / "latest.json").write_text(json.dumps({"dataset_hash": dataset_hash, "dataset_uri": str(version)}))
    return str(version)


@pytest.fixture
def dataset_uri(tmp_path) -> str:
    return write_dataset(tmp_path / "datasets", eval_rows())
