"""PDF tables read with their structure: every row a line naming its row, column and value, on the
right page, in place of the table's jumble of figures; and a question about one figure finds its row.
The PDFs are laid out here (tests/rag/pdfs.py) like real ones: statements aligned by whitespace with
two-line period headers, and a ruled specification table."""

from __future__ import annotations

import re
import time

import pytest

import rag.extract.pdf as pdf_module
from rag.extract import SUPPORTED_EXTENSIONS, extract
from rag.extract.common import _Upload
from rag.extract.parse import parse_sections
from rag.extract.pdf_tables import OutOfTime, time_limit
from rag.types import ExtractedDocument, Section, Upload
from tests.conftest import EngineFactory
from tests.rag.pdfs import Page, prose_lines, text_width, write_pdf

LIMIT = 10 * 1024 * 1024
COLUMNS = (330, 400, 480, 550)  # right edges of the four figure columns

INTRO = (
    "This quarterly report discusses the results of operations and the financial condition of the company "
    "for the periods presented below.",
    "The condensed consolidated financial statements are unaudited and should be read together with the "
    "annual report filed for the prior year, which describes the accounting policies in full.",
)
AFTER = (
    "Revenue grew compared with the same period of the prior year, driven by higher volumes in the "
    "services segment, while pricing remained stable across all regions.",
)

# (label, indent, lines of figures for the four columns: this quarter, last year's, six months, last year's)
LINES = [
    ("Revenue:", 0, None),
    ("Product revenue", 10, (0, 0, 0, 0)),
    ("Service revenue", 10, (1, 1, 1, 1)),
    ("Total revenue", 0, (2, 2, 2, 2)),
    ("Cost of revenue", 0, (3, 3, 3, 3)),
    ("Gross profit", 0, (4, 4, 4, 4)),
    ("Operating expenses:", 0, None),
    ("Research and development", 10, (5, 5, 5, 5)),
    ("Selling, general and administrative", 10, (6, 6, 6, 6)),
    ("Total operating expenses", 10, (7, 7, 7, 7)),
    ("Operating income", 0, (8, 8, 8, 8)),
    ("Net income", 0, (9, 9, 9, 9)),
]


def figures(seed: int) -> list[tuple[int, int, int, int]]:
    """Ten rows of four figures that differ from one statement (seed) to the next."""
    rows = []
    for row in range(10):
        base = 1_000 + 7_919 * ((seed * 31 + row * 17) % 97) + 13 * seed
        rows.append((base, base - 101 * (row + 1), 2 * base + 57, 2 * base - 311))
    return rows


def statement_page(
    company: str, period: str, half: str, years: tuple[str, str], numbers: list[tuple[int, int, int, int]]
) -> Page:
    """A page of a quarterly report: prose, the statement's title and units line, a two-line period
    header over four columns of figures ("$" set apart on the first and total rows), prose after."""
    page = Page()
    page.add(72, 750, 12, "Item 1. Financial Statements")
    y = prose_lines(page, 728, INTRO)
    y -= 10
    page.add(306, y, 11, f"{company}", "centre")
    page.add(306, y - 14, 11, "Condensed Consolidated Statements of Operations", "centre")
    page.add(306, y - 27, 9, "(in thousands of U.S. dollars, unaudited)", "centre")
    y -= 50
    page.add((COLUMNS[0] + COLUMNS[1]) / 2 - 15, y, 9, f"Three Months Ended {period},", "centre")
    page.add((COLUMNS[2] + COLUMNS[3]) / 2 - 15, y, 9, f"{half} Ended {period},", "centre")
    y -= 12
    for right, year in zip(COLUMNS, years * 2, strict=True):
        page.add(right, y, 9, year, "right")
    page.rule(72, y - 4, COLUMNS[-1], y - 4)
    for label, indent, row in LINES:
        y -= 13
        page.add(72 + indent, y, 9, label)
        if row is None:
            continue
        values = numbers[row[0]]
        for right, value in zip(COLUMNS, values, strict=True):
            page.add(right, y, 9, f"{value:,}", "right")
            if label.startswith("Total") or label == "Product revenue":
                page.add(right - 50, y, 9, "$")
    y -= 30
    prose_lines(page, y, AFTER)
    return page


