"""Reports: results, comparisons and diversity as text tables and PNG plots."""

from __future__ import annotations

from gather_envs.reports.plots import (
    PlotDependencyError,
    plot_comparison,
    plot_curves,
    plot_heatmap,
    plot_results,
)
from gather_envs.reports.tables import (
    FORMATS,
    render_comparison,
    render_diversity,
    render_results,
)

__all__ = [
    "FORMATS",
    "PlotDependencyError",
    "plot_comparison",
    "plot_curves",
    "plot_heatmap",
    "plot_results",
    "render_comparison",
    "render_diversity",
    "render_results",
]
