"""Text primitives every report shares: formats, number cells with intervals, grids, CSV."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence

from gather_envs.errors import ConfigError

FORMATS = ("table", "md", "csv", "json")
"""Output formats every ``render_*`` function accepts."""

OVERALL_SECTION = "all"
"""Section name of the table over all tasks (the others are family names)."""

DIGITS = 3
"""Decimals shown in table and Markdown output (CSV and JSON keep full precision)."""

MISSING = "-"


def number_text(value: float | None, digits: int = DIGITS) -> str:
    return MISSING if value is None else f"{value:.{digits}f}"


def cell(value: float, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return number_text(value)
    return f"{number_text(value)} [{number_text(low)}, {number_text(high)}]"


def check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


def grid(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
    """Rows aligned in columns: pipes for Markdown, spaces for the terminal."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    if markdown:
        header = [h.replace("|", "\\|") for h in header]
        rows = [[c.replace("|", "\\|") for c in r] for r in rows]
        widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
        lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)) + " |"]
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |" for r in rows]
    else:
        lines = ["  ".join(h.rjust(w) for h, w in zip(header, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(lines)


def csv_text(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


FLOOR_ROW = "floor"
"""Row (or column) label of the chance floor in text tables."""


def bullets(lines: Sequence[str], markdown: bool) -> str:
    """A legend's lines as a Markdown list or indented terminal lines."""
    return "\n".join(f"- {line}" if markdown else f"  {line}" for line in lines)
