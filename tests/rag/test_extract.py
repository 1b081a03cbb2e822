"""rag.extract on small files built here: every format, and what a user sees for every bad one."""

from __future__ import annotations

import contextlib
import io
import json
import random
import threading
import time
import zipfile
from collections.abc import Sequence
from pathlib import Path

import docx
import pypdf
import pypdfium2 as pdfium
import pytest

import rag.extract.pdf as extract_module
from rag.errors import UserFacingError
from rag.extract import SUPPORTED_EXTENSIONS, check_metadata, extract, sandbox
from rag.extract.common import _Upload
from rag.extract.parse import parse_sections
from rag.extract.sandbox import parse_isolated
from rag.types import ExtractedDocument
from tests.hostile.make_corpus import (
    deep_json,
    deep_yaml,
    markdown_bracket_heading,
    nested_html,
    tag_flood_html,
    zip_bomb_docx,
)
from tests.rag.pdfs import Page, Text, write_pdf

MB = 1024 * 1024
ALL = SUPPORTED_EXTENSIONS
LIMIT = 10 * MB

PNG = (
    b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x01\x00\x00\x00\x01\x08\x06\x00\x00\x00\x1f\x15\xc4\x89"
)
ELF = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00>\x00\x01\x00\x00\x00" + bytes(40)


def run(
    name: str, data: bytes, *, allowed: frozenset[str] = ALL, max_bytes: int = LIMIT
) -> ExtractedDocument:
    return extract(name, data, allowed_types=allowed, max_bytes=max_bytes)


def refused(name: str, data: bytes, **kwargs: object) -> str:
    with pytest.raises(UserFacingError) as caught:
        run(name, data, **kwargs)  # type: ignore[arg-type]
    message = caught.value.message
    assert name in message
    assert "Traceback" not in message and "Error(" not in message
    return message


# --- PDFs of Helvetica text at given positions (tests/rag/pdfs.py) --------------------------------

Line = tuple[float, float, float, str]  # x, y, font size, text


def make_pdf(pages: Sequence[Sequence[Line]], *, drawing_only: bool = False) -> bytes:
    shade = b"0.5 g 72 72 300 300 re f\n" if drawing_only else b""
    return write_pdf([Page(texts=[Text(*line) for line in lines], raw=shade) for lines in pages])


REGIONS = ("Nordic", "Iberian", "Baltic", "Alpine", "Andean", "Pacific", "Saharan")


def region(number: int) -> str:
    return REGIONS[number % len(REGIONS)]


def prose(number: int) -> tuple[str, ...]:
    return (
        f"The {region(number)} unit continued to invest in its core markets during the year and its inter-",
        "national operations grew across three new regions while keeping costs under careful control in",
        f"every business unit and reporting line of the {region(number)} company, page after page.",
    )


def table_row(number: int, row: int) -> list[str]:
    return [
        f"Item {row + 1}",
        f"{1000 + 37 * row + 13 * number:,}",
        f"{2000 + 11 * row:,}",
        f"{row * 3.5:.1f}%",
    ]


def report_page(number: int, total: int, *, table_rows: int = 0, prose_repeats: int = 1) -> list[Line]:
    """A page of a financial report: two header lines, a heading, prose, a table, a page footer."""
    lines: list[Line] = [
        (72, 760, 9, "Acme Holdings plc \u2014 Annual Report 2023"),
        (72, 748, 9, "Confidential"),
    ]
    y = 700.0
    lines.append((72, y, 14, f"Results for the {region(number)} unit"))
    for _ in range(prose_repeats):
        for text in prose(number):
            y -= 14
            lines.append((72, y, 10, text))
        y -= 10
    for row in range(table_rows):
        y -= 12
        lines.extend((72 + 120 * column, y, 9, cell) for column, cell in enumerate(table_row(number, row)))
    lines.append((280, 40, 9, f"Page {number} of {total}"))
    return lines


def report_pdf(pages: int, **kwargs: int) -> bytes:
    return make_pdf([report_page(n, pages, **kwargs) for n in range(1, pages + 1)])


