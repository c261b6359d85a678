"""The teacher generator against a stand-in OpenAI-compatible server on 127.0.0.1 (the HTTP boundary).

The stand-in answers `/v1/chat/completions` from the oracle document of each request: a question about
its first long line, quoting that line. Chunks are singled out by their text to get a bad quote, an
answer missing from its quote, a malformed response, or a 500 on the first attempt.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from llmops.dataset.build import build_dataset
from llmops.dataset.generators import Chunk, Context, normalise
from llmops.dataset.teacher import TeacherGenerator
from llmops.exceptions import ConfigError, DatasetError
from llmops.rag.snapshot import read_snapshot

REPO = Path(__file__).resolve().parents[3]


def oracle_of(body: dict) -> str:
    user = body["messages"][-1]["content"]
    return re.search(r'<document id="D1">\n(.*?)\n</document>', user, re.S).group(1)


def good_items(oracle: str) -> list[dict]:
    lines = [" ".join(line.split()) for line in oracle.split("\n") if len(line.split()) >= 5]
    line = lines[0] if lines else " ".join(oracle.split()[:8])
    words = line.split()
    answer = words[-1].strip(".,;:")
    q = f"What ends the statement that starts with '{' '.join(words[:3])}'?"
    return [{"question": q, "paraphrases": [q.replace("What ends", "Which word ends"), f"Finish: {words[0]} ..."],
             "answer": answer, "quote": line}]


class Teacher:
    """The stand-in server's behaviour and its ledger of paid (answered with 200) calls per oracle."""

    def __init__(self) -> None:
        self.paid: Counter = Counter()
        self.attempts: Counter = Counter()
        self.lock = threading.Lock()
        self.hold_after: int | None = None
        self.release = threading.Event()
        self.auth: set[str | None] = set()

    def respond(self, body: dict, auth: str | None) -> tuple[int, bytes | None]:
        oracle = oracle_of(body)
        with self.lock:
            self.auth.add(auth)
            self.attempts[oracle] += 1
            first_attempt = self.attempts[oracle] == 1
            hold = self.hold_after is not None and sum(self.paid.values()) >= self.hold_after
        if hold:
            self.release.wait(30)
            return 0, None  # the client was killed meanwhile: nothing is answered, nothing is paid
        if oracle.split("\n", 1)[0] == "Larkspur Harbor" and first_attempt:
            return 500, b'{"error": "overloaded"}'
        if "Which protocol does" in oracle:
            content = "Sure! Here are some questions: 1. What is Beacon?"
        else:
            items = good_items(oracle)
            if "New component:" in oracle:
                items.append({"question": "Who wrote the release notes?", "paraphrases": [],
                              "answer": "Team Nobody", "quote": "Written by Team Nobody."})
                items.append({"question": "What is new?", "paraphrases": [], "answer": "zeppelin",
                              "quote": items[0]["quote"]})
            content = "```json\n" + json.dumps({"items": items}) + "\n```"
        with self.lock:
            self.paid[oracle] += 1
        return 200, json.dumps({"choices": [{"message": {"role": "assistant", "content": content}}]}).encode()


@pytest.fixture
def teacher():
    state = Teacher()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):  # noqa: N802 (http.server's naming)
            assert self.path == "/v1/chat/completions"
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            status, data = state.respond(body, self.headers.get("Authorization"))
            if data is None:
                return
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    yield state
    state.release.set()
    server.shutdown()
    server.server_close()


def make(teacher, **kw) -> TeacherGenerator:
    return TeacherGenerator(base_url=teacher.url, model="stand-in", api_key="sk-test", backoff_s=0.01, **kw)


