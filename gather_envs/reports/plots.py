"""PNG plots of results and comparisons: pass@k curves per T with interval bands, a k×T heatmap.

matplotlib is an optional extra, imported on first use. Figures are drawn on the Agg canvas through
matplotlib's object API (no ``pyplot``), so plotting never touches a caller's global backend.
Every title names the env, family, agent, n and task count; legends sit outside the axes; curves
that coincide stay visible (their own hollow marker and a small sideways dodge along k); the
chance floor, when the corpus has one, is a dashed grey line (a row in the heatmap).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from gather_envs.errors import GatherError
from gather_envs.files import PathLike
from gather_envs.metrics.comparison import Comparison
from gather_envs.metrics.passk import PassTable
from gather_envs.metrics.results import Results
from gather_envs.reports.comparison_tables import LABEL_WIDTH

PLOT_EXTRA_HINT = "pip install gather-envs[plot]"
DPI = 120
BAND_ALPHA = 0.2
CURVE_SIZE = (8.0, 4.6)
PANEL_SIZE = (3.6, 3.2)
HEATMAP_CELL = (0.9, 0.55)
HEATMAP_CMAP = "viridis"
MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
MARKER_SIZE = 8.0
MARKER_SHRINK = 0.8
"""Each later curve's marker is this much smaller, so a coinciding earlier one shows around it."""
DODGE_LOG2 = 0.04
"""Sideways offset between curves, in log2 k units (k stays readable, ties stay visible)."""
Y_MARGIN = 0.03
"""Room above 1 and below 0, so curves on the axis limits are not drawn on the frame."""
MIN_DIFF_LIMIT = 0.05
FLOOR_STYLE = {"color": "0.45", "linestyle": "--", "linewidth": 1.4}
FLOOR_LABEL = "chance floor (T=0, no search)"

CURVES_FILE = "passk_curves{suffix}.png"
HEATMAP_FILE = "passk_heatmap{suffix}.png"
COMPARISON_FILE = "compare_curves.png"



class PlotDependencyError(GatherError, ImportError):
    """matplotlib, needed for plots, is not installed."""


def require_matplotlib() -> None:
    """PlotDependencyError unless matplotlib can be imported (checked before a report is printed)."""
    try:
        import matplotlib.backends.backend_agg  # noqa: F401
        import matplotlib.figure  # noqa: F401
    except ImportError as exc:
        raise PlotDependencyError(f"plotting needs matplotlib, an optional extra: {PLOT_EXTRA_HINT}") from exc


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure (constrained layout) bound to an Agg canvas; PlotDependencyError if absent."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(figure)
    return figure


def slug(name: str) -> str:
    """``name`` as a safe file-name part."""
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"


def _log2_axis(ax: Any, ks: tuple[int, ...] | list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks))
    ax.set_xticklabels([str(k) for k in ks])
    ax.minorticks_off()
    if ks:
        ax.set_xlim(min(ks) * 2 ** (-3 * DODGE_LOG2), max(ks) * 2 ** (3 * DODGE_LOG2))
    ax.set_xlabel("k (episodes)")
    ax.grid(True, alpha=0.3)


def _band(ax: Any, ks: Sequence[float], low: list[Any], high: list[Any], color: Any) -> None:
    """An interval band where both ends are known."""
    if all(v is not None for v in low + high):
        ax.fill_between(ks, low, high, color=color, alpha=BAND_ALPHA, linewidth=0)


def _dodged(ks: list[int], position: int, count: int) -> list[float]:
    """``ks`` shifted sideways for curve ``position`` of ``count`` (centred on the true k)."""
    factor = 2 ** (DODGE_LOG2 * (position - (count - 1) / 2))
    return [k * factor for k in ks]


def _curve(ax: Any, ks: list[int], values: list[float], position: int, count: int, **style: Any) -> Any:
    """One curve with its own hollow marker, dodged so that equal curves do not hide each other."""
    (line,) = ax.plot(
        _dodged(ks, position, count),
        values,
        marker=MARKERS[position % len(MARKERS)],
        markersize=MARKER_SIZE * MARKER_SHRINK ** (position % len(MARKERS)),
        markerfacecolor="none",
        markeredgewidth=1.5,
        **style,
    )
    return line


def _floor_line(ax: Any, floor: dict[int, float]) -> None:
    if floor:
        ks = sorted(floor)
        ax.plot(ks, [floor[k] for k in ks], label=FLOOR_LABEL, zorder=1, **FLOOR_STYLE)


