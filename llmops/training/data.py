"""Training rows: read (JSONL or Parquet, local or `s3://`), check, tokenize, split, batch.

A row is either `{"prompt": ..., "completion": ...}` or `{"messages": [{"role", "content"}, ...]}`
ending with an assistant turn. Only completion tokens count in the loss: for chat rows that is the
last assistant turn, everything before it (rendered by the tokenizer's chat template) is the prompt.
Bad rows are skipped and counted by reason; too many of them fail the run.

The data order is a pure function of the seed and a single integer, the data position (rows consumed
so far): epoch `e` visits the training rows in the permutation seeded by `(seed, e)`, and the stream of
all epochs is cut into micro-batches. A checkpoint stores the position, so a resumed run continues
with exactly the rows an uninterrupted run would have seen.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from llmops import storage
from llmops.exceptions import InputDataError

log = logging.getLogger(__name__)

SUFFIXES = (".jsonl", ".json", ".parquet")


@dataclass(frozen=True)
class Example:
    """One tokenized row: the prompt (no loss) and the completion (loss)."""

    prompt_ids: tuple[int, ...]
    completion_ids: tuple[int, ...]

    @property
    def length(self) -> int:
        return len(self.prompt_ids) + len(self.completion_ids)


@dataclass
class DataReport:
    """What happened to the rows of a dataset."""

    total: int = 0
    bad: Counter = field(default_factory=Counter)
    first_bad: list[str] = field(default_factory=list)

    @property
    def bad_count(self) -> int:
        return sum(self.bad.values())

    def add_bad(self, where: str, reason: str) -> None:
        self.bad[reason] += 1
        if len(self.first_bad) < 5:
            self.first_bad.append(f"{where}: {reason}")

    def as_dict(self) -> dict[str, Any]:
        return {"rows": self.total, "bad_rows": self.bad_count, "bad_reasons": dict(sorted(self.bad.items()))}


@dataclass
class Dataset:
    uri: str
    sha256: str
    rows: list[tuple[str, Any]]
    """(where, raw row) pairs; `where` is `file:line` for error messages."""


DATASET_MANIFEST = "dataset.json"
"""A folder holding this file is a dataset version written by `llmops dataset build`: train on its train/."""


def dataset_files(uri: str) -> list[str]:
    """The data files of a dataset: the file itself, every JSONL/Parquet file under a folder (sorted), or,
    for a dataset version folder (`llmops dataset build`'s dataset_uri), the files of its `train/` split."""
    storage.check_uri(uri, "dataset")
    if not uri.endswith(SUFFIXES) and storage.exists(storage.join(uri, DATASET_MANIFEST)):
        train = storage.join(uri, "train")
        files = [f.uri for f in storage.list_files(train) if f.uri.endswith(SUFFIXES)]
        if not files:
            raise InputDataError(
                f"dataset version {uri} has no training rows under {train}: rebuild it with `llmops dataset build`"
            )
        return files
    files = [f.uri for f in storage.list_files(uri) if f.uri.endswith(SUFFIXES)]
    if not files:
        raise InputDataError(
            f"dataset {uri} has no .jsonl or .parquet file: write the rows there "
            "(`llmops sample-data --out DIR` writes DIR/finetune.jsonl) or point `dataset` at an existing file"
        )
    return files


def read_dataset(uri: str) -> Dataset:
    """Every raw row of the dataset, and the sha256 of its bytes (files concatenated in order)."""
    digest = hashlib.sha256()
    rows: list[tuple[str, Any]] = []
    for path in dataset_files(uri):
        data = storage.read_bytes(path)
        digest.update(data)
        name = path.rsplit("/", 1)[-1]
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            try:
                table = pq.read_table(io.BytesIO(data))
            except Exception as exc:  # pyarrow raises several unrelated types for a bad file
                raise InputDataError(f"dataset file {path} is not readable Parquet: {exc}") from None
            rows += [(f"{name}:{i + 1}", r) for i, r in enumerate(table.to_pylist())]
            continue
        for i, line in enumerate(data.decode("utf-8", errors="replace").splitlines()):
            if not line.strip():
                continue
            try:
                rows.append((f"{name}:{i + 1}", json.loads(line)))
            except json.JSONDecodeError:
                rows.append((f"{name}:{i + 1}", _INVALID_JSON))
    return Dataset(uri=uri, sha256=digest.hexdigest(), rows=rows)


_INVALID_JSON = object()


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def tokenize_row(row: Any, tokenizer, max_seq_len: int) -> Example | str:
    """The tokenized example, or the reason the row is bad."""
    if row is _INVALID_JSON:
        return "invalid JSON"
    if not isinstance(row, dict):
        return "not a JSON object"
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if row.get("messages") is not None:
        messages = row["messages"]
        if not isinstance(messages, list) or not messages:
            return "messages is not a non-empty list"
        if any(not isinstance(m, dict) or not _text(m.get("role")) or _text(m.get("content")) is None for m in messages):
            return "a message lacks a string role or content"
        if messages[-1]["role"] != "assistant":
            return "last message is not the assistant's"
        if not messages[-1]["content"].strip() or not any(m["content"].strip() for m in messages[:-1]):
            return "empty prompt or completion"
        if not getattr(tokenizer, "chat_template", None):
            return "the tokenizer has no chat template for messages rows"
        try:
            prompt = tokenizer.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
            full = tokenizer.apply_chat_template(messages, tokenize=False)
        except Exception as exc:  # jinja2 raises TemplateError and friends from the model's own template
            return f"chat template failed: {type(exc).__name__}"
        if not full.startswith(prompt):
            return "chat template does not render the prompt as a prefix of the conversation"
        # The template writes any special tokens itself (bos, end of turn).
        prompt_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        completion_ids = tokenizer(full[len(prompt):], add_special_tokens=False)["input_ids"]
    elif "prompt" in row or "completion" in row:
        prompt, completion = _text(row.get("prompt")), _text(row.get("completion"))
        if prompt is None or completion is None:
            return "prompt or completion missing or not a string"
        if not prompt.strip() or not completion.strip():
            return "empty prompt or completion"
        # Default special tokens on the prompt (a bos where the tokenizer adds one), none inside.
        prompt_ids = tokenizer(prompt)["input_ids"]
        completion_ids = tokenizer(completion, add_special_tokens=False)["input_ids"] + eos
    else:
        return "neither prompt/completion nor messages"
    if not completion_ids:
        return "empty prompt or completion"
    if len(prompt_ids) + len(completion_ids) > max_seq_len:
        return "longer than max_seq_len"
    return Example(tuple(prompt_ids), tuple(completion_ids))


def tokenize_dataset(
    dataset: Dataset, tokenizer, max_seq_len: int, max_bad_fraction: float
) -> tuple[list[Example], DataReport]:
    """Tokenized good rows and the report; fails when the share of bad rows is above the limit."""
    report = DataReport(total=len(dataset.rows))
    examples: list[Example] = []
    for where, row in dataset.rows:
        result = tokenize_row(row, tokenizer, max_seq_len)
        if isinstance(result, str):
            report.add_bad(where, result)
        else:
            examples.append(result)
    if report.total == 0:
        raise InputDataError(f"dataset {dataset.uri} has no rows")
    share = report.bad_count / report.total
    if report.bad_count:
        log.warning(
            "Skipped %d of %d rows of %s: %s (first: %s)",
            report.bad_count, report.total, dataset.uri, dict(report.bad), "; ".join(report.first_bad),
        )
    if share > max_bad_fraction or not examples:
        reasons = ", ".join(f"{n} {reason}" for reason, n in report.bad.most_common())
        raise InputDataError(
            f"{report.bad_count} of {report.total} rows of {dataset.uri} are bad ({share:.1%} > "
            f"max_bad_fraction {max_bad_fraction:.1%}): {reasons}; first: {'; '.join(report.first_bad)}. "
            "Fix the rows, or raise max_bad_fraction (or max_seq_len for rows that are too long)"
        )
    return examples, report


def split(examples: list[Example], eval_fraction: float, seed: int) -> tuple[list[Example], list[Example]]:
    """A seeded held-out split (train, eval); at least one eval row when the fraction is positive."""
    if eval_fraction <= 0 or len(examples) < 2:
        return list(examples), []
    order = list(range(len(examples)))
    random.Random(f"llmops-split-{seed}").shuffle(order)
    n_eval = min(len(examples) - 1, max(1, round(len(examples) * eval_fraction)))
    held = set(order[:n_eval])
    train = [e for i, e in enumerate(examples) if i not in held]
    evals = [e for i, e in enumerate(examples) if i in held]
    return train, evals


class DataOrder:
    """Row indices by data position: epoch after epoch, each a seeded permutation of the rows."""

    def __init__(self, n_rows: int, seed: int) -> None:
        self.n_rows = n_rows
        self.seed = seed
        self._cache: dict[int, list[int]] = {}

    def permutation(self, epoch: int) -> list[int]:
        if epoch not in self._cache:
            order = list(range(self.n_rows))
            random.Random(f"llmops-order-{self.seed}-{epoch}").shuffle(order)
            self._cache = {epoch: order}
        return self._cache[epoch]

    def indices(self, position: int, count: int) -> list[int]:
        """The `count` row indices starting at data position `position` (crossing epochs)."""
        out = []
        for p in range(position, position + count):
            epoch, offset = divmod(p, self.n_rows)
            out.append(self.permutation(epoch)[offset])
        return out


def collate(examples: list[Example], pad_id: int):
    """Right-padded `input_ids`, `attention_mask` and `labels` (-100 on prompt and padding)."""
    import torch

    width = max(e.length for e in examples)
    ids = torch.full((len(examples), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(examples), width), dtype=torch.long)
    labels = torch.full((len(examples), width), -100, dtype=torch.long)
    for i, e in enumerate(examples):
        seq = e.prompt_ids + e.completion_ids
        ids[i, : len(seq)] = torch.tensor(seq)
        mask[i, : len(seq)] = 1
        labels[i, len(e.prompt_ids) : len(seq)] = torch.tensor(e.completion_ids)
    return {"input_ids": ids, "attention_mask": mask, "labels": labels}
