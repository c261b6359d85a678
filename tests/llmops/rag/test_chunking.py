"""Chunker properties on real documents: full coverage, configured overlap, token limit, deterministic ids."""

from __future__ import annotations

import itertools

import pytest

from llmops.dev.sample_data import corpus_documents
from llmops.exceptions import ConfigError
from llmops.rag.chunking import ChunkingConfig, chunk_document, count_tokens, load_tokenizer
from llmops.rag.extract import extract
from tests.conftest import require_shared
from tests.rag_helpers import CORPUS

MODEL = "all-MiniLM-L6-v2"
K8S = [
    "concepts/workloads/pods/_index.md",
    "concepts/workloads/pods/init-containers.md",
    "concepts/containers/images.md",
]


@pytest.fixture(scope="module")
def documents():
    require_shared("corpus")
    docs = [extract(p, (CORPUS / "k8s-docs" / p).read_bytes()) for p in K8S]
    docs += [extract(name, data) for name, data in corpus_documents().items() if name.endswith((".rst", ".html"))]
    return docs


@pytest.mark.parametrize(("size", "overlap"), [(200, 32), (64, 0), (40, 20)])
def test_chunks_cover_everything_within_the_limit_with_the_configured_overlap(documents, size, overlap):
    cfg = ChunkingConfig(size, overlap, MODEL)
    tok = load_tokenizer(MODEL)
    for doc in documents:
        enc = tok.encode(doc.text, add_special_tokens=False)
        n_tokens, offsets, word_ids = len(enc.ids), enc.offsets, enc.word_ids  # (each access copies)
        chunks = chunk_document(doc, cfg)
        assert chunks, "every document with text gives chunks"
        covered = set()
        for c in chunks:
            assert c.text == doc.text[c.char_start:c.char_end]
            # Re-tokenizing the chunk text alone gives the same count, never above the limit.
            assert count_tokens(c.text, MODEL) == c.n_tokens <= size
            covered.update(range(c.token_start, c.token_end))
        assert covered == set(range(n_tokens)), "every token is in some chunk"
        heading_starts = {
            i for i, (s, _) in enumerate(offsets)
            if any(sec.start == s and sec.heading for sec in doc.sections[1:])
        }
        for a, b in itertools.pairwise(chunks):
            assert a.token_start < b.token_start <= a.token_end
            if b.token_start in heading_starts:
                continue  # sections do not bleed into each other: no overlap across a heading
            # Otherwise exactly `overlap` tokens are shared, moved back to the start of the word holding
            # token (end - overlap) when that token is inside a word.
            first = a.token_end - overlap
            word_start = first
            while word_start > 0 and word_ids[word_start - 1] == word_ids[first] and \
                    offsets[word_start - 1][1] == offsets[word_start][0]:
                word_start -= 1
            # (Never back to the previous chunk's start: progress wins over word boundaries.)
            assert b.token_start in (first, max(word_start, a.token_start + 1)), (a.token_end - b.token_start, overlap)


def test_sections_are_respected(documents):
    doc = documents[0]  # the Pods page: several "##" sections
    chunks = chunk_document(doc, ChunkingConfig(200, 32, MODEL))
    starts = {s.start for s in doc.sections if s.heading}
    # Most chunks start at a heading or inside the previous chunk (overlap), never mid-section from nowhere.
    for a, b in itertools.pairwise(chunks):
        assert b.char_start < a.char_end or b.char_start in starts
    assert any(c.heading_path.endswith("What is a Pod?") for c in chunks)


def test_ids_are_deterministic_and_depend_on_text_and_config(documents):
    doc = documents[1]
    a = chunk_document(doc, ChunkingConfig(120, 16, MODEL))
    b = chunk_document(doc, ChunkingConfig(120, 16, MODEL))
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert len({c.chunk_id for c in a}) == len(a)
    c = chunk_document(doc, ChunkingConfig(120, 17, MODEL))
    assert not {x.chunk_id for x in a} & {x.chunk_id for x in c if x.text not in {y.text for y in a}}
    same_text = [x for x in c if x.text == a[0].text]
    assert not same_text or same_text[0].chunk_id != a[0].chunk_id, "the config is part of the id"


def test_chunking_config_is_validated():
    with pytest.raises(ConfigError, match="chunk_overlap = 64"):
        ChunkingConfig(64, 64, MODEL)
    with pytest.raises(ConfigError, match="chunk_size = 8"):
        ChunkingConfig(8, 0, MODEL)
