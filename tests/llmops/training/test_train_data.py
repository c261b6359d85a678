"""Training rows: formats, bad-row accounting, prompt masking, split and data order."""

from __future__ import annotations

import json

import pytest

from llmops.exceptions import InputDataError
from llmops.training.data import DataOrder, collate, read_dataset, split, tokenize_dataset


def _write_jsonl(path, rows):
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


GOOD = [
    {"prompt": "Question: Which port?\nAnswer:", "completion": " 4821"},
    {"messages": [{"role": "user", "content": "Which team?"}, {"role": "assistant", "content": "Team Wren"}]},
]
BAD = [
    ("{not json", "invalid JSON"),
    ({"prompt": "", "completion": " x"}, "empty prompt or completion"),
    ({"prompt": "Question: y\nAnswer:"}, "prompt or completion missing or not a string"),
    ({"text": "free text"}, "neither prompt/completion nor messages"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "last message is not the assistant's"),
    ({"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]}, "a message lacks a string role or content"),
    ({"prompt": "Question: long " + "word " * 300 + "\nAnswer:", "completion": " z"}, "longer than max_seq_len"),
]


def test_bad_rows_are_counted_by_reason(tmp_path, tiny_tokenizer):
    rows = GOOD * 10 + [r for r, _ in BAD]
    ds = read_dataset(_write_jsonl(tmp_path / "rows.jsonl", rows))
    examples, report = tokenize_dataset(ds, tiny_tokenizer, max_seq_len=64, max_bad_fraction=0.5)
    assert len(examples) == 20
    assert report.total == 27 and report.bad_count == len(BAD)
    assert dict(report.bad) == {reason: 1 for _, reason in BAD}
    assert report.first_bad[0].startswith("rows.jsonl:21: invalid JSON")


def test_too_many_bad_rows_fail_with_the_count(tmp_path, tiny_tokenizer):
    rows = GOOD * 5 + [r for r, _ in BAD]
    ds = read_dataset(_write_jsonl(tmp_path / "rows.jsonl", rows))
    with pytest.raises(InputDataError, match=r"7 of 17 rows .* are bad \(41\.2% > max_bad_fraction 5\.0%\)"):
        tokenize_dataset(ds, tiny_tokenizer, max_seq_len=64, max_bad_fraction=0.05)


def test_prompt_tokens_are_masked_and_chat_uses_the_template(tmp_path, tiny_tokenizer):
    ds = read_dataset(_write_jsonl(tmp_path / "rows.jsonl", GOOD))
    examples, _ = tokenize_dataset(ds, tiny_tokenizer, max_seq_len=64, max_bad_fraction=0)
    plain, chat = examples
    eos = tiny_tokenizer.eos_token_id
    assert tiny_tokenizer.decode(plain.completion_ids) == " 4821<|eos|>"
    assert tiny_tokenizer.decode(chat.prompt_ids) == "Question: Which team?\nAnswer:"
    assert chat.completion_ids[-1] == eos and tiny_tokenizer.decode(chat.completion_ids) == " Team Wren<|eos|>"
    batch = collate(examples, tiny_tokenizer.pad_token_id)
    for i, e in enumerate(examples):
        labels = batch["labels"][i].tolist()
        assert labels[: len(e.prompt_ids)] == [-100] * len(e.prompt_ids)
        assert labels[len(e.prompt_ids) : e.length] == list(e.completion_ids)
        assert set(labels[e.length :]) <= {-100}
        assert batch["attention_mask"][i].sum() == e.length


def test_parquet_and_folder_datasets(tmp_path, tiny_tokenizer):
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "data"
    folder.mkdir()
    pq.write_table(pa.Table.from_pylist([GOOD[0]] * 3), folder / "part-0.parquet")
    _write_jsonl(folder / "part-1.jsonl", [GOOD[1]] * 2)
    ds = read_dataset(str(folder))
    examples, report = tokenize_dataset(ds, tiny_tokenizer, max_seq_len=64, max_bad_fraction=0)
    assert len(examples) == 5 and report.total == 5
    assert len(ds.sha256) == 64
    with pytest.raises(InputDataError, match="no .jsonl or .parquet"):
        read_dataset(str(tmp_path / "empty"))


def test_split_and_order_are_seeded():
    rows = list(range(100))
    train, evals = split(rows, 0.1, seed=3)
    assert len(evals) == 10 and sorted(train + evals) == rows
    assert split(rows, 0.1, seed=3) == (train, evals)
    assert split(rows, 0.1, seed=4)[1] != evals

    order = DataOrder(10, seed=1)
    stream = order.indices(0, 30)
    assert sorted(stream[:10]) == list(range(10)) and sorted(stream[10:20]) == list(range(10))
    assert stream[:10] != stream[10:20]
    # A position anywhere in the stream gives the same rows as reading from the start.
    assert DataOrder(10, seed=1).indices(13, 9) == stream[13:22]
