"""The drift benchmark's pieces: paragraph units, splits, the Evidently baseline, the figures it prints."""

from __future__ import annotations

import numpy as np
import pytest

from llmops.drift import bench


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
    base = rng.normal(size=(400, 8)).astype(np.float32)
    other = (rng.normal(size=(100, 8)) + 3.0).astype(np.float32)
    monkeypatch.setattr(bench, "corpus_embeddings", lambda name, *_: base if name == "k8s-docs" else other)
    cfg = bench.BenchConfig(splits=50, sizes=(30,), shifts=(0.3,), timing_sizes=(50,), permutations=99,
                            evidently=False)
    out = bench.run_bench(cfg, load_settings())
    assert out["false_alarm_rate"] <= 0.15
    assert out["power"] >= 0.9
    assert out["seconds_300_vs_300"] is None and out["timings"]["50"]["ours_s"] > 0
    assert {r["shift"] for r in out["results"]} == {0.0, 0.3}
    assert "per side" in bench.text_summary(out)
