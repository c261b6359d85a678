"""Text extraction: document bytes -> normalized plain text with its heading structure.

Supported: `.txt`, `.md`/`.markdown`, `.rst`, `.html`/`.htm`, `.pdf`. Every format ends in the same shape
(`Extracted`): one normalized text (NFKC, markup and front matter removed, whitespace collapsed,
paragraphs separated by one blank line) and the sections that start in it, each with its heading path.
Chunk character offsets index this normalized text, so `extract(...)` reproduces what a chunk cites.

A document that cannot give text raises `DocumentRejected` with a reason the quarantine report shows
(empty, binary, undecodable, corrupt or truncated PDF, front matter only, ...). Nothing here touches
storage or Spark: it is a pure function of (name, bytes).
"""

from __future__ import annotations

import bisect
import functools
import html
import io
import re
import unicodedata
from dataclasses import dataclass, field
from pathlib import PurePosixPath

from llmops.exceptions import DocumentRejected

SUPPORTED_EXTENSIONS = {
    ".txt": "text",
    ".text": "text",
    ".md": "markdown",
    ".markdown": "markdown",
    ".rst": "rst",
    ".html": "html",
    ".htm": "html",
    ".pdf": "pdf",
}

# Signatures of common binary formats: a text document starting with one is binary, whatever its name.
_MAGIC = [
    (b"%PDF-", "a PDF"),
    (b"\x89PNG", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF8", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (docx/xlsx/jar?)"),
    (b"\x1f\x8b", "a gzip archive"),
    (b"\x7fELF", "an executable"),
]
_ZERO_WIDTH = dict.fromkeys(map(ord, "\u00ad\u200b\u200c\u200d\u2060\ufeff"), None)
_SPACES = re.compile(r"[ \t\f\v\u00a0\u2000-\u200a\u202f\u205f\u3000]+")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0e-\x1f\x7f-\x9f]")


@dataclass(frozen=True)
class Section:
    """Where a section starts in the normalized text and its heading path.

    `heading` is True when the section starts at a heading (chunks prefer to end there and never overlap
    across it); False for a softer boundary such as a PDF page break.
    """

    start: int
    path: tuple[str, ...]
    heading: bool = True


@dataclass
class Extracted:
    """A document's normalized text and its sections (sorted by `start`)."""

    text: str
    sections: list[Section] = field(default_factory=list)
    title: str | None = None

    def path_at(self, offset: int) -> tuple[str, ...]:
        """Heading path of the section containing a character offset."""
        i = bisect.bisect_right([s.start for s in self.sections], offset) - 1
        return self.sections[i].path if i >= 0 else ()


def document_format(name: str) -> str | None:
    """`markdown`, `rst`, `html`, `pdf`, `text` by file extension, or None when unsupported."""
    return SUPPORTED_EXTENSIONS.get(PurePosixPath(name).suffix.lower())


def normalize(text: str, keep_lines: bool = True) -> str:
    """Unicode NFKC, no zero-width or control characters, single spaces, no blank-line runs.

    `keep_lines=False` turns every line break into a space (HTML inline text, PDF-free prose).
    """
    text = unicodedata.normalize("NFKC", text).translate(_ZERO_WIDTH)
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub(" ", text)
    if not keep_lines:
        text = text.replace("\n", " ")
    lines = [_SPACES.sub(" ", line).strip() for line in text.split("\n")]
    out: list[str] = []
    for line in lines:
        if line or (out and out[-1]):
            out.append(line)
    return "\n".join(out).strip()


