"""The project's own sample data: documentation of a fictional product, Larkspur.

Larkspur is an invented message broker made of components (Beacon, Harbor, Relay, ...). Every fact about
it (a component's default port, its wire protocol, the team that owns it, the release that introduced it,
the command that restarts it) is generated here from a fixed seed, so the data is deterministic,
belongs to the project, and cannot have been seen by any pretrained model. The same facts feed:

- the RAG corpus (`corpus/`: Markdown with front matter, reStructuredText, HTML, plain text and a PDF),
- the fine-tuning set (`finetune.jsonl`: prompt/completion rows and chat rows),
- the evaluation tasks (multiple choice and short-answer questions on the same facts),

so a fine-tuned model can be shown to have learned something the base model could not know.
"""

from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

from llmops.dataset.build import prompt_for

PRODUCT = "Larkspur"
SEED = 20261123

COMPONENTS = [
    "Beacon", "Harbor", "Relay", "Quarry", "Lantern", "Spindle", "Marrow", "Thicket",
    "Gantry", "Bellows", "Cinder", "Drumlin", "Eddy", "Fathom", "Gossamer", "Hollow",
    "Inkwell", "Juniper", "Kestrel", "Lattice", "Millrace", "Nettle", "Oriel", "Parapet",
]
ROLES = [
    "routes messages between partitions", "stores message segments on disk",
    "replicates segments to follower nodes", "compacts old segments", "exposes health metrics",
    "schedules delayed deliveries", "balances consumer groups", "validates message schemas",
    "encrypts data at rest", "throttles noisy producers", "tracks consumer offsets",
    "mirrors topics across regions", "expires retained messages", "collects audit events",
    "indexes message keys", "batches small writes", "authenticates clients", "serves the admin API",
    "rebuilds indexes after a crash", "forwards dead letters", "samples traffic for tracing",
    "manages partition leases", "deduplicates retried publishes", "snapshots cluster metadata",
]
PROTOCOLS = ["gRPC", "QUIC", "AMQP", "MQTT", "HTTP/2", "WebSocket", "Thrift", "ZeroMQ"]
TEAMS = ["Heron", "Osprey", "Wren", "Plover", "Starling", "Kingfisher", "Curlew", "Avocet"]
RELEASES = ["1.2", "1.4", "1.7", "2.0", "2.3", "2.5", "3.1", "3.4"]
VERBS = ["restart", "reload", "drain", "resync"]
FLAGS = ["--graceful", "--force", "--drain-first", "--no-wait", "--verify", "--quiet"]
ATTRIBUTES = ("port", "protocol", "team", "release", "command")

RELEASE_2_COMPONENTS = [
    "Quillon", "Rookery", "Sextant", "Tamarack", "Umbra", "Vesper",
    "Wicket", "Yarrow", "Zenith", "Arbor", "Buttress", "Coppice",
]
RELEASE_2_ROLES = [
    "compresses cold segments", "routes admin webhooks", "measures replication lag",
    "quotas tenant storage", "shadows production traffic", "signs released artifacts",
    "rotates TLS certificates", "caches schema lookups", "replays archived topics",
    "limits connection storms", "exports billing usage", "prunes orphaned consumers",
]
RELEASE_2_VERSION = "4.0"
RELEASES_OF_SAMPLE = (1, 2)
"""`llmops sample-data --release N`: release 1 is the original corpus; release 2 adds documents for new
components (new facts the model of release 1 cannot know) and updates the release notes, the FAQ and the
glossary to cover them, as a real release would: a new fact is then stated in more than one document, so
a model can learn it from one place and be asked about it from another (never the same item)."""


@dataclass(frozen=True)
class Fact:
    """One fact about one component, with the question that asks for it and plausible wrong answers."""

    component: str
    attribute: str
    answer: str
    question: str
    distractors: tuple[str, ...]

    @property
    def fact_id(self) -> str:
        return f"{self.component.lower()}.{self.attribute}"


@dataclass(frozen=True)
class Component:
    name: str
    role: str
    port: str
    protocol: str
    team: str
    release: str
    command: str


def components() -> list[Component]:
    """The fictional product's components, generated deterministically from `SEED`."""
    rng = random.Random(SEED)
    ports = rng.sample(range(4100, 9900), len(COMPONENTS))
    out = []
    for i, name in enumerate(COMPONENTS):
        verb = rng.choice(VERBS)
        flag = rng.choice(FLAGS)
        out.append(
            Component(
                name=name,
                role=ROLES[i],
                port=str(ports[i]),
                protocol=rng.choice(PROTOCOLS),
                team=f"Team {rng.choice(TEAMS)}",
                release=rng.choice(RELEASES),
                command=f"lark {name.lower()} {verb} {flag}",
            )
        )
    return out