def _outside_legend(figure: Any, ax: Any) -> None:
    """The legend to the right of the axes, where it covers no data."""
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        figure.legend(handles, labels, loc="outside right upper")


def _run_title(env_id: str, families: str, agent: str, n: int, num_tasks: int) -> str:
    return f"{env_id} · {families or 'all families'} · {agent}\nn = {n} episodes per task and T, {num_tasks} tasks"


def plot_curves(table: PassTable, path: PathLike, *, title: str = "") -> Path:
    """PASS@(k,T) against k (log2 axis), one line per budget T with its band, and the chance floor."""
    return save_figure(curves_figure(table, title=title), path)


def curves_figure(table: PassTable, *, title: str = "") -> Any:
    """The matplotlib Figure of :func:`plot_curves`."""
    figure = new_figure(CURVE_SIZE)
    ax = figure.subplots()
    drawn = [budget for budget in table.budgets if table.curve(budget)]
    for position, budget in enumerate(drawn):
        rows = table.curve(budget)
        ks = [r.k for r in rows]
        line = _curve(ax, ks, [r.pass_at_k for r in rows], position, len(drawn), label=f"T = {budget}")
        _band(
            ax,
            _dodged(ks, position, len(drawn)),
            [r.ci_low for r in rows],
            [r.ci_high for r in rows],
            line.get_color(),
        )
    _floor_line(ax, table.floor)
    _log2_axis(ax, table.ks)
    ax.set_ylim(-Y_MARGIN, 1.0 + Y_MARGIN)
    ax.set_ylabel("PASS@(k,T)")
    if table.t_star is not None:
        title = f"{title}  (T* = {table.t_star})" if title else f"T* = {table.t_star}"
    ax.set_title(title, fontsize="medium")
    _outside_legend(figure, ax)
    return figure


def plot_heatmap(table: PassTable, path: PathLike, *, title: str = "") -> Path:
    """A k × T heatmap of PASS@(k,T), each cell annotated, with the chance floor as a bottom row."""
    return save_figure(heatmap_figure(table, title=title), path)


def heatmap_figure(table: PassTable, *, title: str = "") -> Any:
    """The matplotlib Figure of :func:`plot_heatmap`."""
    rows = [("floor", table.floor)] if table.floor else []
    rows += [(str(t), {r.k: r.pass_at_k for r in table.curve(t)}) for t in table.budgets]
    values = np.full((len(rows), len(table.ks)), np.nan)
    for i, (_, cells) in enumerate(rows):
        for j, k in enumerate(table.ks):
            if k in cells:
                values[i, j] = cells[k]
    width = max(CURVE_SIZE[0], 1.5 + HEATMAP_CELL[0] * len(table.ks))
    height = max(3.0, 2.0 + HEATMAP_CELL[1] * len(rows))
    figure = new_figure((width, height))
    ax = figure.subplots()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap=HEATMAP_CMAP, aspect="auto", origin="lower")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                shade = "black" if values[i, j] > 0.6 else "white"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color=shade)
    if table.floor:
        ax.axhline(0.5, color="white", linewidth=3)
    ax.set_xticks(range(len(table.ks)))
    ax.set_xticklabels([str(k) for k in table.ks])
    ax.set_yticks(range(len(rows)))
    ax.set_yticklabels([name for name, _ in rows])
    ax.set_xlabel("k (episodes)")
    ax.set_ylabel("T (tool calls)")
    ax.set_title(title or "PASS@(k,T)", fontsize="medium")
    figure.colorbar(image, ax=ax, label="PASS@(k,T)")
    return figure


def result_sections(results: Results) -> list[tuple[str, str, PassTable]]:
    """(file suffix, title, table) for all tasks and for each family of mixed-family results."""
    sections = [("", ", ".join(results.task_families), results.overall)]
    sections += [(f"_{slug(f)}", f, t) for f, t in results.families.items()]
    titled = []
    for suffix, families, table in sections:
        n = max(table.n_max.values(), default=0)
        tasks = max(table.num_tasks.values(), default=0)
        titled.append((suffix, _run_title(results.env_id, families, results.agent_id, n, tasks), table))
    return titled