def encrypted(pdf: bytes, user_password: str) -> bytes:
    writer = pypdf.PdfWriter(clone_from=io.BytesIO(pdf))
    # RC4 needs no optional crypto package in pypdf, so the test does not depend on one.
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- metadata checks ------------------------------------------------------------------------------


def test_check_metadata_returns_the_normalised_extension() -> None:
    assert check_metadata("Report.PDF", 1234, allowed_types=ALL, max_bytes=LIMIT) == "pdf"
    assert check_metadata("notes.txt", None, allowed_types=frozenset({".TXT"}), max_bytes=LIMIT) == "txt"


def test_unsupported_type_lists_what_can_be_read() -> None:
    with pytest.raises(UserFacingError) as caught:
        check_metadata("report.exe", 10, allowed_types=ALL, max_bytes=LIMIT)
    assert caught.value.message.startswith(
        "report.exe: .exe files are not supported. I can read: .css, .csv, .docx,"
    )


def test_supported_but_not_allowed_type() -> None:
    with pytest.raises(UserFacingError) as caught:
        check_metadata("data.csv", 10, allowed_types=frozenset({"pdf", "md"}), max_bytes=LIMIT)
    assert caught.value.message == "data.csv: .csv files are not allowed here. Allowed: .md, .pdf."


def test_name_without_extension() -> None:
    with pytest.raises(UserFacingError, match="Makefile has no file extension"):
        check_metadata("Makefile", 10, allowed_types=ALL, max_bytes=LIMIT)


def test_oversize_file_is_refused_from_metadata() -> None:
    with pytest.raises(UserFacingError) as caught:
        check_metadata("big.pdf", int(14.2 * MB), allowed_types=ALL, max_bytes=LIMIT)
    assert caught.value.message.startswith("big.pdf is 14.2 MB; the limit is 10 MB.")


def test_just_over_the_limit_does_not_print_as_equal_to_it() -> None:
    with pytest.raises(UserFacingError, match=r"is 10\.1 MB; the limit is 10 MB"):
        check_metadata("big.pdf", LIMIT + 1, allowed_types=ALL, max_bytes=LIMIT)


def test_empty_file() -> None:
    assert refused("empty.txt", b"").startswith("empty.txt is empty.")


def test_size_is_enforced_before_parsing() -> None:
    message = refused("huge.pdf", b"%PDF-1.4 garbage" * 100, max_bytes=1000)
    assert "the limit is 1000 bytes" in message


def test_type_is_enforced_before_parsing() -> None:
    message = refused("table.csv", b"a,b\n1,2\n", allowed=frozenset({"pdf"}))
    assert "not allowed here" in message


# --- PDF ------------------------------------------------------------------------------------------


def test_pdf_keeps_page_numbers_and_drops_running_headers_and_footers() -> None:
    doc = run("report.pdf", report_pdf(5, table_rows=3))
    assert doc.kind == "pdf"
    assert [section.page for section in doc.sections] == [1, 2, 3, 4, 5]
    for number, section in enumerate(doc.sections, start=1):
        assert "Annual Report" not in section.text
        assert "Confidential" not in section.text
        assert "Page " not in section.text
        assert section.text.startswith(f"Results for the {region(number)} unit\n")
        assert "its international operations grew" in section.text  # hyphenation mended
        assert " ".join(table_row(number, 2)) in section.text.splitlines()  # edge rows are body, kept


def test_pdf_joins_wrapped_prose_but_keeps_table_rows_apart() -> None:
    text = run("report.pdf", report_pdf(1, table_rows=3)).sections[0].text
    assert "inter- national" not in text
    assert "keeping costs under careful control in every business unit" in text
    rows = [line for line in text.splitlines() if line.startswith("Item ")]
    assert rows == ["Item 1 1,013 2,000 0.0%", "Item 2 1,050 2,011 3.5%", "Item 3 1,087 2,022 7.0%"]


