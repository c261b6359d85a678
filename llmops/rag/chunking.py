"""Token-aware chunking that respects headings, paragraphs and sentences where it can.

Chunks are measured in tokens of the embedding model's own tokenizer (special tokens excluded), so a
chunk never exceeds what the model encodes without truncation. The text is tokenized once; each
chunk then ends at the best boundary inside the window `(start + max(overlap, size/2), start + size]`:

    heading  >  page break  >  paragraph  >  line break  >  sentence end  >  word start

(the latest one of the strongest kind found), never inside a word unless a single "word" is longer
than the window. The next chunk starts `chunk_overlap` tokens before the end of the previous one,
moved back to the start of a word, except after a heading: sections do not bleed into each other.
Small sections are packed together rather than emitted as tiny chunks.

Chunk ids are derived from the chunk text and the chunking config (tokenizer, size, overlap) only, so
identical text gives an identical id: that is what removes exact duplicates and makes upserts idempotent.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import json
from dataclasses import dataclass

from llmops.exceptions import ConfigError
from llmops.rag.extract import Extracted

# Strength of a cut placed just before a token.
HEADING, PAGE, PARAGRAPH, LINE, SENTENCE, WORD, INSIDE_WORD = 6, 5, 4, 3, 2, 1, -1
_SENTENCE_END = {".", "!", "?", ":", ";"}


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are cut. Part of every chunk id, recorded in the manifest for lineage."""

    chunk_size: int
    """Most tokens in one chunk (the embedding tokenizer's tokens, special tokens excluded)."""
    chunk_overlap: int
    """Tokens repeated at the start of the next chunk of the same section."""
    tokenizer: str
    """The embedding model whose tokenizer counts tokens."""

    def __post_init__(self) -> None:
        if not 16 <= self.chunk_size <= 8192:
            raise ConfigError(f"chunk_size = {self.chunk_size}: must be between 16 and 8192 tokens")
        if not 0 <= self.chunk_overlap < self.chunk_size:
            raise ConfigError(
                f"chunk_overlap = {self.chunk_overlap}: must be at least 0 and smaller than "
                f"chunk_size ({self.chunk_size})"
            )
        if not self.tokenizer:
            raise ConfigError("tokenizer is empty: give the embedding model name")

    def as_dict(self) -> dict:
        return {"chunk_size": self.chunk_size, "chunk_overlap": self.chunk_overlap, "tokenizer": self.tokenizer}


@dataclass(frozen=True)
class Chunk:
    """One chunk of one document. Offsets index the document's normalized text (`extract`)."""

    chunk_id: str
    text: str
    heading_path: str
    char_start: int
    char_end: int
    token_start: int
    token_end: int
    index: int
    n_tokens: int
    """Tokens of the chunk text on its own (what the embedding model sees), special tokens excluded."""


HEADING_SEPARATOR = " > "


def chunk_id(text: str, config: ChunkingConfig) -> str:
    """128-bit hex id of a chunk: the same text under the same config always gets the same id."""
    payload = json.dumps([config.tokenizer, config.chunk_size, config.chunk_overlap, text], ensure_ascii=False)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()[:32]


@functools.lru_cache(maxsize=4)
def load_tokenizer(model_name: str):
    """The embedding model's fast tokenizer with truncation and padding off (loaded once per process).

    The model's `tokenizer.json` truncates to 128 tokens and pads: fine for encoding, wrong for counting.
    A local model's `tokenizer.json` is loaded with `tokenizers` alone, which skips importing
    transformers (seconds per Spark worker); other models go through transformers' AutoTokenizer.
    """
    from pathlib import Path

    from tokenizers import Tokenizer

    from llmops.embedding import resolve_model_path, tokenizer

    path = Path(resolve_model_path(model_name)) / "tokenizer.json"
    if path.is_file():
        backend = Tokenizer.from_file(str(path))
    else:
        backend = Tokenizer.from_str(tokenizer(model_name).backend_tokenizer.to_str())
    backend.no_truncation()
    backend.no_padding()
    return backend


def count_tokens(text: str, model_name: str) -> int:
    return len(load_tokenizer(model_name).encode(text, add_special_tokens=False).ids)


