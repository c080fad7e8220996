"""Text renderings of results, diversity and retrieval diagnostics: terminal table, Markdown, CSV, JSON.

Comparisons render in :mod:`gather_envs.reports.comparison_tables`; the shared primitives are in
:mod:`gather_envs.reports.text`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from gather_envs.analysis.retrieval import Rate, RetrievalDiagnostics
from gather_envs.metrics.diversity import Diversity
from gather_envs.metrics.passk import PassTable
from gather_envs.metrics.results import Results
from gather_envs.reports.text import (
    FLOOR_ROW,
    MISSING,
    OVERALL_SECTION,
    bullets,
    cell,
    check_format,
    csv_text,
    grid,
    number_text,
)

# --------------------------------------------------------------------------------------------
# Results


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
    return (f"**{title}**\n\n" if markdown else f"{title}\n") + bullets(lines, markdown)


def _table_text(table: PassTable, markdown: bool) -> str:
    header = ["T", *(f"k={k}" for k in table.ks), "|B_T|"]
    rows = []
    for budget in table.budgets:
        cells = {row.k: cell(row.pass_at_k, row.ci_low, row.ci_high) for row in table.curve(budget)}
        bound = f"{table.boundary[budget].size}/{table.num_tasks[budget]}"
        rows.append([str(budget), *(cells.get(k, MISSING) for k in table.ks), bound])
    if table.floor:
        floor = [number_text(table.floor[k]) if k in table.floor else MISSING for k in table.ks]
        rows.append([FLOOR_ROW, *floor, MISSING])
    lines = [grid(header, rows, markdown), ""]
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
        f"env {results.env_id}  corpus {results.corpus_hash}"
        + (f"  retriever {results.retriever}" if results.retriever is not None else "")
        + f"  reward {results.reward_kind} "
        "(the env's training reward; PASS@(k,T) counts exact-match success whatever it is)",
        f"agent {results.agent_id}" + (f" ({settings})" if settings else ""),
        f"n = {results.n} episodes per task and budget, {results.num_tasks} tasks, "
        f"{results.infra_errors_total} infrastructure errors; {interval}",
    ]


def _sections(results: Results) -> list[tuple[str, PassTable]]:
    return [(OVERALL_SECTION, results.overall), *results.families.items()]


def render_results(results: Results, fmt: str = "table") -> str:
    """The PASS@(k,T) tables (overall, then per family) in ``fmt`` (one of :data:`FORMATS`)."""
    check_format(fmt)
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
        return csv_text(header, rows)
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
# Strategy diversity


def render_diversity(diversities: Mapping[str, Diversity], fmt: str = "table") -> str:
    """Unique query sequences per task, agents side by side, in ``fmt`` (see :data:`FORMATS`)."""
    check_format(fmt)
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
        return csv_text(header, rows)
    agents = list(diversities)
    budgets = sorted({t for d in diversities.values() for t in d.budgets})

    def cell(agent: str, budget: int) -> str:
        d = diversities[agent]
        if budget not in d.budgets:
            return MISSING
        s = d.at(budget)
        return f"{s.mean:.1f} ({s.minimum}/{s.median:g}/{s.maximum})"

    header = ["T", *agents]
    rows = [[str(t), *(cell(a, t) for a in agents)] for t in budgets]
    title = "Strategy diversity: unique query sequences per task, mean (min/median/max)"
    lead = f"## {title}\n\n" if fmt == "md" else f"{title}\n"
    return lead + grid(header, rows, fmt == "md") + "\n"


# --------------------------------------------------------------------------------------------
# Retrieval diagnostics


def _rate_text(rate: Rate) -> str:
    return MISSING if rate.rate is None else f"{number_text(rate.rate)} ({rate.successes}/{rate.episodes})"


def render_retrieval(diagnostics: Mapping[str, RetrievalDiagnostics], fmt: str = "table") -> str:
    """Evidence recall, success by hops and by evidence found, searches used; one column per agent."""
    check_format(fmt)
    if fmt == "json":
        return json.dumps(
            {agent: d.to_json() for agent, d in diagnostics.items()}, indent=2, ensure_ascii=False
        )
    agents = list(diagnostics)
    hops = sorted({h for d in diagnostics.values() for h in d.by_hops})
    searches = sorted({s for d in diagnostics.values() for s in d.searches_histogram})
    rows: list[list[str]] = [
        ["evidence recall", *(number_text(diagnostics[a].mean_recall) for a in agents)],
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
        return csv_text(["measure", *agents], rows)
    title = "Retrieval diagnostics: did the agent find the supporting documents, and use them?"
    lead = f"## {title}\n\n" if fmt == "md" else f"{title}\n"
    return lead + grid(["", *agents], rows, fmt == "md") + "\n"