QUESTIONS = {
    "port": "What is the default port of the {product} {name} service?",
    "protocol": "Which protocol does {product} {name} speak?",
    "team": "Which team maintains {product} {name}?",
    "release": "In which {product} release was {name} introduced?",
    "command": "Which command restarts {product} {name} safely?",
}

PARAPHRASES = {
    "port": [
        "On which port does {product} {name} listen by default?",
        "{product} {name} default port?",
    ],
    "protocol": [
        "What wire protocol is used by {product} {name}?",
        "{product} {name} protocol?",
    ],
    "team": [
        "Who owns the {product} {name} component?",
        "{product} {name} owning team?",
    ],
    "release": [
        "Since which version does {product} ship {name}?",
        "{product} {name} first release?",
    ],
    "command": [
        "How do you restart {product} {name} without losing messages?",
        "{product} {name} safe restart command?",
    ],
}


def release_components(release: int) -> list[Component]:
    """The components whose documents land with `release` (release 1: `components()`)."""
    if release == 1:
        return components()
    if release != 2:
        raise ValueError(f"release {release}: the sample product has releases {RELEASES_OF_SAMPLE}")
    rng = random.Random(SEED + 20)
    taken = {int(c.port) for c in components()}
    ports = [p for p in rng.sample(range(4100, 9900), 64) if p not in taken]
    out = []
    for i, name in enumerate(RELEASE_2_COMPONENTS):
        out.append(
            Component(
                name=name,
                role=RELEASE_2_ROLES[i],
                port=str(ports[i]),
                protocol=rng.choice(PROTOCOLS),
                team=f"Team {rng.choice(TEAMS)}",
                release=RELEASE_2_VERSION,
                command=f"lark {name.lower()} {rng.choice(VERBS)} {rng.choice(FLAGS)}",
            )
        )
    return out


def facts() -> list[Fact]:
    """Every fact, with three distractors drawn from the same attribute's other values."""
    comps = components()
    rng = random.Random(SEED + 1)
    out: list[Fact] = []
    for comp in comps:
        for attr in ATTRIBUTES:
            answer = getattr(comp, attr)
            pool = sorted({getattr(c, attr) for c in comps} - {answer})
            if attr == "protocol":
                pool = sorted(set(PROTOCOLS) - {answer})
            elif attr == "team":
                pool = sorted({f"Team {t}" for t in TEAMS} - {answer})
            elif attr == "release":
                pool = sorted(set(RELEASES) - {answer})
            distractors = tuple(rng.sample(pool, 3))
            out.append(
                Fact(
                    component=comp.name,
                    attribute=attr,
                    answer=answer,
                    question=QUESTIONS[attr].format(product=PRODUCT, name=comp.name),
                    distractors=distractors,
                )
            )
    return out


# --- documents ---------------------------------------------------------------------------------------


def _component_markdown(c: Component, rng: random.Random) -> str:
    sentences = [
        f"{PRODUCT} {c.name} {c.role}.",
        f"It is maintained by {c.team} and was introduced in {PRODUCT} {c.release}.",
    ]
    rng.shuffle(sentences)
    return f"""---
title: "{PRODUCT} {c.name}"
weight: {(COMPONENTS + RELEASE_2_COMPONENTS).index(c.name) + 1}
owner: "{c.team}"
---

# {PRODUCT} {c.name}

{" ".join(sentences)} Operators usually meet {c.name} when they size a cluster or read
its dashboards, because every broker node runs one {c.name} process.

## Networking

By default {c.name} listens on port {c.port}. Clients and peer nodes talk to it over {c.protocol}.
Change the port with the `{c.name.lower()}.port` key in `larkspur.toml`; the protocol cannot be changed.

## Operations

To restart {c.name} safely, run `{c.command}`. The command waits until in-flight messages are
acknowledged before the process stops, so no message is lost.

| setting | value |
|---|---|
| default port | {c.port} |
| protocol | {c.protocol} |
| maintainer | {c.team} |
| introduced in | {PRODUCT} {c.release} |
"""


def _release_notes_rst(comps: list[Component]) -> str:
    lines = [f"{PRODUCT} release notes", "=" * (len(PRODUCT) + 14), ""]
    releases = set(RELEASES) | {c.release for c in comps}
    for release in sorted(releases, key=lambda r: tuple(int(x) for x in r.split("."))):
        new = [c for c in comps if c.release == release]
        title = f"{PRODUCT} {release}"
        lines += [title, "-" * len(title), ""]
        if new:
            for c in new:
                lines.append(f"* New component: **{c.name}**, which {c.role} (maintained by {c.team}).")
        else:
            lines.append("* Bug fixes and performance improvements only.")
        lines.append("")
    return "\n".join(lines)