def cover_page(company: str, period: str) -> Page:
    page = Page()
    page.add(306, 700, 16, "QUARTERLY REPORT", "centre")
    page.add(306, 670, 14, company, "centre")
    page.add(306, 648, 11, f"For the quarterly period ended {period}", "centre")
    prose_lines(
        page,
        600,
        (
            "The registrant has filed all reports required to be filed during the preceding twelve months "
            "and has been subject to such filing requirements for the past ninety days.",
        ),
    )
    return page


def quarterly_report(
    company: str, period: str, years: tuple[str, str], seed: int, half: str = "Six Months"
) -> bytes:
    return write_pdf(
        [
            cover_page(company, f"{period}, {years[0]}"),
            statement_page(company, period, half, years, figures(seed)),
        ]
    )


def run(name: str, data: bytes) -> ExtractedDocument:
    return extract(name, data, allowed_types=SUPPORTED_EXTENSIONS, max_bytes=LIMIT)


def table_section(doc: ExtractedDocument) -> Section:
    tables = [s for s in doc.sections if " — " in s.text]
    assert len(tables) == 1, [s.text for s in doc.sections]
    return tables[0]


# --- extraction (through the sandbox's child, as every upload is parsed) ------------------------------


def test_each_row_names_its_label_period_and_value_on_the_tables_page() -> None:
    numbers = figures(3)
    doc = run("acme-q2.pdf", quarterly_report("Acme Industries", "June 30", ("2023", "2022"), seed=3))

    table = table_section(doc)
    assert table.page == 2
    assert table.heading == (
        "Acme Industries Condensed Consolidated Statements of Operations "
        "(in thousands of U.S. dollars, unaudited)"
    )
    lines = table.text.splitlines()
    assert lines[0] == (
        "Three Months Ended June 30, 2023 | Three Months Ended June 30, 2022 | "
        "Six Months Ended June 30, 2023 | Six Months Ended June 30, 2022"
    )
    net = numbers[9]
    assert (
        f"Net income — Three Months Ended June 30, 2023: {net[0]:,}; Three Months Ended June 30, 2022: "
        f"{net[1]:,}; Six Months Ended June 30, 2023: {net[2]:,}; Six Months Ended June 30, 2022: {net[3]:,}"
    ) in lines
    # a "$" set apart from its figure stays with it; rows under an indented group name the group
    total = numbers[2]
    assert f"Total revenue — Three Months Ended June 30, 2023: $ {total[0]:,};" in table.text
    research = numbers[5]
    assert (
        f"Operating expenses: Research and development — Three Months Ended June 30, 2023: {research[0]:,};"
        in (table.text)
    )
    assert "Revenue:" in lines and "Operating income — " in table.text
    assert not any(line.startswith("Operating expenses: Operating income") for line in lines)  # group ended


def test_the_tables_figures_are_not_also_left_as_a_jumble_in_the_page_text() -> None:
    numbers = figures(3)
    doc = run("acme-q2.pdf", quarterly_report("Acme Industries", "June 30", ("2023", "2022"), seed=3))
    page_two = [s for s in doc.sections if s.page == 2]
    text = [s for s in page_two if " — " not in s.text]
    assert len(page_two) == 3 and len(text) == 2  # text before the table, the table, text after it
    running = "\n".join(s.text for s in text)
    assert "Item 1. Financial Statements" in text[0].text
    assert "Condensed Consolidated Statements of Operations" in text[0].text  # the caption stays too
    assert text[1].text.startswith("Revenue grew compared with the same period")
    for row in numbers:
        assert f"{row[0]:,}" not in running
    assert "Net income" not in running and "Three Months Ended" not in running
    # the cover page is read as before: one Section, no table
    assert [s for s in doc.sections if s.page == 1] == [doc.sections[0]]
    assert doc.sections[0].text.startswith(
        "QUARTERLY REPORT\nAcme Industries\nFor the quarterly period ended"
    )


