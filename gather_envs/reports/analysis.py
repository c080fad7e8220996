"""Text renderings of the mechanism analyses (coverage, policy swaps, query perplexity)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from gather_envs.analysis.coverage import Coverage
from gather_envs.analysis.perplexity import SPANS, PerplexityDifference, RunPerplexity, SpanMean
from gather_envs.analysis.swap import SwapRow
from gather_envs.reports.text import DIGITS, MISSING, cell, check_format, csv_text, grid, number_text

MAX_LISTED_TASKS = 10
"""One-sided tasks listed by id in table and Markdown output (JSON and CSV list them all)."""


def _tasks_text(tasks: tuple[tuple[str, int], ...]) -> str:
    if not tasks:
        return "none"
    shown = ", ".join(f"{t} ({h} hops)" for t, h in tasks[:MAX_LISTED_TASKS])
    more = len(tasks) - MAX_LISTED_TASKS
    return f"{len(tasks)}: {shown}" + (f", and {more} more" if more > 0 else "")


def render_coverage(result: Coverage, fmt: str = "table") -> str:
    """The coverage curve of B's boundary by A per budget, and the tasks only one run solves."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps(result.to_json(), indent=2, ensure_ascii=False)
    if fmt == "csv":
        header = ["T", "n", "coverage", "ci_low", "ci_high", "boundary_b", "boundary_a"]
        rows = [
            [e.budget, n, repr(v), "" if lo is None else repr(lo), "" if hi is None else repr(hi),
             e.boundary_b, e.boundary_a]
            for e in result.per_budget
            for n, v, lo, hi in zip(e.ns, e.coverage, e.ci_low, e.ci_high, strict=True)
        ]  # fmt: skip
        return csv_text(header, rows)
    markdown = fmt == "md"
    title = (
        f"Coverage: share of B's boundary ({result.agent_b}) that A ({result.agent_a}) solves within n tries"
    )
    parts = [f"## {title}" if markdown else title]
    for e in result.per_budget:
        parts.append(f"### T = {e.budget}" if markdown else f"[T = {e.budget}]")
        if not e.ns:
            parts.append(f"|B_B| = 0: {result.agent_b} solved no task at T={e.budget}; nothing to cover")
        else:
            rows = [
                [str(n), cell(v, lo, hi)]
                for n, v, lo, hi in zip(e.ns, e.coverage, e.ci_low, e.ci_high, strict=True)
            ]
            parts.append(grid(["n", "|B_B ∩ B_A(n)| / |B_B|"], rows, markdown))
        parts.append(
            f"|B_B| = {e.boundary_b}, |B_A| = {e.boundary_a} (all episodes); at n = {e.ns[-1] if e.ns else 0} "
            f"A covers {number_text(e.coverage[-1] if e.coverage else None)}\n"
            f"only {result.agent_a} solves: {_tasks_text(e.only_a)}\n"
            f"only {result.agent_b} solves: {_tasks_text(e.only_b)}"
        )
    return "\n\n".join(parts) + "\n"


def _diff_cell(value: float, low: float | None, high: float | None, p: float) -> str:
    return (
        f"{value:+.{DIGITS}f}"
        + ("" if low is None or high is None else f" [{low:+.{DIGITS}f}, {high:+.{DIGITS}f}]")
        + f" p={p:.3g}"
    )


def render_swap(rows: Sequence[SwapRow], fmt: str = "table") -> str:
    """PASS@(k,T) per (first → then, J) with intervals, and the paired tests against both pure runs."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps([row.to_json() for row in rows], indent=2, ensure_ascii=False)
    if fmt == "csv":
        header = list(SwapRow.__dataclass_fields__)
        return csv_text(header, [["" if v is None else v for v in row.to_json().values()] for row in rows])
    header = [
        "first → then",
        "J",
        "T",
        "k",
        "PASS@(k,T)",
        "minus pure first (McNemar p)",
        "minus pure then (McNemar p)",
    ]
    body = [
        [
            f"{r.first} → {r.then}",
            str(r.after),
            str(r.budget),
            str(r.k),
            cell(r.pass_at_k, r.ci_low, r.ci_high),
            _diff_cell(r.vs_first, r.vs_first_low, r.vs_first_high, r.vs_first_p),
            _diff_cell(r.vs_then, r.vs_then_low, r.vs_then_high, r.vs_then_p),
        ]
        for r in rows
    ]
    title = "Cross-policy swap: the first J turns from `first`, the rest from `then`"
    lead = f"## {title}\n\n" if fmt == "md" else f"{title}\n"
    return lead + grid(header, body, fmt == "md") + "\n"


def _nll_cell(mean: SpanMean) -> str:
    if mean.nll is None:
        return MISSING
    return f"{cell(mean.nll, mean.low, mean.high)} ({mean.tokens} tok)"


def render_perplexity(
    runs: Sequence[RunPerplexity], differences: Sequence[PerplexityDifference] = (), fmt: str = "table"
) -> str:
    """Per-token NLL of query and reasoning spans per run and group, and B minus A when two runs."""
    check_format(fmt)
    if fmt == "json":
        data: dict[str, Any] = {"runs": [run.to_json() for run in runs]}
        if differences:
            data["b_minus_a"] = [d.to_json() for d in differences]
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "csv":
        header = ["agent", "group", "span", "nll", "ci_low", "ci_high", "tokens", "episodes"]
        rows = [
            [run.agent_id, group, span, "" if m.nll is None else repr(m.nll), "" if m.low is None else repr(m.low),
             "" if m.high is None else repr(m.high), m.tokens, m.episodes]
            for run in runs
            for group, spans in run.groups.items()
            for span, m in spans.items()
        ]  # fmt: skip
        return csv_text(header, rows)
    markdown = fmt == "md"
    title = "Query perplexity: per-token NLL (nats) under the reference model, 95% interval over episodes"
    parts = [f"## {title}" if markdown else title]
    for run in runs:
        rows = [[group, *(_nll_cell(spans[s]) for s in SPANS)] for group, spans in run.groups.items()]
        parts.append(f"### {run.agent_id}" if markdown else f"[{run.agent_id}]")
        parts.append(grid(["episodes", *SPANS], rows, markdown))
    if differences:
        a, b = runs[0].agent_id, runs[1].agent_id
        lines = [
            f"{d.span}: {MISSING if d.diff is None else cell(d.diff, d.low, d.high)}" for d in differences
        ]
        parts.append(f"{b} minus {a}, per-token NLL:\n" + "\n".join(lines))
    return "\n\n".join(parts) + "\n"