def _faq_html(comps: list[Component]) -> str:
    items = "\n".join(
        f"    <dt>Which protocol does {c.name} use?</dt>\n    <dd>{c.name} speaks <b>{c.protocol}</b> "
        f"on port {c.port}.</dd>"
        for c in comps
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head><title>{PRODUCT} FAQ</title><style>dt {{ font-weight: bold; }}</style>
<script>window.analytics = "not part of the text";</script></head>
<body>
  <h1>{PRODUCT} frequently asked questions</h1>
  <p>Answers to the questions operators ask most about {PRODUCT} components.</p>
  <dl>
{items}
  </dl>
</body>
</html>
"""


def _glossary_txt(comps: list[Component]) -> str:
    lines = [f"{PRODUCT} glossary", ""]
    for c in comps:
        lines.append(f"{c.name}: the {PRODUCT} component that {c.role}. Owner: {c.team}.")
    lines += ["", f"Broker node: a machine that runs every {PRODUCT} component once."]
    return "\n".join(lines) + "\n"


def _pdf_escape(text: str) -> str:
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def minimal_pdf(lines: list[str]) -> bytes:
    """A small, valid one-page PDF with the given text lines (Helvetica), written without a library."""
    content = ["BT", "/F1 11 Tf", "14 TL", "50 780 Td"]
    for line in lines:
        content.append(f"({_pdf_escape(line)}) Tj T*")
    content.append("ET")
    stream = "\n".join(content).encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 842] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for i, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


def _handbook_pdf(comps: list[Component]) -> bytes:
    lines = [f"{PRODUCT} operations handbook", "", "Safe restart commands for every component:", ""]
    lines += [f"{c.name}: {c.command}" for c in comps]
    return minimal_pdf(lines)


def corpus_documents(release: int = 1) -> dict[str, bytes]:
    """Relative path -> bytes of every sample document of releases 1..`release`.

    Release 1 is the original corpus (byte for byte). Release 2 adds one page per new component and
    rewrites the release notes, the FAQ and the glossary to cover them too; the other release-1 documents
    (the component pages and the operations handbook) stay as they were.
    """
    if release not in RELEASES_OF_SAMPLE:
        raise ValueError(f"release {release}: the sample product has releases {RELEASES_OF_SAMPLE}")
    comps = components()
    rng = random.Random(SEED + 2)
    docs: dict[str, bytes] = {}
    for c in comps:
        docs[f"components/{c.name.lower()}.md"] = _component_markdown(c, rng).encode()
    docs["release-notes.rst"] = _release_notes_rst(comps).encode()
    docs["faq.html"] = _faq_html(comps).encode()
    docs["glossary.txt"] = _glossary_txt(comps).encode()
    docs["operations-handbook.pdf"] = _handbook_pdf(comps)
    if release >= 2:
        new = release_components(2)
        rng2 = random.Random(SEED + 21)
        for c in new:
            docs[f"components/{c.name.lower()}.md"] = _component_markdown(c, rng2).encode()
        docs["release-notes.rst"] = _release_notes_rst(comps + new).encode()
        docs["faq.html"] = _faq_html(comps + new).encode()
        docs["glossary.txt"] = _glossary_txt(comps + new).encode()
    return docs


# --- fine-tuning rows --------------------------------------------------------------------------------


def finetune_rows() -> list[dict]:
    """Prompt/completion rows for every fact and paraphrase, plus chat rows for the canonical question."""
    rows: list[dict] = []
    comps = {c.name: c for c in components()}
    for fact in facts():
        c = comps[fact.component]
        questions = [fact.question] + [
            p.format(product=PRODUCT, name=c.name) for p in PARAPHRASES[fact.attribute]
        ]
        for q in questions:
            rows.append({"prompt": prompt_for(q), "completion": f" {fact.answer}", "fact_id": fact.fact_id})
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": fact.question},
                    {"role": "assistant", "content": fact.answer},
                ],
                "fact_id": fact.fact_id,
            }
        )
    random.Random(SEED + 3).shuffle(rows)
    return rows


def write_sample_data(out: Path, release: int = 1) -> dict:
    """Write `out/corpus/` (the documents of releases 1..`release`) and `out/finetune.jsonl` (release 1's
    facts, as before); return a summary of what was written."""
    out = Path(out)
    corpus = out / "corpus"
    documents = corpus_documents(release)
    for rel, data in documents.items():
        path = corpus / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    rows = finetune_rows()
    (out / "finetune.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in rows))
    (out / "facts.json").write_text(json.dumps([asdict(f) for f in facts()], indent=1) + "\n")
    return {
        "corpus_dir": str(corpus),
        "documents": len(documents),
        "release": release,
        "finetune_jsonl": str(out / "finetune.jsonl"),
        "finetune_rows": len(rows),
        "facts": len(facts()),
    }
