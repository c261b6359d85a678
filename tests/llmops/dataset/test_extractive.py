"""The extractive generator on text that has nothing to do with the sample product."""

from __future__ import annotations

from llmops.dataset.extractive import ExtractiveGenerator, salient_spans, topic_of
from llmops.dataset.generators import Chunk, Context, normalise
from llmops.dev.sample_data import corpus_documents

TEXT = """Ingress controller

The controller listens on port 8443 and speaks HTTP/2 to its backends.
To reload it, run kubectl rollout restart --namespace edge. It was added in version 1.19.
The nginx.ingress annotation selects it. It is maintained by Team Falcon.
Traefik, which terminates TLS connections for the cluster, is the default.
Which port does it use?
"""


def generate(text=TEXT, heading="Networking > Ingress controller", passages=True):
    chunk = Chunk("c1", text, heading, "s3://docs/net/ingress-controller.md")
    return ExtractiveGenerator(passages=passages).generate(chunk, Context())


def test_salient_spans_of_a_generic_statement():
    s = "The controller listens on port 8443 and speaks HTTP/2 to Team Falcon since 1.19."
    spans = {s[a:b]: kind for a, b, kind in salient_spans(s)}
    assert spans == {"8443": "number", "HTTP/2": "identifier", "Team Falcon": "name", "1.19": "version"}


def test_cloze_and_definition_items_from_any_text():
    out = generate()
    by_answer = {i.answer: i for i in out.items if i.kind != "passage"}
    assert {"8443", "HTTP/2", "1.19", "nginx.ingress", "Team Falcon", "terminates TLS connections for the cluster"} \
        <= set(by_answer)
    assert any("kubectl rollout restart --namespace edge" in a for a in by_answer)
    port = by_answer["8443"]
    assert port.kind == "cloze" and len(port.questions) == 3 and len({normalise(q) for q in port.questions}) == 3
    assert all("____" in q and "8443" not in q and "Ingress controller" in q for q in port.questions)
    assert by_answer["terminates TLS connections for the cluster"].questions[0] == "What does Traefik do?"
    # The topic (heading) is never the answer; questions in the text are not turned into items.
    assert "Ingress" not in by_answer and not any("Which port" in i.evidence for i in out.items if i.kind != "passage")
    for item in out.items:
        assert item.answer in TEXT
    assert generate().items == out.items  # deterministic
    passages = [i for i in out.items if i.kind == "passage"]
    assert passages and all(i.trainable_only for i in passages)
    assert not [i for i in generate(passages=False).items if i.kind == "passage"]


def test_topic_is_the_heading_else_the_document_name():
    assert topic_of(Chunk("c", "x", "Guide > Install", "a/b.md")) == "Install"
    assert topic_of(Chunk("c", "mid-sentence words", "", "s3://b/operations-handbook.pdf")) == "operations handbook"
    assert topic_of(Chunk("c", "x", "page 3", "/d/user_guide.pdf")) == "user guide"


def test_sample_release_2_adds_pages_and_updates_notes_faq_and_glossary(tmp_path):
    from llmops.cli import main

    one, two = corpus_documents(1), corpus_documents(2)
    added = sorted(set(two) - set(one))
    assert len(added) == 12 and all(a.startswith("components/") for a in added)
    assert sorted(k for k in one if one[k] != two[k]) == ["faq.html", "glossary.txt", "release-notes.rst"]
    assert corpus_documents() == one
    assert main(["sample-data", "--out", str(tmp_path), "--release", "2"]) == 0
    written = sorted(p.relative_to(tmp_path / "corpus").as_posix() for p in (tmp_path / "corpus").rglob("*")
                     if p.is_file())
    assert written == sorted(two) and (tmp_path / "finetune.jsonl").exists()
