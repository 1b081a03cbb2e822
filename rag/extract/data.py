"""Data formats: JSON and YAML flattened to `a.b[0].c: value` lines, CSV rows as `column: value` lists."""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

import yaml

from rag.errors import UserFacingError
from rag.extract.common import _read_text, _Upload
from rag.types import Section

_DATA_SECTION_CHARS = 2000
_MAX_NESTING = 64
_CSV_ROWS_PER_SECTION = 50
_CSV_SNIFF_CHARS = 4096
_SIMPLE_KEY = re.compile(r"^[A-Za-z_][\w-]*$")


class _Flattener:
    """Renders nested data as `a.b[0].c: value` lines, within a budget of characters so a YAML alias
    bomb (a few KB that expand to gigabytes) is refused instead of expanded."""

    def __init__(self, budget: int) -> None:
        self.budget = budget

    def lines(self, value: Any, path: str) -> list[str]:
        out: list[str] = []
        self._walk(value, path, out, 0)
        return out

    def _walk(self, value: Any, path: str, out: list[str], depth: int) -> None:
        if isinstance(value, dict | list) and value and depth < _MAX_NESTING:
            pairs = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in pairs:
                self._walk(item, _child_path(path, key, isinstance(value, list)), out, depth + 1)
            return
        line = f"{path}: {_scalar(value, depth)}" if path else _scalar(value, depth)
        self.budget -= len(line) + 1
        if self.budget < 0:
            raise _DataTooBig
        out.append(line)


class _DataTooBig(Exception):
    pass


def _child_path(path: str, key: Any, in_list: bool) -> str:
    if in_list:
        return f"{path}[{key}]"
    text = str(key)
    if _SIMPLE_KEY.match(text):
        return f"{path}.{text}" if path else text
    return f"{path}[{json.dumps(text, ensure_ascii=False)}]"


def _scalar(value: Any, depth: int) -> str:
    if isinstance(value, dict | list):
        return "(nested too deeply)" if depth >= _MAX_NESTING else ("{}" if isinstance(value, dict) else "[]")
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def _data_sections(name: str, value: Any, budget: int, prefix: str = "") -> list[Section]:
    """One Section per top-level key (or run of array items), small neighbours merged."""
    flattener = _Flattener(budget)
    try:
        if isinstance(value, dict) and value:
            items = [
                (str(key), flattener.lines(item, _child_path("", key, False))) for key, item in value.items()
            ]
            return _grouped_data(items, prefix, ranges=False)
        if isinstance(value, list) and value:
            items = [(f"[{index}]", flattener.lines(item, f"[{index}]")) for index, item in enumerate(value)]
            return _grouped_data(items, prefix, ranges=True)
        return [Section(text="\n".join(flattener.lines(value, "")), heading=prefix)]
    except _DataTooBig:
        raise UserFacingError(
            f"{name} expands to far more text than its size when read (it may repeat content with "
            "aliases), so I'm refusing to read it. Please upload a plain export instead."
        ) from None


def _grouped_data(items: list[tuple[str, list[str]]], prefix: str, *, ranges: bool) -> list[Section]:
    groups: list[tuple[list[str], list[str]]] = []
    group_size = 0
    for label, lines in items:
        size = sum(len(line) + 1 for line in lines)
        if groups and group_size + size <= _DATA_SECTION_CHARS:
            groups[-1][0].append(label)
            groups[-1][1].extend(lines)
            group_size += size
        else:
            groups.append(([label], list(lines)))
            group_size = size
    return [
        Section(text="\n".join(lines), heading=_join_heading(prefix, _group_label(labels, ranges)))
        for labels, lines in groups
    ]


def _group_label(labels: list[str], ranges: bool) -> str:
    if len(labels) == 1:
        return labels[0]
    if ranges:
        return f"{labels[0]}-{labels[-1]}"
    joined = ", ".join(labels)
    return joined if len(joined) <= 80 else f"{labels[0]} … {labels[-1]}"


def _join_heading(prefix: str, label: str) -> str:
    return f"{prefix} > {label}" if prefix and label else prefix or label