def test_page_numbers_stay_right_when_only_a_later_page_has_a_table() -> None:
    pages = [cover_page("Initech Holdings", "March 31, 2023"), Page(), Page()]
    prose_lines(pages[1], 720, INTRO * 3)
    pages[2] = statement_page("Initech Holdings", "March 31", "Six Months", ("2023", "2022"), figures(5))
    doc = run("initech.pdf", write_pdf(pages))
    assert [s.page for s in doc.sections] == [1, 2, 3, 3, 3]
    assert table_section(doc).page == 3
    assert doc.sections[1].text.startswith("This quarterly report discusses")


def test_a_ruled_specification_table_with_a_caption() -> None:
    page = Page()
    y = prose_lines(page, 740, ("The sensor module is specified for the following operating conditions.",))
    page.add(72, y - 8, 10, "Table 3. Recommended operating conditions")
    rows = [
        ("Parameter", "Min", "Typ", "Max", "Unit"),
        ("Supply voltage", "3.0", "3.3", "3.6", "V"),
        ("Operating temperature", "-40", "25", "85", "°C"),
        ("Sample rate", "1", "100", "400", "Hz"),
        ("Interface", "I2C", "SPI", "—", "—"),
    ]
    xs = (72, 250, 320, 390, 460, 540)
    top = y - 16
    for number, row in enumerate(rows):
        baseline = top - 14 * number - 10
        for x, cell in zip(xs, row, strict=False):
            page.add(x + 4, baseline, 9, cell)
    for number in range(len(rows) + 1):
        page.rule(xs[0], top - 14 * number, xs[-1], top - 14 * number)
    for x in xs:
        page.rule(x, top, x, top - 14 * len(rows))
    doc = run("sensor.pdf", write_pdf([page]))
    table = table_section(doc)
    assert table.heading == "Table 3. Recommended operating conditions"
    assert table.text.splitlines() == [
        "Parameter | Min | Typ | Max | Unit",
        "Supply voltage — Min: 3.0; Typ: 3.3; Max: 3.6; Unit: V",
        "Operating temperature — Min: -40; Typ: 25; Max: 85; Unit: °C",
        "Sample rate — Min: 1; Typ: 100; Max: 400; Unit: Hz",
        "Interface — Min: I2C; Typ: SPI; Max: —; Unit: —",
    ]
    assert "Supply voltage" not in "\n".join(s.text for s in doc.sections if s is not table)


def test_a_column_of_figures_without_a_header_stays_running_text() -> None:
    page = Page()
    for number in range(4):
        page.add(72, 700 - 14 * number, 9, f"Item {number + 1}")
        for right, value in zip(COLUMNS, (1_013 + number, 2_000 + number, 7, 9), strict=True):
            page.add(right, 700 - 14 * number, 9, f"{value:,}", "right")
    doc = run("items.pdf", write_pdf([page]))
    assert len(doc.sections) == 1 and doc.sections[0].heading == ""
    assert doc.sections[0].text.startswith("Item 1 1,013 2,000")  # as pdfium reads it
    assert " — " not in doc.sections[0].text


def test_pages_that_do_not_look_tabular_are_not_read_again(monkeypatch: pytest.MonkeyPatch) -> None:
    # in this process (the sandbox's child would not see the patch): prose pages never reach pdfplumber
    def no(*args: object) -> object:
        raise AssertionError("a page without figures or rules was read for tables")

    monkeypatch.setattr(pdf_module, "find_tables", no)
    pages = [Page(), Page()]
    for page in pages:
        prose_lines(page, 720, INTRO * 4 + ("In 2023 the company opened 12 offices and hired 340 people.",))
    sections = parse_sections(_Upload("prose.pdf", "pdf", write_pdf(pages), LIMIT))
    assert [s.page for s in sections] == [1, 2]


