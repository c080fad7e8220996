"""Text renderings of results, comparisons and diversity: terminal table, Markdown, CSV, JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from gather_envs.errors import ConfigError
from gather_envs.metrics.compare import BudgetComparison, Comparison
from gather_envs.metrics.diversity import Diversity
from gather_envs.metrics.passk import PassTable
from gather_envs.metrics.results import Results

FORMATS = ("table", "md", "csv", "json")
"""Output formats every ``render_*`` function accepts."""

OVERALL_SECTION = "all"
"""Section name of the table over all tasks (the others are family names)."""

DIGITS = 3
"""Decimals shown in table and Markdown output (CSV and JSON keep full precision)."""

_MISSING = "-"


def _fmt(value: float | None, digits: int = DIGITS) -> str:
    return _MISSING if value is None else f"{value:.{digits}f}"


def _cell(value: float, low: float | None, high: float | None) -> str:
    if low is None or high is None:
        return _fmt(value)
    return f"{_fmt(value)} [{_fmt(low)}, {_fmt(high)}]"


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        raise ConfigError(f"unknown report format {fmt!r}; choose one of {', '.join(FORMATS)}")


def _grid(header: Sequence[str], rows: Sequence[Sequence[str]], markdown: bool) -> str:
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


def _csv(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return out.getvalue()


# --------------------------------------------------------------------------------------------
# Results


def _table_text(table: PassTable, markdown: bool) -> str:
    header = ["T", *(f"k={k}" for k in table.ks), "|B_T|"]
    rows = []
    for budget in table.budgets:
        cells = {row.k: _cell(row.pass_at_k, row.ci_low, row.ci_high) for row in table.curve(budget)}
        bound = f"{table.boundary[budget].size}/{table.num_tasks[budget]}"
        rows.append([str(budget), *(cells.get(k, _MISSING) for k in table.ks), bound])
    lines = [_grid(header, rows, markdown), ""]
    if table.t_star is None:
        lines.append("T* = n/a (needs bootstrap intervals and tasks run at every budget)")
    else:
        per_k = ", ".join(f"k={k}: {t}" for k, t in table.t_star_by_k.items())
        lines.append(f"T* = {table.t_star} (per k: {per_k})")
    infra = {t: v for t, v in table.infra_errors.items() if v}
    if infra:
        excluded = ", ".join(f"T={t}: {v}" for t, v in infra.items())
        lines.append(f"infrastructure errors excluded from n: {excluded}")
    return "\n".join(lines)


def _results_header(results: Results) -> list[str]:
    settings = ", ".join(f"{k}={v}" for k, v in sorted(results.agent_settings.items()))
    interval = (
        f"{results.confidence:.0%} bootstrap CI over tasks, {results.bootstrap} resamples, "
        f"seed {results.seed}"
        if results.bootstrap
        else "no intervals (bootstrap = 0)"
    )
    return [
        f"env {results.env_id}  corpus {results.corpus_hash}",
        f"agent {results.agent_id}" + (f" ({settings})" if settings else ""),
        f"n = {results.n} episodes per task and budget, {results.num_tasks} tasks, "
        f"{results.infra_errors_total} infrastructure errors; {interval}",
    ]


def _sections(results: Results) -> list[tuple[str, PassTable]]:
    return [(OVERALL_SECTION, results.overall), *results.families.items()]


def render_results(results: Results, fmt: str = "table") -> str:
    """The PASS@(k,T) tables (overall, then per family) in ``fmt`` (one of :data:`FORMATS`)."""
    _check_format(fmt)
    if fmt == "json":
        return results.dumps()
    if fmt == "csv":
        header = ["section", "T", "k", "pass", "ci_low", "ci_high", "boundary", "num_tasks"]
        rows = [
            [
                name,
                row.budget,
                row.k,
                repr(row.pass_at_k),
                "" if row.ci_low is None else repr(row.ci_low),
                "" if row.ci_high is None else repr(row.ci_high),
                table.boundary[row.budget].size,
                table.num_tasks[row.budget],
            ]
            for name, table in _sections(results)
            for row in table.rows
        ]
        return _csv(header, rows)
    markdown = fmt == "md"
    parts = []
    head = _results_header(results)
    if markdown:
        parts.append("# PASS@(k,T)\n\n" + "\n".join(f"- {line}" for line in head))
    else:
        parts.append("PASS@(k,T)\n" + "\n".join(head))
    for name, table in _sections(results):
        title = "all tasks" if name == OVERALL_SECTION else f"family {name}"
        parts.append(f"## {title}" if markdown else f"[{title}]")
        parts.append(_table_text(table, markdown))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Comparisons


def _comparison_text(comparison: Comparison, entry: BudgetComparison, markdown: bool) -> str:
    a, b = comparison.agent_a or "A", comparison.agent_b or "B"
    header = ["k", f"{a}", f"{b}", f"{a} - {b}"]
    rows = [
        [
            str(k),
            _cell(entry.pass_a[i], entry.pass_a_low[i], entry.pass_a_high[i]),
            _cell(entry.pass_b[i], entry.pass_b_low[i], entry.pass_b_high[i]),
            _cell(entry.diff[i], entry.diff_low[i], entry.diff_high[i]),
        ]
        for i, k in enumerate(entry.ks)
    ]
    if entry.k_star is None or entry.k_star_interval is None:
        crossing = "curves do not cross"
    else:
        lo, hi = entry.k_star_interval
        crossing = f"curves cross at k* = {entry.k_star:.2f} (between k={lo} and k={hi})"
    boundary = (
        f"boundary: only {a} {len(entry.only_a)}, only {b} {len(entry.only_b)}, "
        f"both {len(entry.both)}, neither {entry.neither}; "
        f"exact McNemar p = {entry.mcnemar_p:.4g}"
    )
    return "\n".join([_grid(header, rows, markdown), "", crossing, boundary])


def render_comparison(comparison: Comparison, fmt: str = "table") -> str:
    """Agent A against agent B, budget by budget, in ``fmt`` (one of :data:`FORMATS`)."""
    _check_format(fmt)
    if fmt == "json":
        return json.dumps(comparison.to_json(), indent=2, ensure_ascii=False, allow_nan=False)
    if fmt == "csv":
        header = [
            "T", "k", "pass_a", "pass_a_low", "pass_a_high", "pass_b", "pass_b_low",
            "pass_b_high", "diff", "diff_low", "diff_high", "k_star", "only_a", "only_b",
            "both", "neither", "mcnemar_p",
        ]  # fmt: skip
        rows = []
        for e in comparison.per_budget:
            for i, k in enumerate(e.ks):
                values = (
                    e.pass_a[i], e.pass_a_low[i], e.pass_a_high[i], e.pass_b[i], e.pass_b_low[i],
                    e.pass_b_high[i], e.diff[i], e.diff_low[i], e.diff_high[i], e.k_star,
                )  # fmt: skip
                rows.append(
                    [e.budget, k, *("" if v is None else repr(v) for v in values)]
                    + [len(e.only_a), len(e.only_b), len(e.both), e.neither, repr(e.mcnemar_p)]
                )
        return _csv(header, rows)
    markdown = fmt == "md"
    scope = (
        "restricted to shared tasks ("
        + ", ".join(f"T={t}: {v} dropped" for t, v in comparison.excluded_tasks.items())
        + ")"
        if comparison.restricted
        else "same tasks"
    )
    head = (
        f"{comparison.agent_a} vs {comparison.agent_b}  corpus {comparison.corpus_hash}  {scope}; "
        f"paired {comparison.confidence:.0%} bootstrap CI, {comparison.bootstrap} resamples"
    )
    parts = [f"# Comparison\n\n{head}" if markdown else f"Comparison\n{head}"]
    for entry in comparison.per_budget:
        title = f"T = {entry.budget} ({entry.num_tasks} tasks)"
        parts.append(f"## {title}" if markdown else f"[{title}]")
        parts.append(_comparison_text(comparison, entry, markdown))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Strategy diversity


def render_diversity(diversities: Mapping[str, Diversity], fmt: str = "table") -> str:
    """Unique query sequences per task, agents side by side, in ``fmt`` (see :data:`FORMATS`)."""
    _check_format(fmt)
    if fmt == "json":
        data = {agent: d.to_json() for agent, d in diversities.items()}
        return json.dumps(data, indent=2, ensure_ascii=False)
    if fmt == "csv":
        header = ["agent", "T", "num_tasks", "mean", "min", "median", "max"]
        rows = [
            [agent, s.budget, s.num_tasks, repr(s.mean), s.minimum, repr(s.median), s.maximum]
            for agent, d in diversities.items()
            for s in d.per_budget
        ]
        return _csv(header, rows)
    agents = list(diversities)
    budgets = sorted({t for d in diversities.values() for t in d.budgets})

    def cell(agent: str, budget: int) -> str:
        d = diversities[agent]
        if budget not in d.budgets:
            return _MISSING
        s = d.at(budget)
        return f"{s.mean:.1f} ({s.minimum}/{s.median:g}/{s.maximum})"

    header = ["T", *agents]
    rows = [[str(t), *(cell(a, t) for a in agents)] for t in budgets]
    title = "Strategy diversity: unique query sequences per task, mean (min/median/max)"
    lead = f"# {title}\n\n" if fmt == "md" else f"{title}\n"
    return lead + _grid(header, rows, fmt == "md") + "\n"