def test_running_lines_are_kept_when_too_few_pages_repeat_them() -> None:
    doc = run("short.pdf", report_pdf(2))
    assert all("Annual Report 2023" in section.text for section in doc.sections)


def test_pdf_with_leading_junk_is_still_read() -> None:
    doc = run("mail.pdf", b"X-Mailer: something\r\n\r\n" + report_pdf(3))
    assert [section.page for section in doc.sections] == [1, 2, 3]


def test_pdf_needing_a_password() -> None:
    message = refused("secret.pdf", encrypted(report_pdf(2), "hunter2"))
    assert message == "secret.pdf is password-protected; please upload an unprotected copy."


def test_pdf_encrypted_with_an_empty_password_is_just_read() -> None:
    doc = run("open.pdf", encrypted(report_pdf(2), ""))
    assert [section.page for section in doc.sections] == [1, 2]
    assert f"Results for the {region(2)} unit" in doc.sections[1].text


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"%PDF-1.7\n" + random.Random(7).randbytes(5000), id="garbage"),
        pytest.param(report_pdf(3)[:700], id="truncated"),
        pytest.param(b"%PDF-", id="signature-only"),
    ],
)
def test_damaged_pdf(data: bytes) -> None:
    message = refused("broken.pdf", data)
    assert "broken.pdf could not be read as a PDF (it may be damaged)." in message


def test_pdf_without_a_text_layer() -> None:
    message = refused("scan.pdf", make_pdf([[], []], drawing_only=True))
    assert message.startswith("scan.pdf has no text I can read (is it a scanned image?")


def test_renamed_image_is_not_a_pdf() -> None:
    assert "scan.pdf does not look like a PDF (it looks like a PNG image)." in refused("scan.pdf", PNG)


def test_text_file_named_pdf() -> None:
    assert "(it looks like a text file)" in refused("notes.pdf", b"just some notes\n")


def test_pypdf_reads_what_pdfium_cannot(monkeypatch: pytest.MonkeyPatch) -> None:
    # No small file makes pdfium fail where pypdf succeeds, so pdfium is made to fail here, and the
    # parser runs in this process (the sandbox's child would not see the patch).
    def broken(data: bytes, deadline: float) -> list[str]:
        raise pdfium.PdfiumError("Failed to load document (PDFium: Data format error).")

    monkeypatch.setattr(extract_module, "_pdfium_texts", broken)
    sections = parse_sections(_Upload("report.pdf", "pdf", report_pdf(3, table_rows=2), LIMIT))
    assert [section.page for section in sections] == [1, 2, 3]
    assert sections[2].text.startswith(f"Results for the {region(3)} unit\n")
    assert "its international operations grew" in sections[2].text
    assert "Page 3" not in sections[2].text
    with pytest.raises(UserFacingError, match="password-protected"):
        parse_sections(_Upload("secret.pdf", "pdf", encrypted(report_pdf(1), "hunter2"), LIMIT))


def test_line_end_hyphens() -> None:
    lines = [
        "A line that is long enough to count as a full line of prose in a paragraph, with an inter-",
        "national word and a compound that crosses the line, Anglo-",
        "Saxon, which keeps its hyphen.",
    ]
    text = run(
        "hyphen.pdf", make_pdf([[(72, 700 - 14 * n, 10, line) for n, line in enumerate(lines)]])
    ).sections[0]
    assert "an international word" in text.text
    assert "Anglo-Saxon, which" in text.text


def test_80_page_report_with_tables() -> None:
    # Timing is measured outside the test suite; here: every page comes back, in order.
    data = report_pdf(80, table_rows=25, prose_repeats=4)
    doc = run("filing.pdf", data)
    assert [section.page for section in doc.sections] == list(range(1, 81))
    assert all("Annual Report" not in section.text for section in doc.sections)
    assert " ".join(table_row(80, 24)) in doc.sections[79].text.splitlines()


# --- DOCX -----------------------------------------------------------------------------------------