def plot_results(results: Results, out_dir: PathLike) -> list[Path]:
    """Curves and heatmap for all tasks and for each family; returns the PNG paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for suffix, title, table in result_sections(results):
        paths.append(plot_curves(table, out / CURVES_FILE.format(suffix=suffix), title=title))
        paths.append(plot_heatmap(table, out / HEATMAP_FILE.format(suffix=suffix), title=title))
    return paths


def _diff_limit(comparison: Comparison) -> float:
    """Half-height of the shared difference axis: the largest |A - B| or interval end, padded."""
    ends = [
        abs(v) for e in comparison.per_budget for v in (*e.diff, *e.diff_low, *e.diff_high) if v is not None
    ]
    return max(MIN_DIFF_LIMIT, 1.15 * max(ends, default=0.0))


def plot_comparison(comparison: Comparison, out_dir: PathLike) -> list[Path]:
    """Both runs' curves per budget (top row) and their paired difference (bottom row).

    Each row shares one y-scale, so panels compare by eye; the chance floor is on the top row.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [save_figure(comparison_figure(comparison), out / COMPARISON_FILE)]


def comparison_figure(comparison: Comparison) -> Any:
    """The matplotlib Figure of :func:`plot_comparison`."""
    columns = len(comparison.per_budget)
    figure = new_figure((max(CURVE_SIZE[0], 2.0 + PANEL_SIZE[0] * columns), 2 * PANEL_SIZE[1] + 1.2))
    axes = figure.subplots(2, columns, squeeze=False, sharex="col", sharey="row")
    label_a = comparison.label_a or comparison.agent_a or "A"
    label_b = comparison.label_b or comparison.agent_b or "B"
    short = max(len(label_a), len(label_b)) <= LABEL_WIDTH
    name_a, name_b = (label_a, label_b) if short else (f"A: {label_a}", f"B: {label_b}")
    diff_name = f"{label_a} - {label_b}" if short else "A - B"
    limit = _diff_limit(comparison)
    for col, entry in enumerate(comparison.per_budget):
        ks = list(entry.ks)
        top, bottom = axes[0][col], axes[1][col]
        for position, (name, values, low, high) in enumerate(
            (
                (name_a, entry.pass_a, entry.pass_a_low, entry.pass_a_high),
                (name_b, entry.pass_b, entry.pass_b_low, entry.pass_b_high),
            )
        ):
            line = _curve(top, ks, list(values), position, 2, label=name)
            _band(top, _dodged(ks, position, 2), list(low), list(high), line.get_color())
        _floor_line(top, {k: v for k, v in comparison.chance_floor.items() if k in entry.ks})
        if entry.k_star is not None:
            for ax in (top, bottom):
                ax.axvline(entry.k_star, color="gray", linestyle=":", linewidth=1, label="k* (curves cross)")
        top.set_ylim(-Y_MARGIN, 1.0 + Y_MARGIN)
        top.set_title(f"T = {entry.budget}", fontsize="medium")
        top.grid(True, alpha=0.3)
        diff_line = _curve(bottom, ks, list(entry.diff), 0, 1, color="black", label=diff_name)
        _band(bottom, ks, list(entry.diff_low), list(entry.diff_high), diff_line.get_color())
        bottom.axhline(0.0, color="gray", linewidth=1)
        bottom.set_ylim(-limit, limit)
        _log2_axis(bottom, ks)
        if col == 0:
            top.set_ylabel("PASS@(k,T)")
            bottom.set_ylabel(diff_name)
    _comparison_legend(figure, axes)
    envs = (
        comparison.env_a
        if comparison.env_a == comparison.env_b
        else f"{comparison.env_a} / {comparison.env_b}"
    )
    tasks = max((e.num_tasks for e in comparison.per_budget), default=0)
    n_a = max((e.n_a[1] for e in comparison.per_budget if e.n_a), default=0)
    n_b = max((e.n_b[1] for e in comparison.per_budget if e.n_b), default=0)
    n = max((e.boundary_n[1] for e in comparison.per_budget if e.boundary_n), default=0)
    runs = f"n = {n} episodes per task and T" + (
        "" if n_a == n_b == n else f" from each (A has {n_a}, B {n_b})"
    )
    figure.suptitle(
        f"{label_a} vs {label_b}\n{envs} · {', '.join(comparison.families) or 'all families'}\n"
        f"{runs}, {tasks} tasks"
    )
    return figure


def _comparison_legend(figure: Any, axes: Any) -> None:
    """One legend for every panel (each label once), outside the panels."""
    seen: dict[str, Any] = {}
    for row in axes:
        for ax in row:
            for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
                seen.setdefault(label, handle)
    # At most three entries a row: a one-budget comparison is one panel wide, and five entries
    # in one row ran past both edges of the figure.
    figure.legend(list(seen.values()), list(seen), loc="outside lower center", ncols=min(3, len(seen)))


def save_figure(figure: Any, path: PathLike) -> Path:
    """Write ``figure`` as a PNG at ``path`` (folders made) and return the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path
