"""Text renderings of the mechanism analyses (coverage, policy swaps, query perplexity)."""

from __future__ import annotations

import json

from gather_envs.analysis.coverage import Coverage
from gather_envs.reports.tables import _cell, _check_format, _csv, _fmt, _grid

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
    _check_format(fmt)
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
        return _csv(header, rows)
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
                [str(n), _cell(v, lo, hi)]
                for n, v, lo, hi in zip(e.ns, e.coverage, e.ci_low, e.ci_high, strict=True)
            ]
            parts.append(_grid(["n", "|B_B ∩ B_A(n)| / |B_B|"], rows, markdown))
        parts.append(
            f"|B_B| = {e.boundary_b}, |B_A| = {e.boundary_a} (all episodes); at n = {e.ns[-1] if e.ns else 0} "
            f"A covers {_fmt(e.coverage[-1] if e.coverage else None)}\n"
            f"only {result.agent_a} solves: {_tasks_text(e.only_a)}\n"
            f"only {result.agent_b} solves: {_tasks_text(e.only_b)}"
        )
    return "\n\n".join(parts) + "\n"
