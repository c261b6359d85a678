"""`llmops drift` and `llmops sample-traffic` as the acceptance checks call them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmops.cli import main

END = "2026-11-23T12:00:00Z"


def _traffic(out: Path, kind: str, n: int, seed: int = 5) -> Path:
    assert main(["sample-traffic", "--out", str(out), "--kind", kind, "--n", str(n), "--seed", str(seed),
                 "--end", END]) == 0
    return out


def test_sample_traffic_is_deterministic_and_documented_format(tmp_path):
    a = _traffic(tmp_path / "a", "in-domain", 30) / "traffic-in-domain-5.jsonl"
    b = _traffic(tmp_path / "b", "in-domain", 30) / "traffic-in-domain-5.jsonl"
    assert a.read_text() == b.read_text()
    rows = [json.loads(x) for x in a.read_text().splitlines()]
    assert len(rows) == 30 and rows[-1]["timestamp"] == END
    assert all("Larkspur" in r["prompt"] and r["model"] for r in rows)
    ood = [json.loads(x) for x in (_traffic(tmp_path / "c", "out-of-domain", 30) / "traffic-out-of-domain-5.jsonl")
           .read_text().splitlines()]
    assert not any("Larkspur" in r["prompt"] for r in ood)


def test_not_enough_data_exits_4_and_still_reports(sample_dir, tmp_path, capsys):
    current = _traffic(tmp_path / "traffic", "in-domain", 12)
    report = tmp_path / "reports" / "r1"
    args = ["drift", "--reference", str(sample_dir / "finetune.jsonl"), "--current", str(current),
            "--report", str(report), "--min-samples", "50", "--no-mlflow"]
    assert main(args) == 4
    rep = json.loads((report / "report.json").read_text())
    assert (rep["status"], rep["drift"], rep["n_current"], rep["p_value_mmd"]) == ("not_enough_data", False, 12, None)
    assert "not enough data" in rep["reason"]
    assert (report / "report.html").exists()
    capsys.readouterr()
    # The DAG's flag: the verdict travels in the summary, the exit code is 0.
    summary = tmp_path / "summary.json"
    assert main([*args, "--exit-zero", "--summary-json", str(summary)]) == 0
    assert json.loads(summary.read_text())["status"] == "not_enough_data"


def test_missing_reference_is_an_error(tmp_path, capsys):
    code = main(["drift", "--reference", str(tmp_path / "missing.jsonl"), "--current", str(tmp_path),
                 "--report", str(tmp_path / "r"), "--no-mlflow"])
    assert code == 2
    assert "missing.jsonl does not exist" in capsys.readouterr().err


def test_bad_settings_are_named(tmp_path, capsys):
    code = main(["drift", "--reference", "x", "--current", "y", "--report", str(tmp_path / "r"),
                 "--alpha", "0.01", "--permutations", "50", "--no-mlflow"])
    assert code == 2
    assert "permutations" in capsys.readouterr().err


def _index(out: Path) -> Path:
    """A small preprocessing output (manifest + Milvus Lite collection, the real embedding model): two
    cooking chunks and two Larkspur chunks."""
    import numpy as np

    from llmops.embedding import embed
    from llmops.rag.vector_store import VectorStore

    texts = {
        "cook-1": "Roast vegetables such as carrots and parsnips in a hot oven until golden, turning them once.",
        "cook-2": "Bake bread, pies and focaccia; swap butter, eggs or cream for what the recipe needs.",
        "lark-1": "The Larkspur Beacon service listens on a configurable port and reports its health.",
        "lark-2": "Larkspur components are configured with a YAML file; restart the relay after changes.",
    }
    vectors = embed(list(texts.values()), "all-MiniLM-L6-v2")
    out.mkdir(parents=True)
    store = str(out / "milvus.db")
    with VectorStore(store, "chunks") as vs:
        vs.ensure(vectors.shape[1])
        vs.upsert({"chunk_id": cid, "embedding": np.asarray(v), "source": f"{cid[:4]}.md", "doc_hash": "h",
                   "heading_path": "", "chunk_index": 0, "char_start": 0, "char_end": len(t), "text": t}
                  for (cid, t), v in zip(texts.items(), vectors, strict=True))
    (out / "manifest.json").write_text(json.dumps({
        "schema_version": 1, "snapshot_id": "s1", "embedding_model": "all-MiniLM-L6-v2",
        "vector_store": {"uri": store, "collection": "chunks"},
    }))
    return out


@pytest.mark.slow
def test_in_domain_is_calm_out_of_domain_is_drift(sample_dir, tmp_path, data_root):
    reference = str(sample_dir / "finetune.jsonl")
    reports = tmp_path / "reports"
    common = ["--reference", reference, "--min-samples", "30", "--permutations", "299"]

    code = main(["drift", *common, "--current", str(_traffic(tmp_path / "in", "in-domain", 80)),
                 "--report", str(reports / "1-in"), "--no-mlflow"])
    calm = json.loads((reports / "1-in" / "report.json").read_text())
    assert code == 0, calm
    assert calm["drift"] is False and calm["p_value"] > 0.05
    assert (calm["n_reference"], calm["n_current"]) == (480, 80)
    # The demo's in-domain traffic replays the fine-tuning questions: all of it is covered.
    assert calm["uncovered_share"] <= calm["expected_share"] and calm["steer_uri"] is None

    index = _index(tmp_path / "index")
    code = main(["drift", *common, "--current", str(_traffic(tmp_path / "out", "out-of-domain", 80)),
                 "--report", str(reports / "2-out"), "--until", END, "--index", str(index)])
    rep = json.loads((reports / "2-out" / "report.json").read_text())
    assert code == 3, rep
    assert rep["drift"] is True and rep["p_value"] <= 0.05
    assert rep["uncovered_share"] > 0.9 and rep["excess"] >= rep["min_effect"]
    # The descriptive distribution tests agree on a different domain.
    assert rep["p_value_mmd"] <= 0.05 and rep["p_value_classifier"] <= 0.05
    assert rep["signals"]["oov_rate"]["current_vs_reference"] > 0.3
    # Uncovered cooking questions, grouped; every group's nearest chunk is a cooking chunk of the index.
    assert rep["groups"] and sum(g["size"] for g in rep["groups"]) <= 80
    assert all(g["nearest_chunks"][0]["chunk_id"].startswith("cook") for g in rep["groups"])
    steer = json.loads((reports / "2-out" / "steer.json").read_text())
    assert rep["steer_uri"] == str(reports / "2-out" / "steer.json")
    assert steer["drift_event"] == rep["drift_event"] == "drift-20261123T120000Z"
    assert steer["chunk_ids"][0].startswith("cook") and len(steer["chunk_ids"]) == len(set(steer["chunk_ids"]))
    assert set(steer) == {"drift_event", "chunk_ids", "created"}
    html = (reports / "2-out" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2  # projection and history
    assert "Drift detected" in html and "Uncovered traffic, grouped" in html

    from mlflow.tracking import MlflowClient

    from llmops.settings import load_settings

    client = MlflowClient(tracking_uri=load_settings().mlflow_tracking)
    run = client.get_run(rep["mlflow_run_id"])
    assert run.data.metrics["drift"] == 1.0
    assert run.data.metrics["p_value_mmd"] == pytest.approx(rep["p_value_mmd"])
    assert {a.path for a in client.list_artifacts(rep["mlflow_run_id"], "drift")} == {
        "drift/report.json", "drift/report.html", "drift/steer.json",
    }


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "seed", "code"), [("in-domain", 1, 0), ("out-of-domain", 2, 3), ("out-of-domain", 3, 3)])
def test_demo_traffic_gets_the_demo_verdicts(sample_dir, tmp_path, kind, seed, code):
    """The demo's three drift checks (llmops/dev/demo.py: 300 requests of `sample-traffic` with these seeds
    against finetune.jsonl, default settings): in-domain is covered, out-of-domain is drift."""
    report = tmp_path / "r"
    traffic = tmp_path / "t"
    assert main(["sample-traffic", "--out", str(traffic), "--kind", kind, "--seed", str(seed), "--end", END]) == 0
    got = main(["drift", "--reference", str(sample_dir / "finetune.jsonl"), "--current", str(traffic),
                "--report", str(report), "--no-mlflow", "--until", END])
    rep = json.loads((report / "report.json").read_text())
    assert got == code, rep
    assert rep["n_current"] == 300
    if code == 0:
        assert rep["excess"] < rep["min_effect"] and rep["groups"] == []
    else:
        assert rep["excess"] > 0.5 and rep["p_value"] <= 0.01
