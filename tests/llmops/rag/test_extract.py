"""Extraction: every format gives normalized text with its heading structure; bad documents say why."""

from __future__ import annotations

import pytest

from llmops.dev.sample_data import corpus_documents, minimal_pdf
from llmops.exceptions import DocumentRejected
from llmops.rag.extract import extract, normalize
from tests.rag_helpers import CORPUS


def test_markdown_drops_front_matter_shortcodes_and_markup_and_keeps_headings():
    text = (
        "---\ntitle: Pods\nweight: 10\n---\n<!-- overview -->\n"
        "A **Pod** is a group of one or more\n{{< glossary_tooltip text=\"containers\" term_id=\"container\" >}}.\n\n"
        "## {{% heading \"prerequisites\" %}}\n\nSee [the docs](/docs/x \"t\") and `kubectl`.\n\n"
        "```shell\n# not a heading\nkubectl get pods\n```\n\n| key | value |\n|---|---|\n| a | b |\n"
    )
    doc = extract("pods.md", text.encode())
    assert "title:" not in doc.text and "weight" not in doc.text
    assert "{{" not in doc.text and "**" not in doc.text and "](" not in doc.text and "`" not in doc.text
    assert "A Pod is a group of one or more\ncontainers." in doc.text
    assert "See the docs and kubectl." in doc.text
    assert "# not a heading\nkubectl get pods" in doc.text
    assert "a | b" in doc.text
    paths = [s.path for s in doc.sections]
    assert paths == [("Pods",), ("Pods", "Before you begin")]
    # Offsets of sections point at the heading text in the normalized text.
    assert doc.text[doc.sections[1].start:].startswith("Before you begin")


def test_markdown_lists_and_tables_read_as_in_the_source():
    text = "Steps:\n1. Create it.\n2. Apply it,\n   twice.\n\n- one\n  - nested\n\n| k | v |\n|---|---|\n| a | b |\n"
    assert extract("a.md", text.encode()).text == "Steps:\n1. Create it.\n2. Apply it,\ntwice.\n\none\nnested\n\nk | v\na | b"


def test_markdown_code_keeps_what_the_regex_parser_took_for_markup():
    # The regex parser dropped `<pod-name>` as an HTML tag and `**` as emphasis inside code spans, and read
    # an indented code block's YAML list dashes and `---` as bullets and a table rule.
    text = "Run `kubectl logs <pod-name>` or `a**b**`.\n\nIndented code:\n\n    # not a heading\n    - name: app\n    ---\n"
    doc = extract("a.md", text.encode())
    assert doc.text == "Run kubectl logs <pod-name> or a**b**.\n\nIndented code:\n\n# not a heading\n- name: app\n---"
    assert [s.path for s in doc.sections] == [()]


def test_html_rst_text_and_pdf_of_the_sample_corpus():
    docs = corpus_documents()
    html = extract("faq.html", docs["faq.html"])
    assert "analytics" not in html.text and "font-weight" not in html.text and not html.text.startswith("html")
    assert "Beacon speaks" in html.text
    assert html.sections[-1].path == ("Larkspur FAQ", "Larkspur frequently asked questions")
    rst = extract("release-notes.rst", docs["release-notes.rst"])
    assert "**" not in rst.text and "===" not in rst.text
    assert ("Larkspur release notes", "Larkspur 1.2") in [s.path for s in rst.sections]
    txt = extract("glossary.txt", docs["glossary.txt"])
    assert txt.text.startswith("Larkspur glossary\n\nBeacon: the Larkspur component")
    pdf = extract("operations-handbook.pdf", docs["operations-handbook.pdf"])
    assert "lark beacon" in pdf.text
    assert pdf.sections[0].path == ("page 1",) and not pdf.sections[0].heading


@pytest.mark.requires_shared("corpus")
def test_real_pdf_keeps_pages_as_sections():
    doc = extract("stride.pdf", (CORPUS / "pdfs" / "STRIDE Threat Modeling.pdf").read_bytes())
    assert [s.path[-1] for s in doc.sections] == ["page 1", "page 2"]
    assert "Threat Modeling" in doc.text


def test_normalization_is_nfkc_without_zero_width_or_runs_of_space():
    assert normalize("ﬁle\u200b  name\t\tx \n\n\n\ny  ") == "file name x\n\ny"


BAD = {
    "empty.txt": (b"", "empty"),
    "blank.md": (b"  \n\n ", "empty"),
    "binary.txt": (bytes(range(256)) * 8, "binary"),
    "image.md": (b"\x89PNG\r\n\x1a\n" + b"\x00" * 50, "binary"),
    "latin1.txt": ("café crème".encode("latin-1"), "undecodable"),
    "corrupt.pdf": (b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"\n%%EOF\n", "corrupt PDF"),
    "notapdf.pdf": (b"hello, I am text", "corrupt PDF"),
    "truncated.pdf": (minimal_pdf(["a line of text"])[:300], "truncated PDF"),
    "front-matter-only.md": (b"---\ntitle: Nothing here\n---\n\n<!-- body -->\n", "front matter only"),
    "markup-only.html": (b"<html><script>x()</script></html>", "no text"),
    "slides.pptx": (b"PK\x03\x04...", "unsupported file type .pptx"),
}


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_documents_are_rejected_with_a_reason(name):
    data, reason = BAD[name]
    with pytest.raises(DocumentRejected) as err:
        extract(name, data)
    assert reason in err.value.reason