class _Builder:
    """Collects paragraphs and headings, normalizing each, and records where sections start."""

    def __init__(self, title: str | None = None) -> None:
        self.parts: list[str] = []
        self.length = 0
        self.title = normalize(title, keep_lines=False) if title else None
        self.stack: list[tuple[int, str]] = []
        self.sections: list[Section] = [Section(0, (self.title,) if self.title else ())]

    def _path(self) -> tuple[str, ...]:
        names = [name for _, name in self.stack]
        if self.title and (not names or names[0].casefold() != self.title.casefold()):
            names.insert(0, self.title)
        return tuple(names)

    def _append(self, text: str) -> int:
        if self.parts:
            self.parts.append("\n\n")
            self.length += 2
        start = self.length
        self.parts.append(text)
        self.length += len(text)
        return start

    def paragraph(self, text: str, keep_lines: bool = True) -> None:
        text = normalize(text, keep_lines=keep_lines)
        if text:
            self._append(text)

    def heading(self, level: int, text: str) -> None:
        text = normalize(text, keep_lines=False)
        if not text:
            return
        while self.stack and self.stack[-1][0] >= level:
            self.stack.pop()
        self.stack.append((level, text))
        start = self._append(text)
        self._section(Section(start, self._path(), heading=True))

    def soft_break(self, label: str) -> None:
        """A non-heading section (a PDF page): its label extends the heading path."""
        start = self.length + (2 if self.parts else 0)
        self._section(Section(start, (*self._path(), label), heading=False))

    def _section(self, section: Section) -> None:
        if self.sections and self.sections[-1].start == section.start:
            self.sections[-1] = section
        else:
            self.sections.append(section)

    def build(self) -> Extracted:
        text = "".join(self.parts)
        sections = [s for s in self.sections if s.start < len(text)] or [self.sections[0]]
        return Extracted(text=text, sections=sections, title=self.title)


# --- decoding -----------------------------------------------------------------------------------------


def decode(data: bytes, declared: str | None = None) -> str:
    """Bytes of a text document -> str; binary or non-UTF-8 content is rejected with a reason."""
    if not data.strip():
        raise DocumentRejected("empty document: no bytes or only whitespace")
    for magic, what in _MAGIC:
        if data.startswith(magic):
            raise DocumentRejected(f"binary content: the file is {what}, not text")
    if data.startswith(b"\xef\xbb\xbf"):
        data, declared = data[3:], "utf-8"
    elif data.startswith((b"\xff\xfe", b"\xfe\xff")):
        declared = "utf-16"
    elif b"\x00" in data[:8192]:
        raise DocumentRejected("binary content: NUL bytes in a text document")
    encoding = (declared or "utf-8").lower()
    try:
        text = data.decode(encoding)
    except LookupError:
        raise DocumentRejected(f"undecodable: unknown declared encoding {declared!r}") from None
    except UnicodeDecodeError as exc:
        raise DocumentRejected(
            f"undecodable: not valid {exc.encoding} (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the document as UTF-8"
        ) from None
    sample = text[:8192]
    controls = len(_CONTROL.findall(sample))
    if sample and controls / len(sample) > 0.05:
        raise DocumentRejected(f"binary content: {controls} control characters in the first {len(sample)}")
    return text


# --- front matter ---------------------------------------------------------------------------------------

_FRONT_MATTER = {"---": re.compile(r"^(---|\.\.\.)\s*$"), "+++": re.compile(r"^\+\+\+\s*$")}


def split_front_matter(text: str) -> tuple[dict, str]:
    """(metadata, body) of a document with YAML (`---`) or TOML (`+++`) front matter."""
    first, _, rest = text.partition("\n")
    fence = first.strip()
    if fence not in _FRONT_MATTER:
        return {}, text
    closing = _FRONT_MATTER[fence]
    lines = rest.split("\n")
    for i, line in enumerate(lines):
        if closing.match(line):
            raw = "\n".join(lines[:i])
            body = "\n".join(lines[i + 1:])
            return _parse_front_matter(raw, toml=fence == "+++"), body
    return {}, text  # never closed: not front matter


def _parse_front_matter(raw: str, toml: bool) -> dict:
    try:
        if toml:
            import tomllib

            meta = tomllib.loads(raw)
        else:
            import yaml

            # The C loader when libyaml is there: front matter is parsed for every document.
            meta = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except Exception:  # malformed metadata is not a reason to lose the body
        return {}
    return meta if isinstance(meta, dict) else {}


