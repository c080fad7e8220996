"""Reports: results and comparisons as terminal table, Markdown, CSV, JSON, and PNG plots."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from gather_envs.errors import ConfigError, GatherError
from gather_envs.metrics import Comparison, Results, compare_runs, diversity_by_agent, results_from_records
from gather_envs.records import EpisodeRecord
from gather_envs.reports import (
    FORMATS,
    PlotDependencyError,
    plot_comparison,
    plot_results,
    render_comparison,
    render_diversity,
    render_results,
)

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
HAS_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
needs_matplotlib = pytest.mark.skipif(
    not HAS_MATPLOTLIB, reason="matplotlib (the [plot] extra) is not installed"
)


def run(agent: str, boost: float, seed: int, families: bool = False) -> list[EpisodeRecord]:
    rng = np.random.default_rng(seed)
    records = []
    for t in range(16):
        family = ("bridge" if t % 2 else "comparison") if families else "bridge"
        base = 0.05 * (t % 6)
        for budget in (0, 2, 5):
            p = min(1.0, base + boost * budget / 5)
            for i in range(8):
                ok = bool(rng.random() < p)
                records.append(
                    EpisodeRecord(
                        env_id="Gather-MultiHop-v1",
                        corpus_hash="sha256:abc",
                        task_id=f"task-{t:02d}",
                        family=family,
                        budget=budget,
                        episode_index=i,
                        success=ok,
                        agent_id=agent,
                        queries=(f"q{rng.integers(4)}",),
                    )
                )
    return records


@pytest.fixture(scope="module")
def results() -> Results:
    return results_from_records(run("base", 0.3, seed=1, families=True), bootstrap=200)


@pytest.fixture(scope="module")
def comparison() -> Comparison:
    return compare_runs(run("rl", 0.5, seed=2), run("base", 0.3, seed=1), bootstrap=200)


def test_every_format_renders(results: Results, comparison: Comparison) -> None:
    for fmt in FORMATS:
        assert render_results(results, fmt).strip()
        assert render_comparison(comparison, fmt).strip()


def test_unknown_format_is_a_config_error(results: Results) -> None:
    with pytest.raises(ConfigError, match="choose one of"):
        render_results(results, "html")


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_text_table_shows_estimates_intervals_boundary_and_t_star(results: Results, fmt: str) -> None:
    text = render_results(results, fmt)
    row = results.overall.row(5, 4)
    assert row.ci_low is not None and row.ci_high is not None
    assert f"{row.pass_at_k:.3f} [{row.ci_low:.3f}, {row.ci_high:.3f}]" in text
    assert f"{results.overall.boundary[5].size}/{results.overall.num_tasks[5]}" in text
    assert f"T* = {results.overall.t_star}" in text
    assert "family bridge" in text and "family comparison" in text


def test_markdown_table_rows_have_matching_columns(results: Results) -> None:
    lines = [line for line in render_results(results, "md").splitlines() if line.startswith("|")]
    assert lines and len({line.count(" | ") for line in lines if "---" not in line}) == 1


def test_csv_holds_every_number_at_full_precision(results: Results) -> None:
    rows = list(csv.DictReader(io.StringIO(render_results(results, "csv"))))
    sections = {"all": results.overall, **results.families}
    assert len(rows) == sum(len(t.rows) for t in sections.values())
    for line in rows:
        cell = sections[line["section"]].row(int(line["T"]), int(line["k"]))
        assert float(line["pass"]) == cell.pass_at_k
        assert float(line["ci_low"]) == cell.ci_low and float(line["ci_high"]) == cell.ci_high


def test_json_format_is_the_results_json(results: Results) -> None:
    assert Results.from_json(json.loads(render_results(results, "json"))) == results


def test_comparison_report_shows_differences_crossing_and_mcnemar(comparison: Comparison) -> None:
    text = render_comparison(comparison, "table")
    entry = comparison.at(5)
    assert f"{entry.diff[0]:.3f}" in text
    assert f"exact McNemar p = {entry.mcnemar_p:.4g}" in text
    assert "rl vs base" in text
    rows = list(csv.DictReader(io.StringIO(render_comparison(comparison, "csv"))))
    assert float(rows[0]["diff"]) == comparison.per_budget[0].diff[0]
    assert Comparison.from_json(json.loads(render_comparison(comparison, "json"))) == comparison


def test_diversity_report_puts_agents_side_by_side() -> None:
    diversity = diversity_by_agent([*run("rl", 0.5, seed=2), *run("base", 0.3, seed=1)])
    text = render_diversity(diversity)
    assert "base" in text and "rl" in text
    assert f"{diversity['rl'].at(5).mean:.1f}" in text
    assert json.loads(render_diversity(diversity, "json"))["rl"]["agent_id"] == "rl"


def _assert_valid_png(path: Path) -> None:
    import matplotlib.image

    assert path.read_bytes()[:8] == PNG_MAGIC
    image = matplotlib.image.imread(path)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100


@needs_matplotlib
def test_result_plots_are_valid_pngs(results: Results, tmp_path: Path) -> None:
    paths = plot_results(results, tmp_path / "plots")
    names = sorted(p.name for p in paths)
    assert names == sorted(
        [
            "passk_curves.png",
            "passk_heatmap.png",
            "passk_curves_bridge.png",
            "passk_heatmap_bridge.png",
            "passk_curves_comparison.png",
            "passk_heatmap_comparison.png",
        ]
    )
    for path in paths:
        _assert_valid_png(path)


@needs_matplotlib
def test_comparison_plot_is_a_valid_png(comparison: Comparison, tmp_path: Path) -> None:
    (path,) = plot_comparison(comparison, tmp_path)
    _assert_valid_png(path)


def test_missing_matplotlib_names_the_extra(results: Results, tmp_path: Path, monkeypatch) -> None:
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # makes `import matplotlib...` fail
    with pytest.raises(PlotDependencyError, match=r"pip install gather-envs\[plot\]") as info:
        plot_results(results, tmp_path)
    assert isinstance(info.value, GatherError) and isinstance(info.value, ImportError)
