"""Metrics over episode records: PASS@(k,T) with intervals, boundaries, T*, comparisons, diversity."""

from __future__ import annotations

from gather_envs.metrics.bootstrap import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    bootstrap_weights,
    percentile_interval,
    resampled_means,
)
from gather_envs.metrics.boundary import Boundary, TStar, boundary, t_star, t_star_from_samples
from gather_envs.metrics.compare import compare_runs, run_labels
from gather_envs.metrics.comparison import BudgetComparison, Comparison
from gather_envs.metrics.diversity import (
    Diversity,
    DiversitySummary,
    diversity_by_agent,
    normalize_query,
    strategy_diversity,
)
from gather_envs.metrics.floor import ChanceFloor
from gather_envs.metrics.passk import (
    PassRow,
    PassTable,
    TaskCounts,
    count_episodes,
    default_ks,
    pass_at_k,
    pass_table,
    pass_table_from_records,
    per_task_pass_at_k,
    split_by_family,
)
from gather_envs.metrics.results import (
    RESULTS_SCHEMA_VERSION,
    Results,
    load_results,
    results_from_records,
    save_results,
)
from gather_envs.metrics.significance import crossing_point, mcnemar_exact

__all__ = [
    "DEFAULT_BOOTSTRAP",
    "DEFAULT_CONFIDENCE",
    "RESULTS_SCHEMA_VERSION",
    "Boundary",
    "ChanceFloor",
    "BudgetComparison",
    "Comparison",
    "Diversity",
    "DiversitySummary",
    "PassRow",
    "PassTable",
    "Results",
    "TStar",
    "TaskCounts",
    "bootstrap_weights",
    "boundary",
    "compare_runs",
    "count_episodes",
    "crossing_point",
    "default_ks",
    "diversity_by_agent",
    "load_results",
    "mcnemar_exact",
    "normalize_query",
    "pass_at_k",
    "pass_table",
    "pass_table_from_records",
    "per_task_pass_at_k",
    "percentile_interval",
    "resampled_means",
    "results_from_records",
    "run_labels",
    "save_results",
    "split_by_family",
    "strategy_diversity",
    "t_star",
    "t_star_from_samples",
]