def _title_from(meta: dict) -> str | None:
    title = meta.get("title") or meta.get("linktitle")
    return str(title) if title else None


# --- Markdown ---------------------------------------------------------------------------------------------
# Parsed as CommonMark (plus tables) by markdown-it-py; what is not Markdown is handled around it: front
# matter before the parse, Hugo shortcodes (`{{< ... >}}`, `{{% ... %}}`) replaced by their text first,
# and raw HTML blocks reduced to their text.

_HTML_COMMENT = re.compile(r"<!--.*?-->", re.S)
_SHORTCODE = re.compile(r"\{\{[<%]\s*(/?)\s*([\w./-]*)(.*?)\s*/?[>%]\}\}", re.S)
_SHORTCODE_TEXT = re.compile(r'\btext\s*=\s*"([^"]*)"')
_SHORTCODE_ARG = re.compile(r'"([^"]*)"')
_HEADING_SHORTCODES = {
    "prerequisites": "Before you begin",
    "whatsnext": "What's next",
    "objectives": "Objectives",
    "cleanup": "Clean up",
    "synopsis": "Synopsis",
    "options": "Options",
    "seealso": "See also",
}
_BULLET = re.compile(r"^(\s*)[-*+]\s+")
_TAG = re.compile(r"</?[A-Za-z][\w:-]*(\s[^<>]*)?/?>")
_NBSP_HEADING = re.compile(r"^( {0,3}#{1,6})\u00a0", re.M)


def _shortcode(match: re.Match) -> str:
    closing, name, args = match.group(1), match.group(2).lower(), match.group(3)
    if closing:
        return ""
    text = _SHORTCODE_TEXT.search(args)
    if text:
        return text.group(1)
    if name == "heading":
        arg = _SHORTCODE_ARG.search(args)
        key = arg.group(1) if arg else ""
        return _HEADING_SHORTCODES.get(key, key.replace("_", " ").capitalize())
    return ""


@functools.cache
def _markdown_parser():
    from markdown_it import MarkdownIt

    return MarkdownIt("commonmark").enable("table")


def _inline_text(tokens) -> str:
    """Plain text of an inline token's children: link text, image alt text, code span content; no
    emphasis markers, no raw HTML tags; line breaks kept."""
    out: list[str] = []
    for token in tokens or ():
        if token.type in ("text", "code_inline"):
            out.append(token.content)
        elif token.type in ("softbreak", "hardbreak"):
            out.append("\n")
        elif token.type == "image":
            out.append(_inline_text(token.children))
    return "".join(out)


def _html_text(raw: str) -> str:
    """Text of a raw HTML block: comments and tags dropped, entities resolved."""
    return html.unescape(_TAG.sub("", _HTML_COMMENT.sub("", raw)))


class _MarkdownBlocks:
    """Feeds markdown-it's block tokens to a `_Builder`. Text blocks on consecutive source lines (the
    items of a tight list, the rows of a table, a paragraph and the list it introduces) form one
    paragraph with a line each, as they read in the source; a blank line starts a new paragraph."""

    def __init__(self, builder: _Builder) -> None:
        self.b = builder
        self.lines: list[str] = []
        self.end: int | None = None  # source line after the last text block of the open paragraph

    def flush(self) -> None:
        if self.lines:
            self.b.paragraph("\n".join(self.lines))
            self.lines.clear()
        self.end = None

    def text(self, text: str, lines: list[int] | None) -> None:
        if lines is None or lines[0] != self.end:
            self.flush()
        if text.strip():
            self.lines.append(text)
        self.end = lines[1] if lines else None

    def feed(self, tokens) -> None:
        heading = 0
        in_table = False
        number = ""  # an ordered list item's number, kept in front of its first line
        for token in tokens:
            kind = token.type
            if kind == "list_item_open" and token.info:
                number = f"{token.info}{token.markup} "
            elif kind == "heading_open":
                self.flush()
                heading = int(token.tag[1])
            elif kind == "inline" and heading:
                self.b.heading(heading, _inline_text(token.children))
                heading = 0
            elif kind == "table_open":
                self.text("", token.map)
                in_table = True
            elif kind == "tr_open":
                cells: list[str] = []
            elif kind == "inline" and in_table:
                cells.append(_inline_text(token.children).strip())
            elif kind == "tr_close":
                self.lines.append(" | ".join(c for c in cells if c))
            elif kind == "table_close":
                in_table = False
            elif kind == "inline":
                self.text(number + _inline_text(token.children), token.map)
                number = ""
            elif kind in ("fence", "code_block"):
                self.flush()
                self.b.paragraph(token.content)
            elif kind == "html_block":
                self.text(_html_text(token.content), token.map)
            elif kind == "hr":
                self.flush()
        self.flush()