def _strengths(doc: Extracted, offsets: list[tuple[int, int]], word_ids: list[int | None]) -> list[int]:
    """strength[i] = how good a place it is to cut just before token i (i in 1..n-1)."""
    text = doc.text
    n = len(offsets)
    strength = [INSIDE_WORD] * (n + 1)
    strength[0] = strength[n] = HEADING
    starts = []
    for prev, sec in itertools.pairwise(doc.sections):
        level = HEADING if sec.heading else PAGE
        if sec.heading and prev.heading and "\n\n" not in text[prev.start:sec.start].rstrip("\n"):
            # The previous section is a bare heading ("Profile Details" right above "Privileged"):
            # cutting here would leave that heading dangling at the end of a chunk.
            level = PARAGRAPH
        starts.append((sec.start, level))
    si = 0
    for i in range(1, n):
        prev_end, start = offsets[i - 1][1], offsets[i][0]
        level = INSIDE_WORD
        while si < len(starts) and starts[si][0] <= start:
            if starts[si][0] >= prev_end:
                level = max(level, starts[si][1])
            si += 1
        if level == INSIDE_WORD:
            gap = text[prev_end:start]
            if "\n\n" in gap:
                level = PARAGRAPH
            elif "\n" in gap:
                level = LINE
            elif gap and text[prev_end - 1] in _SENTENCE_END:
                level = SENTENCE
            elif word_ids[i] != word_ids[i - 1] or gap:
                level = WORD
        strength[i] = level
    return strength


def chunk_document(doc: Extracted, config: ChunkingConfig) -> list[Chunk]:
    """Cut one extracted document into chunks (see the module docstring for the rules)."""
    if not doc.text:
        return []
    tok = load_tokenizer(config.tokenizer)
    enc = tok.encode(doc.text, add_special_tokens=False)
    offsets = [tuple(o) for o in enc.offsets]
    word_ids = list(enc.word_ids)
    n = len(offsets)
    if n == 0:
        return []
    strength = _strengths(doc, offsets, word_ids)
    size, overlap = config.chunk_size, config.chunk_overlap
    min_len = max(overlap + 1, size // 2)
    chunks: list[Chunk] = []
    start = 0
    last_heading = 0
    while True:
        limit = min(n, start + size)
        if limit == n:
            end = n
        else:
            end, best = limit, INSIDE_WORD - 1
            for p in range(limit, start + min_len - 1, -1):
                if strength[p] > best:
                    end, best = p, strength[p]
                    if best == HEADING:
                        break
            if best < WORD:
                # One "word" longer than the window (a long URL, base64): cut inside it.
                end = limit
        text = doc.text[offsets[start][0]:offsets[end - 1][1]]
        n_tokens = end - start
        if strength[start] == INSIDE_WORD or strength[end] == INSIDE_WORD:
            # A chunk that starts or ends mid-word tokenizes differently on its own: count it again, and
            # shrink it until it fits.
            n_tokens = count_tokens(text, config.tokenizer)
            while end - start > 1 and n_tokens > size:
                end -= 1
                text = doc.text[offsets[start][0]:offsets[end - 1][1]]
                n_tokens = count_tokens(text, config.tokenizer)
        chunks.append(
            Chunk(
                chunk_id=chunk_id(text, config),
                text=text,
                heading_path=HEADING_SEPARATOR.join(doc.path_at(offsets[start][0])),
                char_start=offsets[start][0],
                char_end=offsets[end - 1][1],
                token_start=start,
                token_end=end,
                index=len(chunks),
                n_tokens=n_tokens,
            )
        )
        if end >= n:
            return chunks
        for p in range(start + 1, end + 1):
            if strength[p] == HEADING:
                last_heading = p
        if strength[end] == HEADING or overlap == 0:
            next_start = end
        else:
            next_start = end - overlap
            while next_start > start + 1 and strength[next_start] == INSIDE_WORD:
                next_start -= 1  # start the overlap at the beginning of a word
            next_start = max(next_start, last_heading)
            if next_start <= start:
                next_start = end - overlap
        start = max(next_start, start + 1)
