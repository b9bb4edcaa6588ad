"""The one CSV writer of every export, and the one rule that keeps spreadsheet formulas out of it.

A spreadsheet that opens a CSV runs a cell beginning with `=`, `+`, `-` or `@` as a formula
(`=HYPERLINK(...)`, `=cmd|' /C calc'!A0`), and tab or carriage return can hide such a start. Cells
come from outside (a message subject from any sender, a folder name, a server's error text), so every
text cell that begins with one of those characters is written with a single quote in front
(OWASP, "CSV Injection"). The account import reads such a cell back to its value (restore()).
"""

from __future__ import annotations

import csv
from collections.abc import Iterable, Sequence
from typing import Any

from django.http import HttpResponse

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
NEUTRALISER = "'"

Cell = str | int | float | None


def neutralise(value: str) -> str:
    """`value` with a single quote in front when it begins like a formula; otherwise unchanged."""
    return NEUTRALISER + value if value.startswith(FORMULA_STARTS) else value


def restore(value: str) -> str:
    """The inverse of neutralise(): drop the quote neutralise() put in front of a formula start."""
    if value.startswith(NEUTRALISER) and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


def cell(value: Cell) -> Cell:
    """A cell as written: text neutralised; numbers (counts, sizes) and None as they are."""
    return neutralise(value) if isinstance(value, str) else value


def write_csv(out: Any, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> None:
    """Write CSV (RFC 4180 quoting) to `out` (anything with write(str): a file, an HttpResponse): the
    header, then the rows, every text cell neutralised. Every CSV export goes through here."""
    writer = csv.writer(out)
    writer.writerow(header)
    writer.writerows([cell(value) for value in row] for row in rows)


def csv_download(filename: str, header: Sequence[str], rows: Iterable[Sequence[Cell]]) -> HttpResponse:
    """An attachment `filename` (UTF-8 CSV) written by write_csv(). `filename` is ours (ASCII, no quotes)."""
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    write_csv(response, header, rows)
    return response
