"""Reports: results, comparisons and diversity as text tables and PNG plots."""

from __future__ import annotations

from gather_envs.reports.comparison_tables import comparison_verdict, render_comparison, render_verdict
from gather_envs.reports.plots import (
    PlotDependencyError,
    plot_comparison,
    plot_curves,
    plot_heatmap,
    plot_results,
    require_matplotlib,
)
from gather_envs.reports.tables import render_diversity, render_results, render_retrieval
from gather_envs.reports.text import FORMATS

__all__ = [
    "FORMATS",
    "PlotDependencyError",
    "comparison_verdict",
    "plot_comparison",
    "plot_curves",
    "plot_heatmap",
    "plot_results",
    "render_comparison",
    "render_diversity",
    "render_results",
    "render_retrieval",
    "render_verdict",
    "require_matplotlib",
]
