"""The dataset builder on the sample corpus (preprocessing output written without Spark, see conftest)."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.dataset as pads
import pytest

from llmops.cli import main
from llmops.dataset.build import build_dataset, prompt_for, read_latest
from llmops.dataset.extractive import ExtractiveGenerator
from llmops.dataset.generators import Generated, normalise
from llmops.dev.sample_data import corpus_documents
from llmops.exceptions import InputDataError
from llmops.rag.snapshot import read_snapshot
from llmops.training.data import dataset_files, read_dataset
from llmops.training.inputs import dataset_version
from tests.llmops.dataset.conftest import write_corpus, write_processed


def rows(uri: str, split: str) -> list[dict]:
    return pads.dataset(f"{uri}/{split}", format="parquet").to_table().to_pylist()


def test_every_answer_occurs_verbatim_in_its_chunk(release1, tmp_path):
    summary = build_dataset(release1, str(tmp_path / "ds"), ExtractiveGenerator())
    frame = read_snapshot(release1, columns=["chunk_id", "text"])
    text = dict(zip(frame["chunk_id"], frame["text"], strict=True))
    all_rows = rows(summary["dataset_uri"], "train") + rows(summary["dataset_uri"], "eval")
    assert len(all_rows) == summary["rows_train"] + summary["rows_eval"] > 500
    for r in all_rows:
        assert r["answer"] and r["answer"] in text[r["chunk_id"]], r
        assert r["prompt"] == prompt_for(r["question"]) and r["completion"] == " " + r["answer"]
        assert r["generator"] == "extractive" and r["doc_hash"] and r["doc_id"].startswith(str(tmp_path))
    kinds = {(r["kind"], r["answer_kind"]) for r in all_rows}
    for expected in [("cloze", "number"), ("cloze", "version"), ("cloze", "command"), ("cloze", "name"),
                     ("cloze", "identifier"), ("definition", "definition")]:
        assert expected in kinds


def test_the_facts_of_the_sample_product_are_found(release1, tmp_path):
    """A generic extractor finds the rendered facts (ports, protocols, teams, releases, commands)."""
    from llmops.dev.sample_data import components

    summary = build_dataset(release1, str(tmp_path / "ds"), ExtractiveGenerator())
    answers = {r["answer"] for s in ("train", "eval") for r in rows(summary["dataset_uri"], s)}
    for c in components():
        for value in (c.port, c.protocol, c.team, c.release, c.role):
            assert value in answers, (c.name, value)
        assert any(c.command in a for a in answers), c.command


def test_splits_are_by_item_and_no_eval_prompt_is_trained(release1, tmp_path):
    summary = build_dataset(release1, str(tmp_path / "ds"), ExtractiveGenerator())
    train, evals = rows(summary["dataset_uri"], "train"), rows(summary["dataset_uri"], "eval")
    assert {r["item_id"] for r in train}.isdisjoint({r["item_id"] for r in evals})
    train_prompts = {normalise(r["prompt"]) for r in train}
    assert not [r["prompt"] for r in evals if normalise(r["prompt"]) in train_prompts]
    assert summary["items_eval"] >= 40 and all(r["kind"] != "passage" for r in evals)
    by_item: dict[str, list[dict]] = {}
    for r in evals:
        by_item.setdefault(r["item_id"], []).append(r)
    for item_rows in by_item.values():
        assert sorted(r["phrasing"] for r in item_rows) == [0, 1, 2]
        r = item_rows[0]
        assert len(r["choices"]) == 4 and r["choices"][r["label"]] == r["answer"] and len(set(r["choices"])) == 4
        assert r["slice"] == "new"
    assert all(r["slice"] is None and r["choices"] is None for r in train)


def test_an_unchanged_corpus_generates_nothing_and_keeps_the_hash(release1, tmp_path):
    root = str(tmp_path / "ds")
    first = build_dataset(release1, root, ExtractiveGenerator())
    files = sorted(p for p in Path(root).rglob("*") if p.is_file())
    mtimes = [p.stat().st_mtime_ns for p in files]
    second = build_dataset(release1, root, ExtractiveGenerator())
    assert second["dataset_hash"] == first["dataset_hash"] and second["written"] is False
    assert second["items_generated"] == 0 and second["items_reused"] == first["items_generated"]
    assert sorted(p for p in Path(root).rglob("*") if p.is_file()) == files
    assert [p.stat().st_mtime_ns for p in files] == mtimes
    # Another generator config regenerates everything, into another cache folder.
    other = build_dataset(release1, root, ExtractiveGenerator(passages=True))
    assert other["items_generated"] > 0 and other["dataset_hash"] != first["dataset_hash"]


def test_release_2_is_incremental_and_sliced_new_and_retained(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", release=1)
    processed = write_processed(corpus, tmp_path / "processed")
    root = str(tmp_path / "ds")
    v1 = build_dataset(processed, root, ExtractiveGenerator())
    write_corpus(corpus, release=2)
    v2 = build_dataset(write_processed(corpus, tmp_path / "processed"), root, ExtractiveGenerator())
    assert v2["parent_dataset_hash"] == v1["dataset_hash"] != v2["dataset_hash"]
    # Only the new pages and the changed chunks of the notes, FAQ and glossary generate; their old chunks go.
    assert 0 < v2["chunks_generated"] == v2["chunks_new"] < v2["chunks_total"] // 2
    assert v2["chunks_deleted"] > 0 and v2["items_reused"] > v2["items_generated"] > 0
    evals = rows(v2["dataset_uri"], "eval")
    new_docs = {str(corpus / rel) for rel in corpus_documents(2) if rel not in corpus_documents(1)}
    assert v2["rows_eval_new"] > 0 and v2["rows_eval_retained"] > 0
    for r in evals:
        assert r["slice"] == ("new" if r["doc_id"] in new_docs else "retained"), r
    # Items keep their split across versions.
    v1_split = {r["item_id"]: s for s in ("train", "eval") for r in rows(v1["dataset_uri"], s)}
    v2_split = {r["item_id"]: s for s in ("train", "eval") for r in rows(v2["dataset_uri"], s)}
    assert all(v2_split[i] == s for i, s in v1_split.items() if i in v2_split)
    # A re-run of release 2 keeps v1 as the parent and the hash.
    again = build_dataset(processed, root, ExtractiveGenerator())
    assert again["dataset_hash"] == v2["dataset_hash"] and again["parent_dataset_hash"] == v1["dataset_hash"]
    assert json.loads((Path(root) / "latest.json").read_text())["dataset_hash"] == v2["dataset_hash"]
    assert read_latest(root)["documents"].keys() >= new_docs


class Killed(BaseException):
    pass


class DiesAfter:
    """The real extractive generator, killed (a BaseException, like SIGTERM's) after `n` chunks."""

    def __init__(self, n: int) -> None:
        self.inner, self.n, self.calls = ExtractiveGenerator(), n, 0
        self.name, self.version, self.needs_distractors, self.max_workers = "extractive", "1", False, 1

    def config(self):
        return self.inner.config()

    def generate(self, chunk, context) -> Generated:
        if self.calls == self.n:
            raise Killed
        self.calls += 1
        return self.inner.generate(chunk, context)


def test_a_killed_build_resumes_to_the_same_hash(release1, tmp_path):
    reference = build_dataset(release1, str(tmp_path / "ref"), ExtractiveGenerator())
    root = str(tmp_path / "ds")
    with pytest.raises(Killed):
        build_dataset(release1, root, DiesAfter(10))
    assert not (Path(root) / "latest.json").exists()
    counting = DiesAfter(10_000)
    resumed = build_dataset(release1, root, counting)
    assert counting.calls == reference["chunks_total"] - 10 == resumed["chunks_generated"]
    assert resumed["dataset_hash"] == reference["dataset_hash"]
    train = rows(resumed["dataset_uri"], "train")
    assert len({(r["item_id"], r["phrasing"]) for r in train}) == len(train)


def test_steered_chunks_are_generated_first_within_the_budget(release1, tmp_path):
    frame = read_snapshot(release1, columns=["chunk_id", "source"])
    last_two = sorted(frame["chunk_id"])[-2:]
    steer = tmp_path / "steer.json"
    steer.write_text(json.dumps({"drift_event": "drift-7", "chunk_ids": last_two + ["not-a-chunk"]}))
    root = str(tmp_path / "ds")
    s = build_dataset(release1, root, ExtractiveGenerator(), steer_uri=str(steer), budget=3)
    assert s["chunks_generated"] == 3 and s["chunks_pending"] == s["chunks_total"] - 3
    assert s["steered_by"] == "drift-7" and read_latest(root)["steered_by"] == "drift-7"
    cached = {p.stem for p in Path(root, "items").rglob("*.jsonl")}
    assert set(last_two) <= cached and len(cached) == 3
    rest = build_dataset(release1, root, ExtractiveGenerator())
    assert rest["chunks_generated"] == s["chunks_total"] - 3 and rest["chunks_pending"] == 0
    assert rest["dataset_hash"] == build_dataset(release1, str(tmp_path / "ref"), ExtractiveGenerator())["dataset_hash"]
    steer.write_text(json.dumps({"drift_event": 7}))
    with pytest.raises(InputDataError, match="drift_event"):
        build_dataset(release1, root, ExtractiveGenerator(), steer_uri=str(steer))


def test_cli_build_and_training_reads_the_train_split(release1, tmp_path, capsys):
    summary_path = tmp_path / "summary.json"
    assert main(["dataset", "build", "--corpus", release1, "--out", str(tmp_path / "ds"),
                 "--summary-json", str(summary_path)]) == 0
    summary = json.loads(summary_path.read_text())
    for key in ["dataset_uri", "dataset_hash", "snapshot_id", "generator", "generator_version", "rows_train",
                "rows_eval", "rows_eval_new", "rows_eval_retained", "items_generated", "items_reused",
                "chunks_new", "chunks_deleted", "chunks_total", "parent_dataset_hash", "steered_by", "seconds"]:
        assert key in summary, key
    assert json.loads(capsys.readouterr().out)["dataset_hash"] == summary["dataset_hash"]
    manifest = json.loads((Path(summary["dataset_uri"]) / "dataset.json").read_text())
    assert manifest["snapshot_id"] == summary["snapshot_id"] and manifest["generator"] == "extractive"
    assert manifest["documents"] and manifest["parent_dataset_hash"] is None
    # llmops train --set dataset=<dataset_uri> reads the train split only.
    files = dataset_files(summary["dataset_uri"])
    assert files == [str(Path(summary["dataset_uri"]) / "train" / "part-00000.parquet")]
    data = read_dataset(summary["dataset_uri"])
    assert len(data.rows) == summary["rows_train"]
    assert all(r["split"] == "train" and r["prompt"] and r["completion"] for _, r in data.rows)
    lineage = dataset_version(summary["dataset_uri"])
    assert lineage["dataset_hash"] == summary["dataset_hash"] and lineage["snapshot_id"] == summary["snapshot_id"]
    assert lineage["generator"] == "extractive" and dataset_version(files[0]) is None
    (Path(summary["dataset_uri"]) / "train" / "part-00000.parquet").unlink()
    with pytest.raises(InputDataError, match="no training rows"):
        dataset_files(summary["dataset_uri"])


def test_bad_inputs_name_what_is_wrong(tmp_path):
    assert main(["dataset", "build", "--corpus", str(tmp_path / "nothing"), "--out", str(tmp_path / "ds")]) == 2


def test_a_dataset_root_on_s3_trains_and_rebuilds(release1, s3_bucket, tmp_path):
    root = f"s3://{s3_bucket}/datasets"
    first = build_dataset(release1, root, ExtractiveGenerator())
    assert first["dataset_uri"] == f"{root}/versions/{first['dataset_hash']}"
    again = build_dataset(release1, root, ExtractiveGenerator())
    assert again["dataset_hash"] == first["dataset_hash"] and again["items_generated"] == 0
    assert len(read_dataset(first["dataset_uri"]).rows) == first["rows_train"]
    local = build_dataset(release1, str(tmp_path / "ds"), ExtractiveGenerator())
    assert local["dataset_hash"] == first["dataset_hash"]


def test_a_writer_that_lost_its_lease_writes_no_version_and_no_pointer(tmp_path):
    from llmops.exceptions import LeaseLost

    processed = write_processed(write_corpus(tmp_path / "corpus", release=1), tmp_path / "processed")
    root = tmp_path / "ds"

    def lost() -> None:
        raise LeaseLost("the lease on the dataset root was taken over")

    with pytest.raises(LeaseLost):
        build_dataset(processed, str(root), ExtractiveGenerator(), before_write=lost)
    assert not (root / "latest.json").exists() and not (root / "versions").exists()
    calls: list[int] = []
    build_dataset(processed, str(root), ExtractiveGenerator(), before_write=lambda: calls.append(1))
    assert calls == [1, 1] and (root / "latest.json").exists()
