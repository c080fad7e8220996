"""PNG plots of the mechanism analyses: coverage and swap curves, retrieval diagnostics, span NLLs.

Drawn like :mod:`gather_envs.reports.plots` (matplotlib's object API on the Agg canvas, titles
that name the runs and the budget, 95% interval bands where the analysis has them).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

from gather_envs.analysis.coverage import Coverage
from gather_envs.analysis.perplexity import RunPerplexity
from gather_envs.analysis.retrieval import RetrievalDiagnostics
from gather_envs.analysis.swap import SwapRow, swap_curves
from gather_envs.files import PathLike
from gather_envs.reports.plots import BAND_ALPHA, CURVE_SIZE, MARKERS, new_figure, save_figure, slug


def plot_coverage(result: Coverage, out_dir: PathLike) -> Path:
    """One panel: the coverage curve of B's boundary by A over n, one line per budget."""
    figure = new_figure(CURVE_SIZE)
    axes = figure.add_subplot()
    for i, entry in enumerate(result.per_budget):
        if not entry.ns:
            continue
        label = f"T={entry.budget} (|B_B|={entry.boundary_b})"
        axes.plot(entry.ns, entry.coverage, marker=MARKERS[i % len(MARKERS)], label=label)
        if all(v is not None for v in (*entry.ci_low, *entry.ci_high)):
            axes.fill_between(entry.ns, entry.ci_low, entry.ci_high, alpha=BAND_ALPHA)  # type: ignore[arg-type]
    axes.set_xscale("log", base=2)
    axes.set_ylim(-0.03, 1.03)
    axes.set_xlabel(f"n: tries of A ({result.agent_a})")
    axes.set_ylabel("|B_B ∩ B_A(n)| / |B_B|")
    axes.set_title(f"Coverage of {result.agent_b}'s boundary by {result.agent_a}")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save_figure(figure, Path(out_dir) / f"coverage_{slug(result.agent_a)}_{slug(result.agent_b)}.png")


def plot_swap(rows: Sequence[SwapRow], out_dir: PathLike) -> list[Path]:
    """Per (budget, k): PASS@(k,T) of each swap direction over J, with its interval band."""
    curves = swap_curves(rows)
    panels = sorted({(budget, k) for _, _, budget, k in curves})
    paths = []
    for budget, k in panels:
        figure = new_figure(CURVE_SIZE)
        axes = figure.add_subplot()
        for i, ((first, then, t, kk), group) in enumerate(curves.items()):
            if (t, kk) != (budget, k):
                continue
            js = [r.after for r in group]
            axes.plot(
                js, [r.pass_at_k for r in group], marker=MARKERS[i % len(MARKERS)], label=f"{first} → {then}"
            )
            if all(r.ci_low is not None and r.ci_high is not None for r in group):
                axes.fill_between(js, [r.ci_low for r in group], [r.ci_high for r in group], alpha=BAND_ALPHA)  # type: ignore[arg-type]
        axes.set_ylim(-0.03, 1.03)
        axes.set_xlabel("J: turns played by the first policy")
        axes.set_ylabel(f"PASS@({k},{budget})")
        axes.set_title(f"Cross-policy swap at T={budget}, k={k}")
        axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
        paths.append(save_figure(figure, Path(out_dir) / f"swap_T{budget}_k{k}.png"))
    return paths


def plot_retrieval(diagnostics: Mapping[str, RetrievalDiagnostics], out_dir: PathLike) -> Path:
    """Two panels per run: success with vs without full evidence, and searches used."""
    figure = new_figure((CURVE_SIZE[0], CURVE_SIZE[1] * 0.8))
    left, right = figure.subplots(1, 2)
    agents = list(diagnostics)
    width = 0.8 / max(1, len(agents))
    for i, agent in enumerate(agents):
        d = diagnostics[agent]
        rates = [d.with_full_evidence.rate or 0.0, d.without_full_evidence.rate or 0.0]
        left.bar([x + i * width for x in (0, 1)], rates, width, label=agent)
        total = max(1, len(d.episodes))
        searches = sorted(d.searches_histogram)
        right.bar(
            [s + i * width for s in searches], [d.searches_histogram[s] / total for s in searches], width
        )
    left.set_xticks([0.4 - width / 2, 1.4 - width / 2], ["all evidence found", "evidence missing"])
    left.set_ylim(0, 1.03)
    left.set_ylabel("success rate")
    right.set_xlabel("searches used")
    right.set_ylabel("share of episodes")
    left.legend(loc="upper right")
    figure.suptitle("Retrieval diagnostics")
    return save_figure(figure, Path(out_dir) / f"retrieval_{'_'.join(slug(a) for a in agents)}.png")


def plot_perplexity(runs: Sequence[RunPerplexity], out_dir: PathLike) -> Path:
    """Per group (all, each family, success, failure): each run's per-token NLL of its query and
    reasoning spans, as bars with their 95% episode-bootstrap intervals."""
    groups = list(dict.fromkeys(g for run in runs for g in run.groups))
    spans = list(dict.fromkeys(s for run in runs for spans in run.groups.values() for s in spans))
    bars = [(run, span) for run in runs for span in spans]
    width = 0.8 / max(1, len(bars))
    figure = new_figure((max(CURVE_SIZE[0], 1.6 * len(groups) + 3), CURVE_SIZE[1]))
    axes = figure.add_subplot()
    for i, (run, span) in enumerate(bars):
        xs, heights, errors = [], [], [[], []]
        for x, group in enumerate(groups):
            mean = run.groups.get(group, {}).get(span)
            if mean is None or mean.nll is None:
                continue
            xs.append(x + i * width)
            heights.append(mean.nll)
            low = mean.nll if mean.low is None else mean.low
            high = mean.nll if mean.high is None else mean.high
            errors[0].append(mean.nll - low)
            errors[1].append(high - mean.nll)
        axes.bar(xs, heights, width, yerr=errors, capsize=3, label=f"{run.agent_id}: {span}")
    axes.set_xticks([x + 0.4 - width / 2 for x in range(len(groups))], groups)
    axes.set_ylabel("NLL per token (nats) under the reference model")
    axes.set_title("Query vs reasoning spans: " + " vs ".join(run.agent_id for run in runs))
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return save_figure(figure, Path(out_dir) / f"perplexity_{'_'.join(slug(run.agent_id) for run in runs)}.png")