def _expansion_budget(data: bytes) -> int:
    return 20 * len(data) + 1_000_000


def _parse_json(upload: _Upload) -> list[Section]:
    text = _read_text(upload).text
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserFacingError(
            f"{upload.name} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}). "
            "Please fix it and upload it again."
        ) from exc
    except RecursionError as exc:
        raise _too_deep(upload.name) from exc
    return _data_sections(upload.name, value, _expansion_budget(upload.data))


def _too_deep(name: str) -> UserFacingError:
    return UserFacingError(f"{name} is nested too deeply for me to read.")


def _parse_yaml(upload: _Upload) -> list[Section]:
    text = _read_text(upload).text
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # same safe constructors, in C
    try:
        documents = [doc for doc in yaml.load_all(text, Loader=loader) if doc is not None]
    except yaml.YAMLError as exc:
        if "nesting depth" in str(getattr(exc, "problem", "")):  # libyaml's own limit
            raise _too_deep(upload.name) from exc
        raise UserFacingError(
            f"{upload.name} is not valid YAML ({_yaml_problem(exc)}). Please fix it and upload it again."
        ) from exc
    budget = _expansion_budget(upload.data)
    if len(documents) == 1:
        return _data_sections(upload.name, documents[0], budget)
    sections: list[Section] = []
    for number, document in enumerate(documents, start=1):
        added = _data_sections(upload.name, document, budget, prefix=f"document {number}")
        budget -= sum(len(section.text) + 1 for section in added)
        sections.extend(added)
    return sections


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None)
    problem = getattr(exc, "problem", None) or "it could not be parsed"
    return f"line {mark.line + 1}: {problem}" if mark is not None else str(problem)


def _parse_csv(upload: _Upload) -> list[Section]:
    text = _read_text(upload).text
    reader = csv.reader(io.StringIO(text, newline=""), dialect=_csv_dialect(text))
    header: list[str] | None = None
    rows: list[tuple[int, int, str]] = []  # (first line, last line, rendered row)
    last_line = 0
    try:
        for row in reader:
            first, last_line = last_line + 1, reader.line_num
            if header is None:
                header = [cell.strip() for cell in row] if any(cell.strip() for cell in row) else None
            elif rendered := _csv_row(header, row):
                rows.append((first, last_line, rendered))
    except csv.Error as exc:
        raise UserFacingError(
            f"{upload.name} could not be read as CSV (line {reader.line_num}: {exc}). "
            "Please check the file and upload it again."
        ) from exc
    return _csv_sections(header or [], rows)


def _csv_dialect(text: str) -> type[csv.Dialect]:
    """Semicolon- and tab-separated exports are common; sniff, and fall back to plain commas. The
    sniffer's patterns take quadratic time on some inputs (20 KB of `,'`: seconds), so it sees the
    first 4 KB: dozens of rows of a real table."""
    try:
        return csv.Sniffer().sniff(text[:_CSV_SNIFF_CHARS], delimiters=",;\t|")
    except csv.Error:
        return csv.excel


def _csv_row(header: list[str], row: list[str]) -> str:
    pairs = [(_column_name(header, index), value.strip()) for index, value in enumerate(row)]
    return "; ".join(f"{name}: {value}" for name, value in pairs if value)


def _column_name(header: list[str], index: int) -> str:
    return header[index] if index < len(header) and header[index] else f"column {index + 1}"


def _csv_sections(header: list[str], rows: list[tuple[int, int, str]]) -> list[Section]:
    if not rows:
        columns = "; ".join(name for name in header if name)
        return [Section(text=f"Columns: {columns}", line_start=1, line_end=1)] if columns else []
    sections = []
    for offset in range(0, len(rows), _CSV_ROWS_PER_SECTION):
        group = rows[offset : offset + _CSV_ROWS_PER_SECTION]
        text = "\n".join(rendered for _, _, rendered in group)
        sections.append(Section(text=text, line_start=group[0][0], line_end=group[-1][1]))
    return sections
