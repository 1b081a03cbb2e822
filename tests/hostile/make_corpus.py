"""The hostile-input corpus: every file an attacker may send threadwise to exhaust it, generated on demand.

    python tests/hostile/make_corpus.py DIR     # writes the corpus into DIR

Nothing here is committed as a binary: each file is built in well under a second (the bombs are
repeated compressed blocks, not a gigabyte compressed for real). `CORPUS` says, per file, what a user
must be told: a phrase of the refusal, or None when the file is harmless once parsed in linear time.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MiB = 1024 * 1024
GiB = 1024 * MiB


def _zeros_deflated(size: int) -> bytes:
    """A raw deflate stream of `size` zero bytes, built from one compressed MiB repeated: a full flush
    makes each block independent of the ones before it."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    block = compressor.compress(bytes(MiB)) + compressor.flush(zlib.Z_FULL_FLUSH)
    blocks, rest = divmod(size, MiB)
    return block * blocks + compressor.compress(bytes(rest)) + compressor.flush(zlib.Z_FINISH)


def _zeros_checksum(checksum: Callable[[bytes, int], int], start: int, size: int) -> int:
    zeros = bytes(MiB)
    value = start
    for offset in range(0, size, MiB):
        value = checksum(zeros[: min(MiB, size - offset)], value)
    return value


def _zip(members: list[tuple[str, bytes, int, int, int]]) -> bytes:
    """A zip from (name, stored bytes, method, declared size, crc), written by hand so a member may
    declare any size it likes."""
    out = bytearray()
    central = bytearray()
    for name, stored, method, declared, crc in members:
        encoded = name.encode()
        offset = len(out)
        fields = struct.pack("<HHHHHIII", 20, 0, method, 0, 0x21, crc, len(stored), declared)
        out += b"PK\x03\x04" + fields + struct.pack("<HH", len(encoded), 0) + encoded + stored
        central += b"PK\x01\x02" + struct.pack("<H", 20) + fields
        central += struct.pack("<HHHHHII", len(encoded), 0, 0, 0, 0, 0, offset) + encoded
    start = len(out)
    end = struct.pack("<HHHHIIH", 0, 0, len(members), len(members), len(central), start, 0)
    return bytes(out + central + b"PK\x05\x06" + end)


def _plain(name: str, data: bytes) -> tuple[str, bytes, int, int, int]:
    return name, data, 0, len(data), zlib.crc32(data)


def zip_bomb_docx(inflates_to: int = GiB) -> bytes:
    """A .docx whose word/document.xml declares 1,000 bytes (and their CRC) but inflates to
    `inflates_to`: a reader that trusts the declared size gets 1,000 good bytes, after inflating all."""
    deflated, crc = _zeros_deflated(inflates_to), zlib.crc32(bytes(1000))
    return _zip([*_docx_parts(), ("word/document.xml", deflated, 8, 1000, crc)])


def _docx_parts() -> list[tuple[str, bytes, int, int, int]]:
    """A .docx's content types and relationships, pointing at word/document.xml."""
    types = (
        b'<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        b'<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        b'<Override PartName="/word/document.xml" ContentType="application/vnd.openxmlformats-'
        b'officedocument.wordprocessingml.document.main+xml"/></Types>'
    )
    rels = (
        b'<?xml version="1.0"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/'
        b'relationships"><Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/'
        b'2006/relationships/officeDocument" Target="word/document.xml"/></Relationships>'
    )
    return [_plain("[Content_Types].xml", types), _plain("_rels/.rels", rels)]


def token_flood_docx(words: int = 4_900_000) -> bytes:
    """A 10 KB .docx, honest about its sizes, whose one paragraph is "a a a …" (9.8 MB of text, under
    the ratio check's 10 MB floor): millions of word pieces for the tokenizer in one section."""
    document = (
        b'<?xml version="1.0"?><w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/'
        b'2006/main"><w:body><w:p><w:r><w:t xml:space="preserve">' + b"a " * words + b"</w:t></w:r></w:p>"
        b"</w:body></w:document>"
    )
    packer = zlib.compressobj(9, zlib.DEFLATED, -15)
    deflated = packer.compress(document) + packer.flush()
    parts = _docx_parts()
    return _zip([*parts, ("word/document.xml", deflated, 8, len(document), zlib.crc32(document))])


