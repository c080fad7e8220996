"""Text renderings of a comparison of two runs and its verdict: terminal table, Markdown, CSV, JSON."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence

from gather_envs.metrics.comparison import BudgetComparison, Comparison, ComparisonTest
from gather_envs.metrics.significance import CROSSING_TOLERANCE, SIGN_FLIPS
from gather_envs.reports.text import (
    FLOOR_ROW,
    MISSING,
    bullets,
    cell,
    check_format,
    csv_text,
    grid,
    number_text,
)

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
    return MISSING if p is None else f"{p:.2g}"


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
            cell(entry.pass_a[i], entry.pass_a_low[i], entry.pass_a_high[i]),
            cell(entry.pass_b[i], entry.pass_b_low[i], entry.pass_b_high[i]),
            cell(entry.diff[i], entry.diff_low[i], entry.diff_high[i]),
            *([_p_text(entry.diff_p[i]), _holm_text(comparison, entry.budget, k, holm_of)] if tested else []),
            *([number_text(floor.get(k))] if floor else []),
        ]
        for i, k in enumerate(entry.ks)
    ]
    return "\n".join(
        [
            grid(header, rows, markdown),
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
        for budget, k_grid in grids.items():
            chosen = [t.k for t in tests if t.budget == budget and t.direction == sign and t.k is not None]
            if chosen:
                spots.append(f"T={budget} ({_k_ranges(k_grid, chosen)})")
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
    check_format(fmt)
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
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + bullets(lines, markdown)


def render_comparison(comparison: Comparison, fmt: str = "table", *, verdict: bool = True) -> str:
    """Agent A against agent B, budget by budget, in ``fmt`` (one of :data:`FORMATS`).

    Text and Markdown end with the one-line verdict unless ``verdict`` is False (the CLI prints it
    last, after the diversity table).
    """
    check_format(fmt)
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
        return csv_text(header, rows)
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
        + f"  corpus {comparison.corpus_hash}"
        + (f"  retriever {comparison.retriever}" if comparison.retriever is not None else ""),
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
