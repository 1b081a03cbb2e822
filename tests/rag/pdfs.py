"""A small PDF writer for tests: Helvetica text at given positions (left-aligned, right-aligned or
centred, with the font's real widths) and straight lines, one content stream per page. Enough to lay
out report pages and their tables, ruled or aligned by whitespace only."""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from pdfminer.fontmetrics import FONT_METRICS

_WIDTHS = FONT_METRICS["Helvetica"][1]


@dataclass(frozen=True)
class Text:
    x: float  # the left edge, the right edge ("right") or the centre ("centre")
    y: float  # the baseline
    size: float
    text: str
    align: str = "left"


@dataclass
class Page:
    texts: list[Text] = field(default_factory=list)
    rules: list[tuple[float, float, float, float]] = field(default_factory=list)  # x0, y0, x1, y1
    raw: bytes = b""  # content-stream operators put after the page's text, as they are

    def add(self, x: float, y: float, size: float, text: str, align: str = "left") -> None:
        self.texts.append(Text(x, y, size, text, align))

    def rule(self, x0: float, y0: float, x1: float, y1: float) -> None:
        self.rules.append((x0, y0, x1, y1))


def text_width(text: str, size: float) -> float:
    return sum(_WIDTHS.get(char, 556) for char in text) * size / 1000


def write_pdf(pages: Sequence[Page], size: tuple[float, float] = (612, 792)) -> bytes:
    objects: list[bytes] = [
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    ]
    pages_id = 1 + 2 * len(pages) + 1
    kids = []
    for page in pages:
        content = b"".join(
            b"0.6 w %.2f %.2f m %.2f %.2f l S\n" % (x0, y0, x1, y1) for x0, y0, x1, y1 in page.rules
        )
        for item in page.texts:
            x = item.x
            if item.align == "right":
                x -= text_width(item.text, item.size)
            elif item.align == "centre":
                x -= text_width(item.text, item.size) / 2
            escaped = item.text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            content += f"BT /F1 {item.size} Tf {x:.2f} {item.y:.2f} Td ({escaped}) Tj ET\n".encode("cp1252")
        packed = zlib.compress(content + page.raw)
        objects.append(
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(packed), packed)
        )
        objects.append(
            b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 %g %g] /Contents %d 0 R "
            b"/Resources << /Font << /F1 1 0 R >> >> >>" % (pages_id, *size, len(objects))
        )
        kids.append(len(objects))
    objects.append(
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    )
    objects.append(b"<< /Type /Catalog /Pages %d 0 R >>" % pages_id)
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        len(objects),
        xref,
    )
    return bytes(out)


def prose_lines(
    page: Page, y: float, sentences: Sequence[str], *, size: float = 10, width: int = 92
) -> float:
    """Sentences set as a left-aligned paragraph of lines of at most `width` characters; the next y."""
    words = " ".join(sentences).split()
    line: list[str] = []
    for word in words:
        if line and len(" ".join([*line, word])) > width:
            page.add(72, y, size, " ".join(line))
            y -= size * 1.35
            line = []
        line.append(word)
    if line:
        page.add(72, y, size, " ".join(line))
        y -= size * 1.35
    return y
