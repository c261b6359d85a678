"""The generator interface: one chunk of the corpus in, question/answer items out.

Two generators implement it: `extractive` (deterministic, no model, the local default) and `teacher`
(an OpenAI-compatible chat endpoint, production). The builder only sees this interface: it caches what
`generate` returns under the generator's config hash, so a change of generator, version or config
regenerates everything and nothing else does.
"""

from __future__ import annotations

import hashlib
import json
import re
import string
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol, runtime_checkable

from llmops.exceptions import ConfigError


@dataclass(frozen=True)
class Chunk:
    """One chunk of the corpus snapshot, as the generator sees it."""

    chunk_id: str
    text: str
    heading_path: str
    doc_id: str
    """The document's source URI, as in the snapshot."""


@dataclass(frozen=True)
class Context:
    """What the builder knows around a chunk: the distractor chunks retrieved for it (RAFT)."""

    distractors: tuple[Chunk, ...] = ()


@dataclass
class Item:
    """One question about one fact of a chunk, with several phrasings (all in the same split).

    `kind` says what was asked (`cloze`, `definition`, `qa`, `passage`); `answer_kind` groups answers
    that can stand in for each other as multiple-choice distractors (`number`, `version`, `command`,
    `name`, `identifier`, `definition`, ...). `trainable_only` items (document passages) never go to eval.
    """

    item_id: str
    kind: str
    answer_kind: str
    questions: list[str]
    answer: str
    evidence: str = ""
    trainable_only: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> Item:
        return cls(**{k: obj[k] for k in obj if k in cls.__dataclass_fields__})


@dataclass
class Generated:
    """What one chunk produced: its items, and the candidates that were quarantined (with a reason)."""

    items: list[Item] = field(default_factory=list)
    quarantined: list[dict[str, Any]] = field(default_factory=list)
    calls: int = 0
    """Paid calls (teacher requests) this generation made; 0 for a deterministic generator."""


@runtime_checkable
class Generator(Protocol):
    name: str
    version: str
    needs_distractors: bool
    """Whether the builder must retrieve distractor chunks for `Context` (costs the embeddings)."""
    max_workers: int
    """Chunks generated at the same time (a thread pool); 1 for CPU-bound generators."""

    def config(self) -> dict[str, Any]:
        """Everything that changes the output (never a secret): part of the cache key."""
        ...

    def generate(self, chunk: Chunk, context: Context) -> Generated: ...


def config_hash(generator: Generator) -> str:
    """16 hex of sha256 over the generator's name, version and config: the item cache's folder name."""
    payload = json.dumps(
        {"name": generator.name, "version": generator.version, "config": generator.config()}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


def item_id(*parts: str) -> str:
    """A content id: the same question about the same span is the same item wherever it is found."""
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()[:20]


_PUNCT = re.compile(f"[{re.escape(string.punctuation)}]")


def normalise(text: str) -> str:
    """Lowercase, strip punctuation, collapse whitespace: how prompts are compared across splits."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


GENERATORS = ("extractive", "teacher")


def make_generator(name: str, **options: Any) -> Generator:
    """The generator called `name` (`extractive` or `teacher`), configured by `options`."""
    if name == "extractive":
        from llmops.dataset.extractive import ExtractiveGenerator

        return ExtractiveGenerator(**options)
    if name == "teacher":
        from llmops.dataset.teacher import TeacherGenerator

        return TeacherGenerator.from_env(**options)
    raise ConfigError(f"--generator {name!r}: unknown generator; use one of {', '.join(GENERATORS)}")