def extract_markdown(text: str) -> Extracted:
    meta, body = split_front_matter(text)
    b = _Builder(title=_title_from(meta))
    # Shortcodes may span lines (`{{< note >}}` blocks are one line, but arguments can wrap).
    body = _SHORTCODE.sub(lambda m: _shortcode(m).replace("\n", " "), body)
    # `##\u00a0Title` is a heading to its writer (and to the regex parser this replaced), not to CommonMark.
    body = _NBSP_HEADING.sub(r"\1 ", body)
    _MarkdownBlocks(b).feed(_markdown_parser().parse(body))
    return b.build()


# --- reStructuredText ---------------------------------------------------------------------------------------

_RST_ADORN = re.compile(r"^([=\-`:'\"~^_*+#<>.])\1{2,}\s*$")
_RST_DIRECTIVE = re.compile(r"^\s*\.\.\s+([\w:-]+)::\s*(.*)$")
_RST_COMMENT = re.compile(r"^\s*\.\.(\s|$)")
_RST_OPTION = re.compile(r"^\s+:[\w -]+:")
_RST_ROLE = re.compile(r":[\w:+-]+:`([^`<]*?)(?:\s*<[^>]*>)?`")
_RST_LINK = re.compile(r"`([^`<]+?)\s*<[^>]+>`__?")
_RST_REF = re.compile(r"`([^`]+)`__?")
_RST_LITERAL = re.compile(r"``(.+?)``")
_RST_STRONG = re.compile(r"\*\*(.+?)\*\*")
_RST_EM = re.compile(r"(?<![\w*])\*(?=\S)(.+?)(?<=\S)\*(?![\w*])")
_RST_SUBST = re.compile(r"\|([\w -]+)\|")
_RST_KEEP_DIRECTIVES = {"note", "warning", "tip", "important", "caution", "attention", "danger", "hint",
                        "admonition", "seealso", "topic", "rubric", "versionadded", "versionchanged",
                        "deprecated", "code-block", "code", "sourcecode"}


def _inline_rst(line: str) -> str:
    line = _RST_ROLE.sub(r"\1", line)
    line = _RST_LINK.sub(r"\1", line)
    line = _RST_LITERAL.sub(r"\1", line)
    line = _RST_REF.sub(r"\1", line)
    line = _RST_STRONG.sub(r"\1", line)
    line = _RST_EM.sub(r"\1", line)
    line = _RST_SUBST.sub(r"\1", line)
    if line.rstrip().endswith("::"):
        line = line.rstrip()[:-1]
    return line


