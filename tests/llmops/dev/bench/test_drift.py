"""The drift benchmark's pieces: paragraph units, splits, the Evidently baseline, the figures it prints."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.dev.bench import drift as bench
from llmops.exceptions import InputDataError


def test_markdown_paragraphs_drop_front_matter_code_and_shortcodes():
    doc = """---
title: Pods
---
# Pods

Pods are the smallest deployable units of computing that you can create and manage in Kubernetes.

```yaml
apiVersion: v1
kind: Pod
```

{{< note >}}short{{< /note >}}

| a | b |
|---|---|

A Pod (as in a pod of whales or pea pod) is a group of one or more containers, with shared storage.
"""
    paras = bench.markdown_paragraphs(doc)
    assert paras == [
        "Pods are the smallest deployable units of computing that you can create and manage in Kubernetes.",
        "A Pod (as in a pod of whales or pea pod) is a group of one or more containers, with shared storage.",
    ]


def test_splits_are_disjoint_and_shift_replaces_a_share_of_current():
    rng = np.random.default_rng(0)
    ref, cur, other = bench._split(rng, 1000, 50, 100, 0.3)
    assert len(ref) == 100 and len(cur) == 70 and len(other) == 30
    assert not set(ref) & set(cur)


def test_document_split_draws_each_side_from_its_own_half_of_the_documents():
    documents = np.repeat(np.arange(40), 10)  # 40 documents of 10 paragraphs
    ref, cur, other = bench._document_split(np.random.default_rng(1), documents, 50, 60, 0.3)
    assert len(ref) == 60 and len(cur) == 42 and len(other) == 18
    ref_docs, cur_docs = set(documents[ref]), set(documents[cur])
    assert not ref_docs & cur_docs
    assert len(ref_docs) <= 20 and len(cur_docs) <= 20


def test_paragraphs_keep_their_document(tmp_path):
    (tmp_path / "a.md").write_text("A first paragraph that is long enough to count as prose for the drift benchmark of the project.\n\n"
                                   "A second paragraph of the first document, which is also long enough to be counted here.\n")
    (tmp_path / "b.md").write_text("The only paragraph of the second document, which is surely long enough to be counted as well.\n\n"
                                   "A first paragraph that is long enough to count as prose for the drift benchmark of the project.\n")
    paragraphs, documents = bench.corpus_paragraphs_with_documents(tmp_path)
    assert len(paragraphs) == 3 and documents.tolist() == [0, 0, 1]
    assert bench.corpus_paragraphs(tmp_path) == paragraphs


@pytest.mark.slow
def test_evidently_default_method_runs_on_embeddings():
    pytest.importorskip("evidently")
    rng = np.random.default_rng(1)
    same = bench.evidently_drift(rng.normal(size=(120, 16)), rng.normal(size=(120, 16)))
    shifted = bench.evidently_drift(rng.normal(size=(120, 16)), rng.normal(size=(120, 16)) + 2.0)
    assert isinstance(same, bool) and shifted is True
    method = bench.evidently_default_method(300)
    assert type(method).__name__ == "ModelDriftMethod" and method.bootstrap is True


def test_run_bench_reports_every_figure(monkeypatch):
    from llmops.settings import load_settings

    rng = np.random.default_rng(2)
    # 80 documents of 10 paragraphs, each around its own centre; the other corpus in directions of its own.
    centres = rng.normal(size=(80, 8))
    base = np.zeros((800, 16), dtype=np.float32)
    base[:, :8] = np.repeat(centres, 10, axis=0) + 0.3 * rng.normal(size=(800, 8))
    documents = np.repeat(np.arange(80), 10)
    other = np.zeros((100, 16), dtype=np.float32)
    other[:, 8:] = rng.normal(size=(100, 8))
    monkeypatch.setattr(
        bench, "corpus_embeddings",
        lambda name, *_: (base, documents) if name == "k8s-docs" else (other, np.zeros(100, dtype=np.int64)),
    )
    cfg = bench.BenchConfig(base="k8s-docs", other="hf-hub-docs", splits=50, sizes=(100,), shifts=(0.3,), timing_sizes=(50,), resamples=99,
                            permutations=99, evidently=False)
    out = bench.run_bench(cfg, load_settings())
    assert out["false_alarm_rate_document"]["100"] <= 0.15
    assert out["false_alarm_rate_paragraph"]["100"] <= 0.15
    assert out["power"] >= 0.9
    assert out["seconds_300_vs_300"] is None and out["timings"]["50"]["ours_s"] > 0
    assert {(r["null"], r["shift"]) for r in out["results"]} == {("paragraph", 0.0), ("document", 0.0),
                                                                 ("document", 0.3)}
    assert all("distribution_rate" in r for r in out["results"])
    assert "per side" in bench.text_summary(out)


def test_the_benchmark_corpus_is_a_folder_the_caller_names(tmp_path):
    with pytest.raises(InputDataError, match="'missing-corpus' is not a folder"):
        bench.corpus_dir("missing-corpus")
    assert bench.corpus_dir(str(tmp_path)) == tmp_path