def make_docx() -> bytes:
    document = docx.Document()
    document.add_heading("Team Handbook", level=0)
    document.add_paragraph("Welcome to the team.")
    document.add_heading("Install", level=1)
    document.add_paragraph("Pick your platform below.")
    document.add_heading("Linux", level=2)
    document.add_paragraph("Run the installer with sudo.")
    table = document.add_table(rows=3, cols=3)
    for row, values in zip(
        table.rows,
        [("OS", "Package", "Size"), ("Debian", ".deb", "12 MB"), ("Fedora", ".rpm", "13 MB")],
        strict=True,
    ):
        for cell, value in zip(row.cells, values, strict=True):
            cell.text = value
    document.add_heading("Windows", level=2)
    document.add_paragraph("Double-click setup.exe.")
    document.add_heading("Support", level=1)
    document.add_paragraph("Ask in #help.")
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def test_docx_heading_paths_and_tables() -> None:
    doc = run("handbook.docx", make_docx())
    assert doc.kind == "docx"
    by_heading = {section.heading: section.text for section in doc.sections}
    assert list(by_heading) == ["Team Handbook", "Install", "Install > Linux", "Install > Windows", "Support"]
    assert "Welcome to the team." in by_heading["Team Handbook"]
    linux = by_heading["Install > Linux"]
    assert "Run the installer with sudo." in linux
    assert "OS | Package | Size\nDebian | .deb | 12 MB\nFedora | .rpm | 13 MB" in linux
    assert "Double-click setup.exe." in by_heading["Install > Windows"]


def zip_with(members: dict[str, bytes], *, zeros: tuple[str, int] | None = None) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
        if zeros:
            # Streamed, so a few hundred MB of zeros never sit in memory at once.
            with archive.open(zeros[0], "w", force_zip64=True) as member:
                chunk = bytes(MB)
                for _ in range(zeros[1]):
                    member.write(chunk)
    return out.getvalue()


def test_docx_zip_bomb_by_total_size() -> None:
    bomb = zip_with({"word/document.xml": b"<w:document/>"}, zeros=("word/media/image1.png", 210))
    assert len(bomb) < 2 * MB
    message = refused("bomb.docx", bomb, max_bytes=50 * MB)
    assert "bomb.docx expands to more than 200 MB when unpacked" in message
    assert "refusing to open it" in message


def test_docx_zip_bomb_by_ratio() -> None:
    bomb = zip_with({"word/document.xml": b"<w:document/>"}, zeros=("word/document2.xml", 30))
    message = refused("ratio.docx", bomb, max_bytes=10 * MB)
    assert "ratio.docx has a part that expands" in message and "refusing to open it" in message


def test_docx_with_too_many_parts() -> None:
    members = {f"word/part{index}.xml": b"" for index in range(10_001)}
    assert "has more than 10,000 parts" in refused("parts.docx", zip_with(members))