def extract_rst(text: str) -> Extracted:
    meta, body = split_front_matter(text)
    lines = body.replace("\r\n", "\n").split("\n")
    b = _Builder(title=_title_from(meta))
    styles: list[tuple[str, bool]] = []
    para: list[str] = []
    skip_indent: int | None = None

    def flush() -> None:
        if para:
            b.paragraph("\n".join(para))
            para.clear()

    i = 0
    while i < len(lines):
        line = lines[i]
        if skip_indent is not None:
            # The indented body of a comment or a dropped directive (image, toctree, raw ...).
            if not line.strip() or len(line) - len(line.lstrip()) > skip_indent:
                i += 1
                continue
            skip_indent = None
        nxt = lines[i + 1] if i + 1 < len(lines) else ""
        # Title with overline: ===\nTitle\n===
        if _RST_ADORN.match(line) and i + 2 < len(lines) and lines[i + 1].strip() and lines[i + 2].strip() == line.strip():
            flush()
            style = (line.strip()[0], True)
            if style not in styles:
                styles.append(style)
            b.heading(styles.index(style) + 1, _inline_rst(lines[i + 1].strip()))
            i += 3
            continue
        # Title with underline only: Title\n-----
        if line.strip() and not para and _RST_ADORN.match(nxt) and len(nxt.strip()) >= len(line.strip()) * 0.6:
            style = (nxt.strip()[0], False)
            if style not in styles:
                styles.append(style)
            b.heading(styles.index(style) + 1, _inline_rst(line.strip()))
            i += 2
            continue
        directive = _RST_DIRECTIVE.match(line)
        if directive:
            flush()
            name, arg = directive.group(1).lower(), directive.group(2).strip()
            if name in _RST_KEEP_DIRECTIVES:
                if arg and not name.startswith("code") and name != "sourcecode":
                    para.append(_inline_rst(arg))
            else:
                skip_indent = len(line) - len(line.lstrip())
            i += 1
            continue
        if _RST_COMMENT.match(line):
            flush()
            skip_indent = len(line) - len(line.lstrip())
            i += 1
            continue
        if _RST_OPTION.match(line):
            i += 1
            continue
        if not line.strip():
            flush()
        elif _RST_ADORN.match(line):
            flush()  # a transition line
        else:
            para.append(_BULLET.sub(r"\1", _inline_rst(line)))
        i += 1
    flush()
    return b.build()


# --- plain text ---------------------------------------------------------------------------------------------


def extract_text(text: str) -> Extracted:
    b = _Builder()
    for block in re.split(r"\n\s*\n", text.replace("\r\n", "\n")):
        b.paragraph(block)
    return b.build()


# --- HTML ------------------------------------------------------------------------------------------------------

_HTML_DROP = ["script", "style", "noscript", "template", "svg", "nav", "footer", "iframe", "object", "button",
              "form", "head"]
_HTML_BLOCKS = {"p", "div", "section", "article", "main", "header", "aside", "li", "ul", "ol", "dl", "dt",
                "dd", "blockquote", "figure", "figcaption", "table", "thead", "tbody", "tfoot", "caption",
                "details", "summary", "address", "hr", "body", "html"}
_HTML_HEADINGS = {f"h{i}": i for i in range(1, 7)}
_META_CHARSET = re.compile(rb"<meta[^>]+charset\s*=\s*[\"']?([\w-]+)", re.I)


def extract_html(data: bytes) -> Extracted:
    from bs4 import BeautifulSoup, Comment, Declaration, Doctype, NavigableString, ProcessingInstruction, Tag

    declared = _META_CHARSET.search(data[:4096])
    text = decode(data, declared.group(1).decode("ascii") if declared else None)
    try:
        soup = BeautifulSoup(text, "lxml")
    except Exception:  # bs4.FeatureNotFound: lxml is not installed; the standard library's parser will do
        soup = BeautifulSoup(text, "html.parser")
    title_tag = soup.find("title")
    title = title_tag.get_text(" ", strip=True) if title_tag else None
    for tag in soup.find_all(_HTML_DROP):
        tag.decompose()
    b = _Builder(title=title)
    inline: list[str] = []

    def flush() -> None:
        if inline:
            b.paragraph("".join(inline), keep_lines=False)
            inline.clear()

    def walk(node) -> None:
        for child in node.children:
            if isinstance(child, Comment | Doctype | Declaration | ProcessingInstruction):
                continue
            if isinstance(child, NavigableString):
                inline.append(str(child))
                continue
            if not isinstance(child, Tag):
                continue
            name = child.name.lower()
            if name in _HTML_HEADINGS:
                flush()
                b.heading(_HTML_HEADINGS[name], child.get_text(" ", strip=True))
            elif name == "br":
                flush()
            elif name == "pre":
                flush()
                b.paragraph(child.get_text())
            elif name == "tr":
                flush()
                cells = [c.get_text(" ", strip=True) for c in child.find_all(["td", "th"])]
                b.paragraph(" | ".join(c for c in cells if c), keep_lines=False)
            elif name in _HTML_BLOCKS:
                flush()
                walk(child)
                flush()
            else:
                walk(child)

    walk(soup)
    flush()
    return b.build()