def test_tables_are_given_up_when_their_time_is_spent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pdf_module, "TABLE_SECONDS", 0.0)
    data = quarterly_report("Acme Industries", "June 30", ("2023", "2022"), seed=3)
    sections = parse_sections(_Upload("acme.pdf", "pdf", data, LIMIT))
    assert [s.page for s in sections] == [1, 2]  # the page's text as before: figures in running text
    assert f"{figures(3)[9][0]:,}" in sections[1].text


# --- pages that would take pdfminer, pdfplumber or the alignment test minutes: stopped at the budget --


def ruled_grid(lines: int) -> tuple[list[Page], tuple[float, float]]:
    """A statement page with a grid of lines × lines ruling lines 4 pt apart drawn over it: pdfplumber
    pairs every intersection with every later one to find cells (40,000 intersections: a minute)."""
    page = statement_page("Acme Industries", "June 30", "Six Months", ("2023", "2022"), figures(3))
    end = 40 + 4 * lines
    for number in range(lines + 1):
        page.rule(40, 40 + 4 * number, end, 40 + 4 * number)
        page.rule(40 + 4 * number, 40, 40 + 4 * number, end)
    return [page], (end + 40, end + 40)


def operator_flood(operators: int = 3_000_000) -> tuple[list[Page], tuple[float, float]]:
    """A statement page whose content stream then sets the line width millions of times: nothing for
    pdfium, twenty seconds and more for pdfminer's content parser (12 MB of operators, 12 KB packed)."""
    page = statement_page("Acme Industries", "June 30", "Six Months", ("2023", "2022"), figures(3))
    page.raw = b"1 w\n" * operators
    return [page], (612, 792)


def wide_rows(words: int = 3_300) -> tuple[list[Page], tuple[float, float]]:
    """Three rows of thousands of tiny figures each (under the 20,000 characters of a page that is
    looked at for tables): every figure is a cell, and each was compared with every column."""
    page = Page()
    for row in range(3):
        for number in range(words):
            page.add(10 + 1.5 * number, 700 - row, 0.5, "1")
    return [page], (10 + 1.5 * words + 10, 792)


@pytest.mark.parametrize("make", [ruled_grid, operator_flood, wide_rows])
def test_a_page_that_would_take_minutes_to_read_for_tables_is_stopped_at_the_budget(
    monkeypatch: pytest.MonkeyPatch, make: object
) -> None:
    # in this process, with a 1 s budget: the page is read as text, the tables given up on time
    monkeypatch.setattr(pdf_module, "TABLE_SECONDS", 1.0)
    pages, size = make(200) if make is ruled_grid else make()  # type: ignore[operator]
    started = time.monotonic()
    sections = parse_sections(_Upload("hostile.pdf", "pdf", write_pdf(pages, size), LIMIT))
    assert time.monotonic() - started < 6.0
    assert [s.page for s in sections] == [1]
    assert "Net income" in sections[0].text or sections[0].text.startswith("1 1 1 1")


def test_an_interrupt_lost_where_python_ignores_exceptions_comes_again() -> None:
    """The budget's interrupt can land where Python swallows exceptions (a weakref callback run by
    the garbage collector inside pdfplumber: seen in CI, the page then took 60 s): it comes again."""
    started = time.monotonic()
    with pytest.raises(OutOfTime), time_limit(0.2):
        try:
            while time.monotonic() - started < 5:
                time.sleep(0.01)
        except OutOfTime:
            pass  # swallowed, as in a callback
        while time.monotonic() - started < 5:
            time.sleep(0.01)
    assert time.monotonic() - started < 1.0