def test_items_are_grounded_and_bad_ones_quarantined(teacher, release1, tmp_path):
    summary = build_dataset(release1, str(tmp_path / "ds"), make(teacher))
    frame = read_snapshot(release1, columns=["chunk_id", "text", "source"])
    text = dict(zip(frame["chunk_id"], frame["text"], strict=True))
    manifest = json.loads((Path(summary["dataset_uri"]) / "dataset.json").read_text())
    reasons = Counter(q["reason"].split(":")[0] for q in manifest["quarantined"])
    faq_chunks = sum("Which protocol does" in t for t in frame["text"])
    notes_chunks = sum("New component:" in t for t in frame["text"])
    assert faq_chunks >= 2 and notes_chunks >= 2
    assert reasons == {"malformed response": faq_chunks, "quote not in chunk": notes_chunks,
                       "answer not in quote": notes_chunks}
    assert summary["items_quarantined"] == faq_chunks + 2 * notes_chunks
    import pyarrow.dataset as pads

    rows = [r for s in ("train", "eval") for r in
            pads.dataset(f"{summary['dataset_uri']}/{s}", format="parquet").to_table().to_pylist()]
    assert rows and all(r["generator"] == "teacher" and r["kind"] == "qa" for r in rows)
    for r in rows:
        assert normalise(r["answer"]) in normalise(text[r["chunk_id"]])
    # Every chunk was paid once; the Harbor page's chunk took a retry after its 500.
    assert set(teacher.paid.values()) == {1} and len(teacher.paid) == summary["chunks_total"]
    assert sorted(n for n in teacher.attempts.values() if n > 1) == [2]
    assert summary["teacher_calls"] == summary["chunks_total"] + 1
    assert teacher.auth == {"Bearer sk-test"}
    # RAFT: distractors are chunks of other documents.
    assert manifest["generator_config"] == make(teacher).config() and "sk-test" not in json.dumps(manifest)
    # Nothing changed: nothing is paid again.
    again = build_dataset(release1, str(tmp_path / "ds"), make(teacher))
    assert again["dataset_hash"] == summary["dataset_hash"] and set(teacher.paid.values()) == {1}


def test_distractors_come_from_other_documents(teacher):
    gen = make(teacher)
    oracle = Chunk("a", "Line one of the oracle with words.\nSecond line", "", "s3://d/a.md")
    other = Chunk("b", "Another document entirely, with text.", "", "s3://d/b.md")
    out = gen.generate(oracle, Context(distractors=(other,)))
    assert [i.answer for i in out.items] == ["words"] and out.items[0].extra["distractor_chunk_ids"] == ["b"]
    assert len(out.items[0].questions) == 3


def test_endpoint_errors_fail_with_a_clear_message(teacher, monkeypatch):
    gen = TeacherGenerator(base_url="http://127.0.0.1:9/v1", model="m", retries=1, backoff_s=0.0)
    with pytest.raises(DatasetError, match="failed 2 times"):
        gen.generate(Chunk("a", "some text here and more", "", "x"), Context())
    with pytest.raises(ConfigError, match="LLMOPS_TEACHER_BASE_URL"):
        TeacherGenerator.from_env()
    monkeypatch.setenv("LLMOPS_TEACHER_BASE_URL", teacher.url)
    monkeypatch.setenv("LLMOPS_TEACHER_MODEL", "stand-in")
    monkeypatch.setenv("MY_KEY", "sk-env")
    gen = TeacherGenerator.from_env(key_env="MY_KEY")
    assert gen.generate(Chunk("a", "one two three four five six", "", "x"), Context()).items
    assert teacher.auth == {"Bearer sk-env"}
    assert "sk-env" not in json.dumps(gen.config())


def test_a_killed_build_pays_no_call_twice(teacher, release1, tmp_path):
    reference = build_dataset(release1, str(tmp_path / "ref"), make(teacher))
    teacher.paid.clear()
    teacher.attempts.clear()
    root = tmp_path / "ds"
    teacher.hold_after = 8
    env = {**os.environ, "LLMOPS_TEACHER_BASE_URL": teacher.url, "LLMOPS_TEACHER_MODEL": "stand-in",
           "LLMOPS_TEACHER_API_KEY": "sk-test", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-m", "llmops", "dataset", "build", "--corpus", release1,
                             "--out", str(root), "--generator", "teacher", "--teacher-workers", "4"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(list(root.glob("items/*/*.jsonl"))) < 8:
            assert proc.poll() is None and time.monotonic() < deadline, "the build ended or stalled early"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert sum(teacher.paid.values()) == 8 and not (root / "latest.json").exists()
    teacher.hold_after = None
    teacher.release.set()
    resumed = build_dataset(release1, str(root), make(teacher))
    assert set(teacher.paid.values()) == {1} and len(teacher.paid) == resumed["chunks_total"]
    assert resumed["chunks_generated"] == resumed["chunks_total"] - 8
    assert resumed["dataset_hash"] == reference["dataset_hash"]