# --- PDF -----------------------------------------------------------------------------------------------------


def extract_pdf(data: bytes) -> Extracted:
    if not data.strip():
        raise DocumentRejected("empty document: no bytes")
    if b"%PDF-" not in data[:1024]:
        raise DocumentRejected("corrupt PDF: no %PDF- header (not a PDF, or a damaged file)")
    # A complete PDF ends with %%EOF (possibly followed by a little padding); a cut-off upload does not,
    # and pypdf would silently recover whatever pages it can from it.
    if b"%%EOF" not in data[-2048:]:
        raise DocumentRejected("truncated PDF: no %%EOF marker at the end (incomplete upload or copy)")
    import logging

    from pypdf import PdfReader
    from pypdf.errors import PyPdfError

    # pypdf logs every recoverable oddity as a warning; the reason below is what matters.
    logging.getLogger("pypdf").setLevel(logging.ERROR)
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:
                reader.decrypt("")
                _ = len(reader.pages)
            except Exception:
                raise DocumentRejected("encrypted PDF: it needs a password") from None
        meta_title = None
        try:
            meta_title = reader.metadata.title if reader.metadata else None
        except Exception:  # broken info dictionary: no title, still text
            meta_title = None
        pages = []
        if len(reader.pages) == 0:
            raise DocumentRejected("corrupt PDF: it has no pages")
        for number, page in enumerate(reader.pages, start=1):
            try:
                pages.append(page.extract_text() or "")
            except Exception as exc:
                raise DocumentRejected(f"corrupt PDF: page {number} cannot be read ({type(exc).__name__}: {exc})") from None
    except DocumentRejected:
        raise
    except (PyPdfError, ValueError, KeyError, TypeError, AttributeError, IndexError, OSError, RecursionError) as exc:
        raise DocumentRejected(f"corrupt PDF: {type(exc).__name__}: {exc}") from None
    b = _Builder(title=str(meta_title) if meta_title else None)
    for number, page_text in enumerate(pages, start=1):
        if not page_text.strip():
            continue
        b.soft_break(f"page {number}")
        # PDF line breaks are layout, not structure (some PDFs put every word on its own line).
        for block in re.split(r"\n\s*\n", page_text):
            b.paragraph(block, keep_lines=False)
    doc = b.build()
    if not doc.text:
        raise DocumentRejected(f"no extractable text in {len(pages)} PDF page(s) (scanned images need OCR)")
    return doc


# --- entry point ------------------------------------------------------------------------------------------------


def extract(name: str, data: bytes) -> Extracted:
    """Normalized text and sections of one document; `DocumentRejected` says why when there is none."""
    fmt = document_format(name)
    if fmt is None:
        suffix = PurePosixPath(name).suffix or "(no extension)"
        raise DocumentRejected(
            f"unsupported file type {suffix}: supported are {' '.join(sorted(set(SUPPORTED_EXTENSIONS)))}"
        )
    if fmt == "pdf":
        return extract_pdf(data)
    if fmt == "html":
        doc = extract_html(data)
    else:
        text = decode(data)
        if fmt == "markdown":
            doc = extract_markdown(text)
        elif fmt == "rst":
            doc = extract_rst(text)
        else:
            doc = extract_text(text)
        if not doc.text and fmt in ("markdown", "rst"):
            meta, body = split_front_matter(text)
            if meta or body != text:
                raise DocumentRejected("front matter only: no text after the front matter")
    if not doc.text:
        raise DocumentRejected("no text: the document holds only markup or whitespace")
    return doc