def test_an_upload_whose_tables_would_take_a_minute_is_read_as_text_within_its_limits() -> None:
    # through the parse child (20 s to read a file): the table budget stops pdfplumber, the file is kept
    pages, size = ruled_grid(200)
    data = write_pdf(pages, size)
    assert len(data) < 10_000
    doc = run("drawing.pdf", data)
    assert [s.page for s in doc.sections] == [1]
    assert f"Net income {figures(3)[9][0]:,}" in doc.sections[0].text


def test_the_test_writer_right_aligns_with_the_fonts_widths() -> None:
    assert text_width("1,234", 10) == pytest.approx(5 * 5.56 - 2.78)


# --- a question about one figure finds its row (the engine's ingest and search) ----------------------

KB = "kb-statements"
REPORTS = {
    "acme-2023-q1.pdf": ("Acme Industries", "March 31", "Three Months", 11),
    "acme-2023-q2.pdf": ("Acme Industries", "June 30", "Six Months", 12),
    "initech-2023-q2.pdf": ("Initech Holdings", "June 30", "Six Months", 13),
}


@pytest.fixture
async def statements(make_engine: EngineFactory):  # type: ignore[no-untyped-def]
    engine = make_engine()
    uploads = [
        Upload(name, quarterly_report(company, period, ("2023", "2022"), seed, half))
        for name, (company, period, half, seed) in REPORTS.items()
    ]
    await engine.ingest_many(KB, uploads)
    return engine


@pytest.mark.parametrize(
    ("question", "document", "row", "column"),
    [
        ("What was Acme's net income for the three months ended June 30, 2023?", "acme-2023-q2.pdf", 9, 0),
        ("How much did Initech spend on research and development in Q2 2023?", "initech-2023-q2.pdf", 5, 0),
        ("Acme Industries gross profit, quarter ended March 31, 2023", "acme-2023-q1.pdf", 4, 0),
        ("What was Acme's cost of revenue in the six months ended June 30, 2022?", "acme-2023-q2.pdf", 3, 3),
    ],
)
async def test_a_question_about_one_figure_finds_the_row_that_holds_it(
    statements, question: str, document: str, row: int, column: int
) -> None:  # type: ignore[no-untyped-def]
    passages = await statements.search(KB, question, top_k=5)
    first = passages[0]
    value = f"{figures(REPORTS[document][3])[row][column]:,}"
    assert first.document == document, [(p.document, p.text[:80]) for p in passages]
    assert first.locator.startswith("p. 2, "), first.locator
    label = next(line[0] for line in LINES if line[2] == (row,) * 4)
    assert re.search(rf"^(\w[\w ]*: )?{label} — .*{value}", first.text, re.MULTILINE), first.text


def test_a_ruled_form_of_name_value_boxes_stays_running_text() -> None:
    # forms (a titled box of "Name: | value | Name: | value" rows) read well as they are
    page = Page()
    rows = [
        ("Pilot Information",),
        ("Certificate:", "Private", "Age:", "85, Male"),
        ("Flight Time:", "2319 hours", "Last Medical Exam:", "06/01/2007"),
        ("Seat Occupied:", "Left", "Restraint Used:", "Seatbelt"),
    ]
    xs = (72, 200, 320, 440, 540)
    for number, row in enumerate(rows):
        for x, cell in zip(xs, row, strict=False):
            page.add(x + 4, 700 - 14 * number - 10, 9, cell)
        page.rule(xs[0], 700 - 14 * number, xs[-1], 700 - 14 * number)
    page.rule(xs[0], 700 - 14 * len(rows), xs[-1], 700 - 14 * len(rows))
    for x in xs:
        page.rule(x, 700 - (0 if x in (xs[0], xs[-1]) else 14), x, 700 - 14 * len(rows))
    doc = run("form.pdf", write_pdf([page]))
    assert len(doc.sections) == 1 and " — " not in doc.sections[0].text
    assert "Certificate: Private Age: 85, Male" in doc.sections[0].text
