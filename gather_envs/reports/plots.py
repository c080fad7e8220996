"""PNG plots of results and comparisons: pass@k curves per T with interval bands, a k×T heatmap.

matplotlib is an optional extra, imported on first use. Figures are drawn on the Agg canvas through
matplotlib's object API (no ``pyplot``), so plotting never touches a caller's global backend.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from gather_envs.errors import GatherError
from gather_envs.metrics.compare import Comparison
from gather_envs.metrics.passk import PassTable
from gather_envs.metrics.results import Results

PLOT_EXTRA_HINT = "pip install gather-envs[plot]"
DPI = 120
BAND_ALPHA = 0.2
CURVE_SIZE = (6.4, 4.4)
HEATMAP_CELL = (0.9, 0.55)
HEATMAP_CMAP = "viridis"

CURVES_FILE = "passk_curves{suffix}.png"
HEATMAP_FILE = "passk_heatmap{suffix}.png"
COMPARISON_FILE = "compare_curves.png"

PathLike = str | os.PathLike[str]


class PlotDependencyError(GatherError, ImportError):
    """matplotlib, needed for plots, is not installed."""


def _new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure bound to an Agg canvas; PlotDependencyError if matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise PlotDependencyError(f"plotting needs matplotlib, an optional extra: {PLOT_EXTRA_HINT}") from exc
    figure = Figure(figsize=figsize)
    FigureCanvasAgg(figure)
    return figure


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "unnamed"


def _log2_axis(ax: Any, ks: tuple[int, ...] | list[int]) -> None:
    ax.set_xscale("log", base=2)
    ax.set_xticks(list(ks))
    ax.set_xticklabels([str(k) for k in ks])
    ax.set_xlabel("k (episodes)")
    ax.grid(True, alpha=0.3)


def _band(ax: Any, ks: list[int], low: list[Any], high: list[Any], color: Any) -> None:
    """An interval band where both ends are known."""
    if all(v is not None for v in low + high):
        ax.fill_between(ks, low, high, color=color, alpha=BAND_ALPHA, linewidth=0)


def plot_curves(table: PassTable, path: PathLike, *, title: str = "") -> Path:
    """PASS@(k,T) against k (log2 axis), one line per budget T with its interval band."""
    figure = _new_figure(CURVE_SIZE)
    ax = figure.subplots()
    for budget in table.budgets:
        rows = table.curve(budget)
        if not rows:
            continue
        ks = [r.k for r in rows]
        (line,) = ax.plot(ks, [r.pass_at_k for r in rows], marker="o", label=f"T = {budget}")
        _band(ax, ks, [r.ci_low for r in rows], [r.ci_high for r in rows], line.get_color())
    _log2_axis(ax, table.ks)
    ax.set_ylim(0.0, 1.0)
    ax.set_ylabel("PASS@(k,T)")
    if table.t_star is not None:
        title = f"{title}  (T* = {table.t_star})" if title else f"T* = {table.t_star}"
    ax.set_title(title)
    ax.legend(loc="lower right")
    figure.tight_layout()
    return _save(figure, path)


def plot_heatmap(table: PassTable, path: PathLike, *, title: str = "") -> Path:
    """A k × T heatmap of PASS@(k,T), each cell annotated with its value."""
    values = np.full((len(table.budgets), len(table.ks)), np.nan)
    for row in table.rows:
        values[table.budgets.index(row.budget), table.ks.index(row.k)] = row.pass_at_k
    width = max(CURVE_SIZE[0], 1.5 + HEATMAP_CELL[0] * len(table.ks))
    height = max(2.5, 1.5 + HEATMAP_CELL[1] * len(table.budgets))
    figure = _new_figure((width, height))
    ax = figure.subplots()
    image = ax.imshow(values, vmin=0.0, vmax=1.0, cmap=HEATMAP_CMAP, aspect="auto", origin="lower")
    for i in range(values.shape[0]):
        for j in range(values.shape[1]):
            if not np.isnan(values[i, j]):
                shade = "black" if values[i, j] > 0.6 else "white"
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", color=shade)
    ax.set_xticks(range(len(table.ks)))
    ax.set_xticklabels([str(k) for k in table.ks])
    ax.set_yticks(range(len(table.budgets)))
    ax.set_yticklabels([str(t) for t in table.budgets])
    ax.set_xlabel("k (episodes)")
    ax.set_ylabel("T (tool calls)")
    ax.set_title(title or "PASS@(k,T)")
    figure.colorbar(image, ax=ax, label="PASS@(k,T)")
    figure.tight_layout()
    return _save(figure, path)


def plot_results(results: Results, out_dir: PathLike) -> list[Path]:
    """Curves and heatmap for all tasks and for each family; returns the PNG paths written."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sections: list[tuple[str, str, PassTable]] = [("", results.agent_id, results.overall)]
    sections += [(f"_{_slug(f)}", f"{results.agent_id} / {f}", t) for f, t in results.families.items()]
    paths: list[Path] = []
    for suffix, title, table in sections:
        paths.append(plot_curves(table, out / CURVES_FILE.format(suffix=suffix), title=title))
        paths.append(plot_heatmap(table, out / HEATMAP_FILE.format(suffix=suffix), title=title))
    return paths


def plot_comparison(comparison: Comparison, out_dir: PathLike) -> list[Path]:
    """Both agents' curves per budget (top row) and their paired difference (bottom row)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    columns = len(comparison.per_budget)
    figure = _new_figure((max(CURVE_SIZE[0], 3.6 * columns), 6.4))
    axes = figure.subplots(2, columns, squeeze=False, sharex="col")
    name_a, name_b = comparison.agent_a or "A", comparison.agent_b or "B"
    for col, entry in enumerate(comparison.per_budget):
        ks = list(entry.ks)
        top, bottom = axes[0][col], axes[1][col]
        for name, values, low, high in (
            (name_a, entry.pass_a, entry.pass_a_low, entry.pass_a_high),
            (name_b, entry.pass_b, entry.pass_b_low, entry.pass_b_high),
        ):
            (line,) = top.plot(ks, list(values), marker="o", label=name)
            _band(top, ks, list(low), list(high), line.get_color())
        if entry.k_star is not None:
            for ax in (top, bottom):
                ax.axvline(entry.k_star, color="gray", linestyle=":", linewidth=1)
        top.set_ylim(0.0, 1.0)
        top.set_title(f"T = {entry.budget}")
        top.grid(True, alpha=0.3)
        (diff_line,) = bottom.plot(ks, list(entry.diff), marker="o", color="black")
        _band(bottom, ks, list(entry.diff_low), list(entry.diff_high), diff_line.get_color())
        bottom.axhline(0.0, color="gray", linewidth=1)
        _log2_axis(bottom, ks)
        if col == 0:
            top.set_ylabel("PASS@(k,T)")
            bottom.set_ylabel(f"{name_a} - {name_b}")
            top.legend(loc="lower right")
    figure.suptitle(f"{name_a} vs {name_b}")
    figure.tight_layout()
    return [_save(figure, out / COMPARISON_FILE)]


def _save(figure: Any, path: PathLike) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=DPI, format="png")
    return path