def _pdf(objects: list[bytes]) -> bytes:
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%b\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def pdf_flate_bomb(inflates_to: int = GiB) -> bytes:
    """A one-page PDF whose content stream FlateDecodes to `inflates_to` bytes (about 1 MB per GiB)."""
    adler = _zeros_checksum(zlib.adler32, 1, inflates_to)
    stream = b"\x78\xda" + _zeros_deflated(inflates_to) + struct.pack(">I", adler)  # zlib's wrapper
    return _pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << >> >>",
            b"<< /Length %d /Filter /FlateDecode >>\nstream\n%b\nendstream" % (len(stream), stream),
        ]
    )


def nested_html(depth: int = 20_000) -> bytes:
    """`depth` nested <span>s, each with a letter in it: 14 bytes a level (280 KB for 20,000)."""
    return b"<span>x" * depth + b"</span>" * depth


def tag_flood_html(size: int = 9 * MiB) -> bytes:
    """Millions of empty elements: a small page whose parse tree would take gigabytes."""
    return b"<i>" * (size // 3)


def deep_json(depth: int = 100_000) -> bytes:
    return b"[" * depth + b"]" * depth


def deep_yaml(depth: int = 100_000) -> bytes:
    return b"a: " + b"[" * depth + b"]" * depth + b"\n"


def yaml_alias_bomb(levels: int = 9) -> bytes:
    """Billion laughs: each level is nine aliases of the one before; 9 levels hold 9**9 strings."""
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for level in range(1, levels):
        name, previous = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [{', '.join(['*' + previous] * 9)}]")
    return "\n".join(lines).encode()


def csv_huge_field(size: int = 5 * MiB) -> bytes:
    return b'name,notes\nbig,"' + b"x" * size + b'"\n'


def csv_sniffer_trap(pairs: int = 10_000) -> bytes:
    """Quote-after-delimiter pairs with no closing quote: each is a start the dialect sniffer's regular
    expressions try against the rest of the sample."""
    return b",'" * pairs + b"\n"


def markdown_bracket_heading(brackets: int = 50_000) -> bytes:
    """A heading of unclosed `[`s: a link pattern tried from each one scans to the end of the line."""
    return b"# " + b"[" * brackets + b"\n\nBody text.\n"


@dataclass(frozen=True)
class Hostile:
    name: str
    make: Callable[[], bytes]
    refusal: str | None  # a phrase of the reason the user gets; None: parsed (in linear time)


CORPUS: tuple[Hostile, ...] = (
    Hostile("zip-bomb.docx", zip_bomb_docx, "it looks like a zip bomb"),
    Hostile("flate-bomb.pdf", pdf_flate_bomb, "needs more memory than I allow for one file"),
    Hostile("nested.html", nested_html, None),
    Hostile("tag-flood.html", tag_flood_html, "so I stopped reading it"),  # out of memory or time
    Hostile("deep.json", deep_json, "is nested too deeply for me to read"),
    Hostile("deep.yaml", deep_yaml, "is nested too deeply for me to read"),
    Hostile("laughs.yaml", yaml_alias_bomb, "I'm refusing to read it"),
    Hostile("huge-field.csv", csv_huge_field, "field larger than field limit"),
    Hostile("sniffer-trap.csv", csv_sniffer_trap, None),
    Hostile("brackets.md", markdown_bracket_heading, None),
)


def write_corpus(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for hostile in CORPUS:
        path = folder / hostile.name
        path.write_bytes(hostile.make())
        written.append(path)
    return written


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: make_corpus.py DIR")
    for path in write_corpus(Path(sys.argv[1])):
        print(f"{path}  {path.stat().st_size:,} bytes")
