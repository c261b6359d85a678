"""The `teacher` generator against the real vLLM (slow): the project's local server is the teacher's endpoint.

One vLLM server for the module (`llmops.deploy.vllm_serve.VllmServer`, the pinned CPU build from `make vllm`)
serves the tiny base model under the name `teacher`, and the dataset step's generator talks to it through
`/v1/chat/completions` as it would to any OpenAI-compatible endpoint. What is checked, end to end:

- the requests reach the server: its `/metrics` request counters go up by exactly the calls the build paid;
- the budget: a build with `--budget N` makes N calls; the next one continues with N more chunks and pays
  none of the cached ones again (quarantined answers are cached too); `--budget 0` pays nothing;
- the quarantine: the untrained tiny model answers tokens, not the asked-for JSON, so its answers are
  quarantined with reasons and nothing ungrounded reaches the dataset (the build fails naming the
  quarantine and writes no version);
- the HTTP paths: a wrong model name is the server's 404, failed at once (not retried) with the server's
  reason; a server that stalls (its process group stopped, as an overloaded or paused pod) makes the
  request time out, and the retry is answered once it resumes.
  (The 5xx retry is checked against the stand-in server in test_teacher.py: vLLM gives no 5xx on demand.)

The base model is built with 2048 positions: the RAFT prompt (the oracle chunk and its two distractors)
is about 900 tokens, more than the default 512. Skipped, naming what is missing, without the serving
environment or on a CPU vLLM's CPU build cannot run on.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from pathlib import Path

import pytest

from llmops.dataset.build import build_dataset
from llmops.dataset.generators import Chunk, Context, normalise
from llmops.dataset.teacher import TeacherGenerator
from llmops.deploy import vllm_serve
from llmops.deploy.vllm_serve import LocalServer, VllmServer, free_port, parse_metrics
from llmops.exceptions import DatasetError, InputDataError
from llmops.rag.snapshot import read_snapshot

from .conftest import write_corpus, write_processed

pytestmark = pytest.mark.slow

SERVED = "teacher"
REASONS = ("malformed response", "malformed item", "quote not in chunk", "answer not in quote", "answer longer than")


@pytest.fixture(scope="module")
def vllm_teacher(tmp_path_factory):
    """(server, processed corpus URI): one vLLM start (about a minute here) for the whole module."""
    reason = vllm_serve.cpu_unsupported()
    if reason:
        pytest.skip(f"vLLM's CPU build cannot run here: {reason}")
    python = vllm_serve.serving_python()
    if python is None:
        pytest.skip(f"no serving environment at {vllm_serve.venv_dir()}: run `make vllm` (make test does)")
    from llmops.dev.base_model import build_base_model

    tmp = tmp_path_factory.mktemp("teacher-vllm")
    base = build_base_model(tmp / "tiny-llama", pretrain_steps=0, max_positions=2048)
    corpus = write_processed(write_corpus(tmp / "corpus"), tmp / "processed")
    port = free_port()
    local = LocalServer(
        args=[str(base), "--served-model-name", SERVED, "--host", "127.0.0.1", "--port", str(port),
              "--max-model-len", "2048", "--dtype", "float32", "--enforce-eager"],
        env={"VLLM_CPU_KVCACHE_SPACE": vllm_serve.KV_CACHE_GIB}, port=port, translated=[], base_name=SERVED,
    )
    with VllmServer(python, local, tmp / "vllm.log") as server:
        server.wait_ready()
        yield server, corpus


def requests_done(server: VllmServer) -> dict[str, float]:
    m = parse_metrics(server.get("/metrics"))
    return {k: m.get(f"vllm:{k}", 0.0) for k in ("request_success_total", "e2e_request_latency_seconds_count",
                                                 "prompt_tokens_total")}


def teacher(server: VllmServer, model: str = SERVED, **kw) -> TeacherGenerator:
    kw.setdefault("max_tokens", 48)
    kw.setdefault("max_workers", 2)
    kw.setdefault("backoff_s", 0.5)
    return TeacherGenerator(base_url=server.url + "/v1", model=model, **kw)


def cached(root: Path) -> list[dict]:
    """Every record the build cached: items and quarantined candidates, with their chunk id."""
    out = []
    for f in sorted(root.glob("items/*/*.jsonl")):
        for line in f.read_text().splitlines():
            obj = json.loads(line)
            if not obj.get("footer"):
                out.append({"chunk_id": f.stem, **obj})
    return out


def test_budgeted_build_pays_n_calls_and_quarantines_what_is_not_grounded(vllm_teacher, tmp_path):
    server, corpus = vllm_teacher
    text = dict(read_snapshot(corpus, columns=["chunk_id", "text"]).itertuples(index=False))
    root = tmp_path / "ds"
    before = requests_done(server)

    def build(budget: int) -> dict | InputDataError:
        try:
            return build_dataset(corpus, str(root), teacher(server), budget=budget)
        except InputDataError as exc:  # no grounded item at all: nothing may be written
            return exc

    first = build(6)
    after = requests_done(server)
    # Exactly the budget reached the server, each with the RAFT prompt (three documents, hundreds of tokens).
    assert after["request_success_total"] - before["request_success_total"] == 6
    assert after["e2e_request_latency_seconds_count"] - before["e2e_request_latency_seconds_count"] == 6
    assert after["prompt_tokens_total"] - before["prompt_tokens_total"] > 6 * 500
    records = cached(root)
    assert len({r["chunk_id"] for r in records}) == 6
    quarantined = [r["quarantined"] for r in records if "quarantined" in r]
    assert quarantined, "the untrained tiny model wrote grounded JSON items: the test's premise is gone"
    assert all(q["reason"].startswith(REASONS) for q in quarantined), quarantined
    # Whatever was kept is grounded: its quote is in its own chunk, its answer in its quote.
    kept = [r for r in records if "quarantined" not in r]
    for r in kept:
        assert " ".join(r["evidence"].split()) in " ".join(text[r["chunk_id"]].split())
        assert normalise(r["answer"]) in normalise(r["evidence"])
    if kept:
        rows = json.loads((Path(first["dataset_uri"]) / "dataset.json").read_text())
        assert rows["counts"]["items_quarantined"] == len(quarantined)
    else:
        assert isinstance(first, InputDataError) and "quarantined" in str(first), first
        assert not (root / "latest.json").exists() and not list(root.glob("versions/*"))

    # The next build with the same budget continues: N more chunks, none of the cached ones paid again.
    paid = {r["chunk_id"] for r in records}
    build(6)
    again = requests_done(server)
    assert again["request_success_total"] - after["request_success_total"] == 6
    chunks = {r["chunk_id"] for r in cached(root)}
    assert len(chunks) == 12 and paid < chunks
    # Budget 0 pays nothing; the calls the cache footers record are the requests the server answered.
    build(0)
    assert requests_done(server)["request_success_total"] == again["request_success_total"]
    footers = [json.loads(f.read_text().splitlines()[-1]) for f in root.glob("items/*/*.jsonl")]
    assert sum(f["calls"] for f in footers) == again["request_success_total"] - before["request_success_total"]


def test_wrong_model_name_fails_at_once_with_the_servers_reason(vllm_teacher):
    server, _ = vllm_teacher
    slept: list[float] = []
    gen = teacher(server, model="no-such-model", retries=3, sleep=slept.append)
    with pytest.raises(DatasetError, match=r"HTTP 404 .*model `no-such-model` does not exist"):
        gen.generate(Chunk("a", "Beacon listens on port 8816 by default.", "", "x"), Context())
    assert slept == []  # a 4xx is not retried


def test_a_stalled_server_times_out_and_the_retry_is_answered(vllm_teacher, caplog):
    server, _ = vllm_teacher
    before = requests_done(server)["request_success_total"]
    gen = teacher(server, timeout_s=8, retries=3, backoff_s=1.0)
    os.killpg(server.step.pgid, signal.SIGSTOP)
    resume = threading.Timer(10, os.killpg, (server.step.pgid, signal.SIGCONT))
    resume.start()
    try:
        with caplog.at_level(logging.WARNING, logger="llmops.dataset.teacher"):
            out = gen.generate(Chunk("a", "Beacon listens on port 8816 by default.", "", "x"), Context())
    finally:
        resume.cancel()
        os.killpg(server.step.pgid, signal.SIGCONT)
    # The first attempt timed out while the server was stopped; a later one was answered.
    assert out.calls >= 2, out
    assert any("retry 1/3" in r.getMessage() and "timed out" in r.getMessage().lower() for r in caplog.records), \
        [r.getMessage() for r in caplog.records]
    assert out.quarantined or out.items
    assert requests_done(server)["request_success_total"] > before
