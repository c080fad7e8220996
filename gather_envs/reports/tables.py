"""Text renderings of results, comparisons and diversity: terminal table, Markdown, CSV, JSON."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence

from gather_envs.analysis.retrieval import Rate, RetrievalDiagnostics
from gather_envs.errors import ConfigError
from gather_envs.metrics.comparison import BudgetComparison, Comparison, ComparisonTest
from gather_envs.metrics.diversity import Diversity
from gather_envs.metrics.passk import PassTable
from gather_envs.metrics.results import Results
from gather_envs.metrics.significance import CROSSING_TOLERANCE, SIGN_FLIPS

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


FLOOR_ROW = "floor"
"""Row (or column) label of the chance floor in text tables."""


def _bullets(lines: Sequence[str], markdown: bool) -> str:
    return "\n".join(f"- {line}" if markdown else f"  {line}" for line in lines)


def _results_legend(results: Results, markdown: bool) -> str:
    """What the cells, brackets, |B_T|, T* and the floor row mean."""
    confidence = f"{results.confidence:.0%}"
    lines = [
        "cell: PASS@(k,T), the chance that at least one of k episodes with at most T tool calls "
        "solves a task (unbiased estimate from the n episodes, mean over tasks)"
        + (f"; [low, high]: its {confidence} bootstrap interval over tasks" if results.bootstrap else ""),
        "|B_T|: tasks solved at least once in their n episodes at budget T (solved/all)",
        f"T*: the smallest budget T that no larger budget beats significantly ({confidence} paired "
        "intervals), per k and at every k at once",
    ]
    if any(table.floor for _, table in _sections(results)):
        lines.append(
            f"{FLOOR_ROW}: PASS@(k,0) of a question-only guesser (no search, no documents): what luck "
            "alone scores (measured on the family's test split)"
        )
    title = "How to read this:"
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + _bullets(lines, markdown)


def _table_text(table: PassTable, markdown: bool) -> str:
    header = ["T", *(f"k={k}" for k in table.ks), "|B_T|"]
    rows = []
    for budget in table.budgets:
        cells = {row.k: _cell(row.pass_at_k, row.ci_low, row.ci_high) for row in table.curve(budget)}
        bound = f"{table.boundary[budget].size}/{table.num_tasks[budget]}"
        rows.append([str(budget), *(cells.get(k, _MISSING) for k in table.ks), bound])
    if table.floor:
        floor = [_fmt(table.floor[k]) if k in table.floor else _MISSING for k in table.ks]
        rows.append([FLOOR_ROW, *floor, _MISSING])
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
        f"env {results.env_id}  corpus {results.corpus_hash}  reward {results.reward_kind} "
        "(the env's training reward; PASS@(k,T) counts exact-match success whatever it is)",
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
        header = ["section", "T", "k", "pass", "ci_low", "ci_high", "boundary", "num_tasks", "chance_floor"]
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
                repr(table.floor[row.k]) if row.k in table.floor else "",
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
    parts.append(_results_legend(results, markdown))
    for name, table in _sections(results):
        title = "all tasks" if name == OVERALL_SECTION else f"family {name}"
        parts.append(f"## {title}" if markdown else f"[{title}]")
        parts.append(_table_text(table, markdown))
    return "\n\n".join(parts) + "\n"


# --------------------------------------------------------------------------------------------
# Comparisons


def _span_text(pair: tuple[int, int] | None) -> str:
    if pair is None:
        return "?"
    low, high = pair
    return str(low) if low == high else f"{low}-{high}"


def _crossing_text(entry: BudgetComparison, a: str, b: str) -> str:
    """Where the curves cross, or what is true when they do not."""
    if not any(entry.pass_a) and not any(entry.pass_b):
        return f"both curves are 0 at every k: neither run solved a task at T={entry.budget}"
    if all(abs(d) <= CROSSING_TOLERANCE for d in entry.diff):
        return "the curves coincide at every k"
    if entry.k_star is not None and entry.k_star_interval is not None:
        lo, hi = entry.k_star_interval
        text = f"curves cross at k* = {entry.k_star:.2f} (between k={lo} and k={hi})"
        if entry.k_star_ci is not None:
            low, high = entry.k_star_ci
            upper = f"beyond k={entry.ks[-1]}" if high is None else f"{high:.2f}"
            lower = f"beyond k={entry.ks[-1]}" if low is None else f"{low:.2f}"
            text += f"; bootstrap interval of k* [{lower}, {upper}]"
        return text
    upper, lower = (a, b) if all(d >= -CROSSING_TOLERANCE for d in entry.diff) else (b, a)
    return f"curves do not cross: {upper} is at or above {lower} at every k"


def _boundary_text(entry: BudgetComparison, a: str, b: str, p_holm: float | None) -> str:
    return (
        f"boundary (tasks solved at least once): only {a} {len(entry.only_a)}, only {b} "
        f"{len(entry.only_b)}, both {len(entry.both)}, neither {entry.neither}; "
        f"exact McNemar p = {entry.mcnemar_p:.4g}" + ("" if p_holm is None else f" (Holm {p_holm:.4g})")
    )


def _p_text(p: float | None) -> str:
    return _MISSING if p is None else f"{p:.2g}"


def _comparison_text(
    comparison: Comparison,
    entry: BudgetComparison,
    markdown: bool,
    holm_of: Mapping[tuple[int, int | None], float | None],
) -> str:
    a, b = _columns(comparison)
    floor = comparison.chance_floor
    tested = len(entry.diff_p) == len(entry.ks)
    header = [
        "k", f"{a}", f"{b}", f"{a} - {b}", *(["p", "p Holm"] if tested else []), *([FLOOR_ROW] if floor else [])
    ]  # fmt: skip
    rows = [
        [
            str(k),
            _cell(entry.pass_a[i], entry.pass_a_low[i], entry.pass_a_high[i]),
            _cell(entry.pass_b[i], entry.pass_b_low[i], entry.pass_b_high[i]),
            _cell(entry.diff[i], entry.diff_low[i], entry.diff_high[i]),
            *([_p_text(entry.diff_p[i]), _holm_text(comparison, entry.budget, k, holm_of)] if tested else []),
            *([_fmt(floor.get(k))] if floor else []),
        ]
        for i, k in enumerate(entry.ks)
    ]
    return "\n".join(
        [
            _grid(header, rows, markdown),
            "",
            _crossing_text(entry, a, b),
            _boundary_text(entry, a, b, holm_of.get((entry.budget, None))),
        ]
    )


def _holm_text(
    comparison: Comparison, budget: int, k: int, holm_of: Mapping[tuple[int, int | None], float | None]
) -> str:
    """The Holm column of (T, k): the adjusted p, or "primary" for the primary endpoint."""
    return "primary" if comparison.primary == (budget, k) else _p_text(holm_of.get((budget, k)))


def _budget_title(comparison: Comparison, entry: BudgetComparison) -> str:
    a, b = _columns(comparison)
    n = _span_text(entry.boundary_n)
    if not entry.boundary_is_matched:
        return f"T = {entry.budget} ({entry.num_tasks} tasks, n = {n} episodes per task)"
    return (
        f"T = {entry.budget} ({entry.num_tasks} tasks, n = {n} episodes per task: those both runs "
        f"played; {a} has {_span_text(entry.n_a)}, {b} {_span_text(entry.n_b)})"
    )


LABEL_WIDTH = 16
"""Run labels longer than this are shown as A and B in table columns (the header says which is which)."""


def _columns(comparison: Comparison) -> tuple[str, str]:
    """Column names of the two runs: their labels, or A and B when a label is long."""
    a, b = _labels(comparison)
    return (a, b) if max(len(a), len(b)) <= LABEL_WIDTH else ("A", "B")


def _labels(comparison: Comparison) -> tuple[str, str]:
    return (
        comparison.label_a or comparison.agent_a or "A",
        comparison.label_b or comparison.agent_b or "B",
    )


def _k_ranges(grid: Sequence[int], chosen: Sequence[int]) -> str:
    """``chosen`` (a subset of ``grid``) as runs of consecutive grid entries: ``k=1-4, 32``."""
    runs: list[list[int]] = []
    previous = -2
    for position, k in enumerate(grid):
        if k not in chosen:
            continue
        if position == previous + 1:
            runs[-1].append(k)
        else:
            runs.append([k])
        previous = position
    return "k=" + ", ".join(str(r[0]) if len(r) == 1 else f"{r[0]}-{r[-1]}" for r in runs)


def _ahead_text(tests: Sequence[ComparisonTest], grids: Mapping[int, Sequence[int]], a: str, b: str) -> str:
    """``a ahead at T=1 (k=1-2); b ahead at ...`` for the significant curve tests, or ""."""
    parts = []
    for label, sign in ((a, 1), (b, -1)):
        spots = []
        for budget, grid in grids.items():
            chosen = [t.k for t in tests if t.budget == budget and t.direction == sign and t.k is not None]
            if chosen:
                spots.append(f"T={budget} ({_k_ranges(grid, chosen)})")
        if spots:
            parts.append(f"{label} ahead at {', '.join(spots)}")
    return "; ".join(parts)


def comparison_verdict(comparison: Comparison) -> str:
    """One line: which run is significantly ahead at which T and k, and where the boundaries differ.

    One verdict, one test: the curves are judged by the paired permutation p printed beside each
    difference, the boundary by the exact McNemar p, all Holm-corrected together over the tests
    the report makes (:meth:`Comparison.tests`); a primary endpoint is judged first, uncorrected.
    A test is significant when its (adjusted) p is below 1 - confidence. The bootstrap intervals
    describe the size of a difference and take no part in the verdict.
    """
    a, b = _labels(comparison)
    alpha = 1.0 - comparison.confidence
    tests = comparison.tests()
    grids = {e.budget: e.ks for e in comparison.per_budget}
    primary = [t for t in tests if t.primary]
    family = [t for t in tests if not t.primary]
    significant = [t for t in family if t.decisive_p < alpha and t.direction != 0]
    lead = ""
    if primary:
        t = primary[0]
        who = {1: f"{a} ahead", -1: f"{b} ahead", 0: "no difference"}[t.direction]
        outcome = (
            who if t.p < alpha and t.direction else f"no significant difference ({who} by the point estimate)"
        )
        lead = f"primary endpoint T={t.budget}, k={t.k}: {outcome}, p = {t.p:.2g} (uncorrected); "
    has_curve_tests = any(len(e.diff_p) == len(e.ks) for e in comparison.per_budget)
    if not has_curve_tests:
        curves = "no p-values for the curves in this comparison (written before they existed), so no verdict on them"
    else:
        curves = _ahead_text([t for t in significant if t.k is not None], grids, a, b)
        curves = curves or "no significant difference between the curves at any T and k"
    differ = [t for t in significant if t.k is None]
    if differ:
        boundary = "boundary differs significantly at " + ", ".join(
            f"T={t.budget} (McNemar p = {t.p:.2g}, Holm {t.decisive_p:.2g}; {a if t.direction > 0 else b} "
            "solves more tasks alone)"
            for t in differ
        )
    else:
        boundary = "the boundaries do not differ significantly at any T"
    method = (
        f"tests: paired permutation over tasks (curves) and exact McNemar (boundary), Holm-corrected "
        f"over the {len(family)} {'other ' if primary else ''}tests of this report, significant when "
        f"p < {alpha:g}"
    )
    return f"Verdict: {lead}{curves}; {boundary}; {method}."


def render_verdict(comparison: Comparison, fmt: str = "table") -> str:
    """The one-line verdict of a comparison, as a section in ``fmt`` (table or md)."""
    _check_format(fmt)
    line = comparison_verdict(comparison)
    return f"## Verdict\n\n{line}\n" if fmt == "md" else f"{line}\n"


def _comparison_legend(comparison: Comparison, markdown: bool) -> str:
    a, b = _columns(comparison)
    confidence = f"{comparison.confidence:.0%}"
    lines = [
        f"{a}, {b}: PASS@(k,T) of each run on the episodes both runs played (matched by episode "
        "index, so a longer run gains nothing from extra tries)"
        + (f"; [low, high]: its {confidence} bootstrap interval over tasks" if comparison.bootstrap else ""),
        f"{a} - {b}: the paired difference (the same resampled tasks for both), its interval "
        "describing its size",
        "p: two-sided paired permutation test of that difference (task signs flipped at random, "
        f"{SIGN_FLIPS:,} times): the test the verdict uses",
        "p Holm: p adjusted by Holm's method over all the tests of this report (every p and "
        f"McNemar p below); significant when p Holm < {1 - comparison.confidence:g}"
        + (
            f"; the primary endpoint (T={comparison.primary[0]}, k={comparison.primary[1]}) is "
            "tested alone, uncorrected"
            if comparison.primary
            else ""
        ),
        "k*: where the curves cross (interpolated on log2 k; the bracket is the two grid k around "
        "it, not a confidence interval)",
        f"boundary: tasks solved at least once; McNemar: exact test of only-{a} against only-{b} "
        "tasks, Holm-adjusted in the same family",
    ]
    if comparison.chance_floor:
        lines.append(
            f"{FLOOR_ROW}: PASS@(k,0) of a question-only guesser (no search, no documents) on the "
            "family's test split: what luck alone scores"
        )
    title = "How to read this:"
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + _bullets(lines, markdown)


def render_comparison(comparison: Comparison, fmt: str = "table", *, verdict: bool = True) -> str:
    """Agent A against agent B, budget by budget, in ``fmt`` (one of :data:`FORMATS`).

    Text and Markdown end with the one-line verdict unless ``verdict`` is False (the CLI prints it
    last, after the diversity table).
    """
    _check_format(fmt)
    if fmt == "json":
        return json.dumps(comparison.to_json(), indent=2, ensure_ascii=False, allow_nan=False)
    if fmt == "csv":
        header = [
            "T", "k", "pass_a", "pass_a_low", "pass_a_high", "pass_b", "pass_b_low",
            "pass_b_high", "diff", "diff_low", "diff_high", "k_star", "only_a", "only_b",
            "both", "neither", "mcnemar_p", "chance_floor", "diff_p", "diff_p_holm",
            "mcnemar_p_holm", "primary",
        ]  # fmt: skip
        holm_of = {(t.budget, t.k): t.p_holm for t in comparison.tests()}
        rows = []
        for e in comparison.per_budget:
            for i, k in enumerate(e.ks):
                values = (
                    e.pass_a[i], e.pass_a_low[i], e.pass_a_high[i], e.pass_b[i], e.pass_b_low[i],
                    e.pass_b_high[i], e.diff[i], e.diff_low[i], e.diff_high[i], e.k_star,
                )  # fmt: skip
                floor = comparison.chance_floor.get(k)
                rows.append(
                    [e.budget, k, *("" if v is None else repr(v) for v in values)]
                    + [len(e.only_a), len(e.only_b), len(e.both), e.neither, repr(e.mcnemar_p)]
                    + ["" if floor is None else repr(floor)]
                    + [repr(e.diff_p[i]) if len(e.diff_p) == len(e.ks) else ""]
                    + ["" if holm_of.get((e.budget, k)) is None else repr(holm_of[(e.budget, k)])]
                    + [repr(holm_of[(e.budget, None)]), int(comparison.primary == (e.budget, k))]
                )
        return _csv(header, rows)
    markdown = fmt == "md"
    a, b = _labels(comparison)
    scope = (
        "restricted to shared tasks ("
        + ", ".join(f"T={t}: {v} dropped" for t, v in comparison.excluded_tasks.items())
        + ")"
        if comparison.restricted
        else "same tasks"
    )
    envs = (
        comparison.env_a
        if comparison.env_a == comparison.env_b
        else f"{comparison.env_a} / {comparison.env_b}"
    )
    head = [
        f"{a} vs {b}" if _columns(comparison) == (a, b) else f"A: {a}  vs  B: {b}",
        f"env {envs}"
        + (f"  family {', '.join(comparison.families)}" if comparison.families else "")
        + f"  corpus {comparison.corpus_hash}",
        f"{scope}; paired {comparison.confidence:.0%} bootstrap CI, {comparison.bootstrap} resamples, "
        f"seed {comparison.seed}",
        *(
            [
                f"primary endpoint T={comparison.primary[0]}, k={comparison.primary[1]}: named up front, tested alone"
            ]
            if comparison.primary
            else []
        ),
    ]
    if markdown:
        parts = ["# Comparison\n\n" + "\n".join(f"- {line}" for line in head)]
    else:
        parts = ["Comparison\n" + "\n".join(head)]
    parts.append(_comparison_legend(comparison, markdown))
    holm_of = {(t.budget, t.k): t.p_holm for t in comparison.tests()}
    for entry in comparison.per_budget:
        title = _budget_title(comparison, entry)
        parts.append(f"## {title}" if markdown else f"[{title}]")
        parts.append(_comparison_text(comparison, entry, markdown, holm_of))
    text = "\n\n".join(parts) + "\n"
    if verdict:
        text += "\n" + render_verdict(comparison, fmt)
    return text


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
    lead = f"## {title}\n\n" if fmt == "md" else f"{title}\n"
    return lead + _grid(header, rows, fmt == "md") + "\n"


# --------------------------------------------------------------------------------------------
# Retrieval diagnostics


def _rate_text(rate: Rate) -> str:
    return _MISSING if rate.rate is None else f"{_fmt(rate.rate)} ({rate.successes}/{rate.episodes})"


def render_retrieval(diagnostics: Mapping[str, RetrievalDiagnostics], fmt: str = "table") -> str:
    """Evidence recall, success by hops and by evidence found, searches used; one column per agent."""
    _check_format(fmt)
    if fmt == "json":
        return json.dumps(
            {agent: d.to_json() for agent, d in diagnostics.items()}, indent=2, ensure_ascii=False
        )
    agents = list(diagnostics)
    hops = sorted({h for d in diagnostics.values() for h in d.by_hops})
    searches = sorted({s for d in diagnostics.values() for s in d.searches_histogram})
    rows: list[list[str]] = [
        ["evidence recall", *(_fmt(diagnostics[a].mean_recall) for a in agents)],
        ["success, all evidence found", *(_rate_text(diagnostics[a].with_full_evidence) for a in agents)],
        ["success, evidence missing", *(_rate_text(diagnostics[a].without_full_evidence) for a in agents)],
        ["not recorded (old records)", *(str(diagnostics[a].not_recorded) for a in agents)],
        *(
            [f"success, {h} hops", *(_rate_text(diagnostics[a].by_hops.get(h, Rate(0, 0))) for a in agents)]
            for h in hops
        ),
        [
            "episodes with a repeated query",
            *(f"{diagnostics[a].episodes_with_repeats}/{len(diagnostics[a].episodes)}" for a in agents),
        ],
        *(
            [
                f"episodes using {s} searches",
                *(str(diagnostics[a].searches_histogram.get(s, 0)) for a in agents),
            ]
            for s in searches
        ),
    ]
    if fmt == "csv":
        return _csv(["measure", *agents], rows)
    title = "Retrieval diagnostics: did the agent find the supporting documents, and use them?"
    lead = f"## {title}\n\n" if fmt == "md" else f"{title}\n"
    return lead + _grid(["", *agents], rows, fmt == "md") + "\n"