def test_damaged_docx() -> None:
    data = make_docx()
    message = refused("broken.docx", data[: len(data) // 2])
    assert "broken.docx could not be read as a Word document (it may be damaged)." in message


def test_docx_with_broken_xml() -> None:
    data = make_docx()
    with zipfile.ZipFile(io.BytesIO(data)) as source:
        members = {name: source.read(name) for name in source.namelist()}
    members["word/document.xml"] = b"<w:document><w:body><w:p>unclosed"
    message = refused("broken.docx", zip_with(members))
    assert "broken.docx could not be read as a Word document (it may be damaged)." in message


def test_zip_without_a_document_is_not_a_docx() -> None:
    xlsx = zip_with({"[Content_Types].xml": b"<x/>", "xl/workbook.xml": b"<x/>"})
    assert (
        "book.docx does not look like a Word (.docx) document (it looks like an Excel workbook)"
        in refused("book.docx", xlsx)
    )


def test_pdf_named_docx() -> None:
    assert "(it looks like a PDF)" in refused("report.docx", report_pdf(1))


def test_old_word_file_named_docx() -> None:
    ole = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + bytes(504)
    assert "(it looks like an old-style Word, Excel or PowerPoint file)" in refused("memo.docx", ole)


def test_docx_with_only_images() -> None:
    document = docx.Document()
    out = io.BytesIO()
    document.save(out)
    assert "has no text I can read (is it a scanned image?" in refused("scan.docx", out.getvalue())


# --- plain text and what is not text ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "looks_like"),
    [
        (PNG, "a PNG image"),
        (b"\xff\xd8\xff\xe0\x00\x10JFIF\x00", "a JPEG image"),
        (b"GIF89a\x01\x00\x01\x00", "a GIF image"),
        (ELF, "a Linux program"),
        (b"\x1f\x8b\x08\x00" + bytes(20), "a gzip archive"),
        (b"MZ\x90\x00\x03\x00\x00\x00\x04\x00", "a Windows program"),
        (b"%PDF-1.4\n1 0 obj << >> endobj\n", "a PDF"),
    ],
)
def test_binary_renamed_to_txt(data: bytes, looks_like: str) -> None:
    message = refused("notes.txt", data)
    assert message.startswith(f"notes.txt does not look like a text file (it looks like {looks_like}).")


def test_zip_renamed_to_txt() -> None:
    assert "(it looks like a ZIP archive)" in refused("notes.txt", zip_with({"a.bin": b"abc"}))


def test_unknown_binary_renamed_to_txt() -> None:
    noise = random.Random(1).randbytes(2000)
    assert "(it seems to contain binary data)" in refused("notes.txt", noise)


def test_whitespace_only_text() -> None:
    assert refused("blank.txt", b" \n\t\n  \r\n").startswith("blank.txt has no text I can read.")


@pytest.mark.parametrize(
    "data",
    [
        "Café crème – naïve\n".encode("utf-8-sig"),
        "Café crème – naïve\n".encode("utf-16"),
        "Café crème – naïve\n".encode("cp1252"),
    ],
    ids=["utf-8-bom", "utf-16-bom", "cp1252"],
)
def test_text_encodings(data: bytes) -> None:
    assert run("menu.txt", data).sections[0].text == "Café crème – naïve"


def test_text_paragraphs_are_grouped_with_line_ranges() -> None:
    paragraphs = [f"Paragraph {n} " + "word " * 60 for n in range(1, 21)]  # ~320 characters each
    doc = run("notes.txt", "\r\n\r\n".join(paragraphs).encode())
    assert doc.kind == "text"
    assert 3 <= len(doc.sections) <= 5
    assert all(len(section.text) <= 2000 for section in doc.sections)
    first = doc.sections[0]
    assert first.line_start == 1 and first.text.startswith("Paragraph 1 ")
    second = doc.sections[1]
    assert second.line_start == (first.line_end or 0) + 2  # the blank line between them
    assert second.text.startswith(f"Paragraph {second.line_start // 2 + 1} ")
    assert doc.sections[-1].line_end == 39


def test_long_text_without_blank_lines_is_still_split() -> None:
    doc = run("log.txt", "\n".join(f"\x1b[32mINFO\x1b[0m line {n}" for n in range(2000)).encode())
    assert len(doc.sections) > 5
    assert doc.sections[0].text.startswith("INFO line 0")
    assert doc.sections[-1].line_end == 2000


# --- Markdown and reStructuredText -----------------------------------------------------------------

MARKDOWN = """\
---
title: Guide
---
Intro text.

# Install

Steps follow.

## Linux

```bash
# not a heading
echo hi
```

~~~
Also not
========
~~~

Setup Windows
-------------

Run setup.exe

# Usage ##
Use it.
"""


def test_markdown_heading_paths_and_line_ranges() -> None:
    doc = run("guide.md", MARKDOWN.encode())
    assert doc.kind == "markdown"
    assert [(s.heading, s.line_start, s.line_end) for s in doc.sections] == [
        ("", 1, 4),
        ("Install", 6, 8),
        ("Install > Linux", 10, 20),
        ("Install > Setup Windows", 22, 25),
        ("Usage", 27, 28),
    ]
    linux = doc.sections[2].text
    assert "# not a heading" in linux and "Also not\n========" in linux
    assert not any("not a heading" in s.heading or "Also not" in s.heading for s in doc.sections)


RST = """\
=========
 Manual
=========

Intro.

Install
=======

Linux
-----

apt install it

Windows
-------

Run it.

Usage
=====

Use it.
"""


def test_rst_heading_levels_follow_first_appearance() -> None:
    doc = run("manual.rst", RST.encode())
    assert doc.kind == "rst"
    assert [(s.heading, s.line_start) for s in doc.sections] == [
        ("Manual", 1),
        ("Manual > Install", 7),
        ("Manual > Install > Linux", 10),
        ("Manual > Install > Windows", 15),
        ("Manual > Usage", 20),
    ]
    assert doc.sections[2].text.endswith("apt install it")


# --- HTML -----------------------------------------------------------------------------------------

HTML = b"""<!doctype html>
<html><head><title>Ops Wiki</title><style>p { color: red }</style>
<script>var secret = "do not index";</script></head>
<body>
<nav><a href="/">Home</a> | <a href="/x">Menu item</a></nav>
<p>Welcome to the <b>ops</b> wiki.</p>
<h2>Deploys</h2>
<p>Deploy on Tuesdays.</p>
<ul><li>Tag the release</li><li>Run the pipeline</li></ul>
<h3>Rollback</h3>
<table><tr><th>Step</th><th>Command</th></tr><tr><td>1</td><td>make rollback</td></tr></table>
<pre>line one
  line two</pre>
<script>alert("nope")</script>
<footer>Copyright footer</footer>
</body></html>
"""


def test_html_drops_scripts_and_navigation_and_builds_heading_paths() -> None:
    doc = run("wiki.html", HTML)
    assert doc.kind == "html"
    everything = "\n".join(section.text for section in doc.sections)
    for unwanted in ("do not index", "nope", "color: red", "Menu item", "Copyright footer"):
        assert unwanted not in everything
    by_heading = {section.heading: section.text for section in doc.sections}
    assert list(by_heading) == ["Ops Wiki", "Ops Wiki > Deploys", "Ops Wiki > Deploys > Rollback"]
    assert "Welcome to the ops wiki." in by_heading["Ops Wiki"]
    assert "Deploy on Tuesdays.\n\n- Tag the release\n- Run the pipeline" in by_heading["Ops Wiki > Deploys"]
    rollback = by_heading["Ops Wiki > Deploys > Rollback"]
    assert "Step | Command\n1 | make rollback" in rollback
    assert "line one\n  line two" in rollback


def test_html_in_a_declared_legacy_encoding() -> None:
    page = '<html><head><meta charset="windows-1251"></head><body><p>Привет, мир</p></body></html>'
    assert run("ru.html", page.encode("cp1251")).sections[0].text == "Привет, мир"


def test_html_h1_wins_over_title() -> None:
    doc = run("page.htm", b"<title>Site</title><h1>Page</h1><p>Body</p><h2>Part</h2><p>More</p>")
    assert [section.heading for section in doc.sections] == ["Page", "Page > Part"]


# --- JSON, YAML, CSV ------------------------------------------------------------------------------


def test_json_object_becomes_sections_per_key() -> None:
    value = {
        "name": "threadwise",
        "servers": [{"host": "a.example", "port": 80, "tls": False}, {"host": "b.example", "port": None}],
        "notes": "x" * 2500,
        "odd key": {"a.b": 1},
    }
    doc = run("config.json", json.dumps(value).encode())
    assert doc.kind == "json"
    assert [section.heading for section in doc.sections] == ["name, servers", "notes", "odd key"]
    first = doc.sections[0].text.splitlines()
    assert first == [
        "name: threadwise",
        "servers[0].host: a.example",
        "servers[0].port: 80",
        "servers[0].tls: false",
        "servers[1].host: b.example",
        "servers[1].port: null",
    ]
    assert doc.sections[2].text == '["odd key"]["a.b"]: 1'


def test_json_array_is_grouped_into_item_ranges() -> None:
    items = [{"id": n, "text": "lorem ipsum " * 10} for n in range(40)]
    doc = run("items.json", json.dumps(items).encode())
    assert len(doc.sections) > 1
    assert doc.sections[0].heading.startswith("[0]-[")
    assert doc.sections[-1].heading.endswith("-[39]")


def test_invalid_json_names_the_line() -> None:
    message = refused("broken.json", b'{\n  "a": 1,\n  "b" 2\n}\n')
    assert message.startswith("broken.json is not valid JSON (line 3, column 7: Expecting ':' delimiter).")


def test_yaml_documents() -> None:
    doc = run("deploy.yaml", b"service: api\nreplicas: 3\nports:\n  - 80\n  - 443\n")
    assert doc.kind == "yaml"
    assert doc.sections[0].text == "service: api\nreplicas: 3\nports[0]: 80\nports[1]: 443"
    multi = run("multi.yml", b"kind: A\n---\nkind: B\n")
    assert [(s.heading, s.text) for s in multi.sections] == [
        ("document 1 > kind", "kind: A"),
        ("document 2 > kind", "kind: B"),
    ]


def test_invalid_yaml() -> None:
    message = refused("bad.yaml", b"a: 1\nb: [unclosed\nc: 3\n")
    assert message.startswith("bad.yaml is not valid YAML (line")


def test_yaml_alias_bomb_is_refused() -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in "bcdefghi":
        previous = chr(ord(level) - 1)
        lines.append(f"{level}: &{level} [{', '.join(['*' + previous] * 9)}]")
    assert "refusing to read it" in refused("laughs.yaml", "\n".join(lines).encode())


def test_csv_rows_become_labelled_lines_in_groups() -> None:
    rows = ["name,team,notes"] + [f'person {n},team {n % 3},"multi\nline {n}"' for n in range(1, 121)]
    doc = run("people.csv", "\n".join(rows).encode())
    assert doc.kind == "csv"
    assert len(doc.sections) == 3
    first = doc.sections[0]
    assert first.text.splitlines()[0] == "name: person 1; team: team 1; notes: multi"
    assert (first.line_start, first.line_end) == (2, 101)  # each record spans two lines
    assert doc.sections[2].line_end == 241


def test_semicolon_csv() -> None:
    doc = run("eu.csv", "Produkt;Preis\nKäse;3,50\n".encode())
    assert doc.sections[0].text == "Produkt: Käse; Preis: 3,50"


# --- code -----------------------------------------------------------------------------------------

PYTHON = '''\
"""Module docstring."""

import os

LIMIT = 3


# Adds things.
@decorator
def add(a: int, b: int) -> int:
    return a + b


class Store:
    def get(self) -> None:
        pass


async def main() -> None:
    pass


if __name__ == "__main__":
    main()
'''


def test_python_sections_per_top_level_definition() -> None:
    doc = run("tool.py", PYTHON.encode())
    assert doc.kind == "code"
    assert [(s.heading, s.line_start, s.line_end) for s in doc.sections] == [
        ("", 1, 5),
        ("def add", 8, 11),
        ("class Store", 14, 16),
        ("def main", 19, 20),
        ("", 23, 24),
    ]
    assert doc.sections[1].text.startswith("# Adds things.\n@decorator\ndef add")


def test_python_that_does_not_parse_falls_back_to_blocks() -> None:
    doc = run("old.py", b"print 'python 2'\n\ndef f():\n    pass\n")
    assert [(s.heading, s.line_start, s.line_end) for s in doc.sections] == [("", 1, 4)]


def test_other_code_in_blocks_of_about_sixty_lines() -> None:
    source = "\n\n".join(f"function f{n}() {{\n" + "  x();\n" * 8 + "}" for n in range(30))
    doc = run("app.js", source.encode())
    assert [(s.line_start, s.line_end) for s in doc.sections][:2] == [(1, 54), (56, 109)]
    assert all((s.line_end or 0) - (s.line_start or 0) < 60 for s in doc.sections)
    assert doc.sections[-1].line_end == 329


# --- nothing but UserFacingError escapes -------------------------------------------------------------


@pytest.mark.parametrize("ext", sorted(SUPPORTED_EXTENSIONS))
def test_random_bytes_never_raise_anything_else(ext: str) -> None:
    generator = random.Random(ext)
    for size in (1, 17, 600, 5000):
        data = generator.randbytes(size)
        for sample in (data, b"%PDF-1.4\n" + data, b"PK\x03\x04" + data):
            with contextlib.suppress(UserFacingError):
                run(f"sample.{ext}", sample)


# --- hostile input: what a parse may cost (the whole corpus goes through `threadwise ingest` in
# --- tests/rag/test_hostile.py) --------------------------------------------------------------------


def test_docx_part_declaring_a_small_size_is_judged_by_what_it_inflates_to() -> None:
    # word/document.xml says 1,000 bytes; zipfile would inflate all 300 MB before noticing.
    message = refused("lies.docx", zip_bomb_docx(inflates_to=300 * MB))
    assert message.startswith("lies.docx has a part that expands more than 100 times when unpacked")
    assert "(it looks like a zip bomb)" in message


def test_deeply_nested_html_is_read_in_linear_time() -> None:
    started = time.monotonic()
    doc = run("nested.html", nested_html(20_000))
    assert doc.sections[0].text == "x" * 20_000
    assert time.monotonic() - started < 15  # minutes before: each string walked up 20,000 parents


def test_markdown_heading_of_unclosed_brackets_is_read_in_linear_time() -> None:
    started = time.monotonic()
    doc = run("brackets.md", markdown_bracket_heading(50_000))
    assert doc.sections[0].heading == "[" * 50_000
    assert time.monotonic() - started < 8  # the link pattern took 20 s, quadratic in the line


def test_deeply_nested_yaml_and_json_are_refused_as_such() -> None:
    assert refused("deep.yaml", deep_yaml()) == "deep.yaml is nested too deeply for me to read."
    assert refused("deep.json", deep_json()) == "deep.json is nested too deeply for me to read."


def test_a_parse_past_its_time_budget_is_stopped_and_its_process_killed() -> None:
    started = time.monotonic()
    with pytest.raises(UserFacingError) as caught:
        parse_isolated(_Upload("flood.html", "html", tag_flood_html(3 * MB), LIMIT), seconds=1)
    assert caught.value.message.startswith("flood.html took longer than 1 s to read, so I stopped reading")
    assert time.monotonic() - started < 5
    assert _parse_children_gone(within=2.0)  # not left running, holding a core and an ingest slot


def test_a_parse_past_its_memory_budget_is_stopped_with_a_reason() -> None:
    numbers = json.dumps(list(range(2_000_000))).encode()  # 15 MB of JSON, far more as Python objects
    with pytest.raises(UserFacingError) as caught:
        parse_isolated(_Upload("numbers.json", "json", numbers, 20 * MB), memory=64 * MB)
    assert caught.value.message.startswith("numbers.json needs more memory than I allow for one file")


def test_at_most_two_parses_run_at_once_so_their_memory_caps_add_up_to_a_known_bound() -> None:
    flood = _Upload("flood.html", "html", tag_flood_html(3 * MB), LIMIT)
    most = 0

    def parse() -> None:
        with contextlib.suppress(UserFacingError):
            parse_isolated(flood, seconds=1)

    threads = [threading.Thread(target=parse) for _ in range(4)]
    for thread in threads:
        thread.start()
    while any(thread.is_alive() for thread in threads):
        most = max(most, len(_parse_children()))
        time.sleep(0.02)
    assert most == sandbox.PARALLEL_PARSES == 2


def _parse_children() -> list[str]:
    helper = sandbox._HELPER._process
    assert helper is not None
    tasks = Path(f"/proc/{helper.pid}/task").glob("*/children")
    return [child for task in tasks for child in task.read_text().split()]


def _parse_children_gone(*, within: float) -> bool:
    """No process left under the sandbox's helper."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if not _parse_children():
            return True
        time.sleep(0.05)
    return False
