"""Reports: results and comparisons as terminal table, Markdown, CSV, JSON, and PNG plots."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
import io
import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from gather_envs.cli import main
from gather_envs.corpus import frozen
from gather_envs.corpus.floor import load_chance_floor
from gather_envs.corpus.frozen import MANIFEST, corpora_root
from gather_envs.corpus.manifest import seal_manifest
from gather_envs.errors import ConfigError, CorpusError, GatherError, RecordsError
from gather_envs.metrics import Comparison, Results, compare_runs, diversity_by_agent, results_from_records
from gather_envs.records import EpisodeRecord
from gather_envs.reports import (
    FORMATS,
    PlotDependencyError,
    comparison_verdict,
    plot_comparison,
    plot_results,
    render_comparison,
    render_diversity,
    render_results,
)
from gather_envs.reports.plots import (
    FLOOR_LABEL,
    comparison_figure,
    curves_figure,
    heatmap_figure,
    result_sections,
)
from gather_envs.runs import append_records, check_unique_cells, load_run
from gather_envs.tasks.floor import MANIFEST_KEY

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
                        env_id="Gather-MultiHop-v0",
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


# --------------------------------------------------------------------------------------------
# Legends, verdicts and the chance floor

FLOOR = {
    "bridge": {1: 0.011, 2: 0.021, 4: 0.042, 8: 0.083},
    "comparison": {1: 0.031, 2: 0.061, 4: 0.12, 8: 0.23},
}


def zero_run(agent: str, n: int = 4) -> list[EpisodeRecord]:
    """An agent that never solves anything."""
    return [
        dataclasses.replace(r, agent_id=agent, success=False)
        for r in run(agent, 0.0, seed=0)
        if r.episode_index < n
    ]


@pytest.mark.parametrize("fmt", ["table", "md"])
def test_reports_carry_a_legend_for_cells_brackets_boundary_and_t_star(
    results: Results, comparison: Comparison, fmt: str
) -> None:
    text = render_results(results, fmt)
    assert "How to read this" in text
    assert "|B_T|: tasks solved at least once" in text and "T*: the smallest budget" in text
    assert "[low, high]: its 95% bootstrap interval over tasks" in text
    assert "floor:" not in text  # no floor given, none explained
    compared = render_comparison(comparison, fmt)
    assert "How to read this" in compared and "k*: where the curves cross" in compared
    assert "p: two-sided paired permutation test" in compared and "the test the verdict uses" in compared
    assert "p Holm: p adjusted by Holm" in compared


def test_floor_is_shown_in_table_markdown_csv_and_json_when_given() -> None:
    records = run("base", 0.3, seed=1, families=True)
    with_floor = results_from_records(records, bootstrap=100, chance_floor=FLOOR)
    # Eight tasks of each family: the overall floor is their task-weighted mean.
    assert with_floor.overall.floor == pytest.approx({1: 0.021, 2: 0.041, 4: 0.081, 8: 0.1565})
    assert with_floor.families["bridge"].floor == FLOOR["bridge"]
    table = render_results(with_floor, "table")
    floor_rows = [line.split() for line in table.splitlines() if line.startswith("floor ")]
    assert floor_rows == [
        ["floor", "0.021", "0.041", "0.081", "0.157", "-"],
        ["floor", "0.011", "0.021", "0.042", "0.083", "-"],
        ["floor", "0.031", "0.061", "0.120", "0.230", "-"],
    ]
    assert "floor: PASS@(k,0) of a question-only guesser" in table
    assert "| floor | 0.021 " in render_results(with_floor, "md").replace("  ", " ")
    rows = list(csv.DictReader(io.StringIO(render_results(with_floor, "csv"))))
    assert {(r["section"], r["k"], r["chance_floor"]) for r in rows if r["T"] == "0"} >= {
        ("bridge", "1", "0.011"),
        ("comparison", "8", "0.23"),
    }
    data = json.loads(render_results(with_floor, "json"))
    assert data["chance_floor"]["8"] == pytest.approx(0.1565)
    assert data["families"]["comparison"]["chance_floor"] == {"1": 0.031, "2": 0.061, "4": 0.12, "8": 0.23}
    assert data["chance_floor_by_family"]["bridge"]["1"] == 0.011
    assert Results.from_json(data) == with_floor
    without = render_results(results_from_records(records, bootstrap=100), "table")
    assert not any(line.startswith("floor ") for line in without.splitlines())


def test_floor_of_a_family_without_one_is_not_shown_for_the_mix() -> None:
    results = results_from_records(
        run("base", 0.3, seed=1, families=True), bootstrap=0, chance_floor={"bridge": FLOOR["bridge"]}
    )
    assert results.overall.floor == {} and results.families["comparison"].floor == {}
    assert results.families["bridge"].floor == FLOOR["bridge"]


def test_comparison_shows_the_floor_column() -> None:
    result = compare_runs(run("rl", 0.5, seed=2), run("base", 0.3, seed=1), bootstrap=50, chance_floor=FLOOR)
    assert result.chance_floor == FLOOR["bridge"]
    text = render_comparison(result, "table")
    assert (
        text.splitlines()[text.splitlines().index("[T = 0 (16 tasks, n = 8 episodes per task)]") + 2].split()[
            -1
        ]
        == "floor"
    )
    rows = list(csv.DictReader(io.StringIO(render_comparison(result, "csv"))))
    assert [r["chance_floor"] for r in rows if r["T"] == "5"] == ["0.011", "0.021", "0.042", "0.083"]


def test_identically_zero_curves_are_called_that_not_uncrossed() -> None:
    result = compare_runs(zero_run("a"), zero_run("b"), bootstrap=100)
    text = render_comparison(result, "table")
    assert "curves do not cross" not in text
    assert text.count("both curves are 0 at every k: neither run solved a task") == 3
    assert text.rstrip().splitlines()[-1] == (
        "Verdict: no significant difference between the curves at any T and k; the boundaries "
        "do not differ significantly at any T; tests: paired permutation over tasks (curves) and "
        "exact McNemar (boundary), Holm-corrected over the 12 tests of this report, significant "
        "when p < 0.05."
    )


def test_verdict_names_the_run_ahead_and_where_the_boundary_differs() -> None:
    strong = [dataclasses.replace(r, success=r.budget > 0) for r in zero_run("strong")]
    result = compare_runs(zero_run("weak"), strong, bootstrap=200)
    line = comparison_verdict(result)
    assert line.startswith("Verdict: strong ahead at T=2 (k=1-4), T=5 (k=1-4);")
    # McNemar's p and its Holm adjustment over the report's 12 tests (9 curves, 3 boundaries)
    assert "boundary differs significantly at T=2 (McNemar p = 3.1e-05, Holm 0.00037; strong solves" in line
    assert render_comparison(result, "md").rstrip().endswith(line)
    assert "## Verdict" in render_comparison(result, "md")


def test_one_agent_with_unequal_n_reads_as_no_difference_and_says_which_episodes() -> None:
    long_run = run("heuristic", 0.3, seed=1)
    short_run = [r for r in long_run if r.episode_index < 2]
    result = compare_runs(long_run, short_run, bootstrap=100, sources=("runs/n8.jsonl", "runs/n2.jsonl"))
    text = render_comparison(result, "table")
    assert "A: heuristic (n8.jsonl)  vs  B: heuristic (n2.jsonl)" in text
    assert "[T = 5 (16 tasks, n = 2 episodes per task: those both runs played; A has 8, B 2)]" in text
    assert "only A 0, only B 0" in text
    assert "Verdict: no significant difference" in text


def test_markdown_headings_never_go_back_to_h1_under_h2(results: Results, comparison: Comparison) -> None:
    diversity = render_diversity(diversity_by_agent(run("base", 0.3, seed=1)), "md")
    for text in (render_results(results, "md") + diversity, render_comparison(comparison, "md") + diversity):
        levels = [len(line) - len(line.lstrip("#")) for line in text.splitlines() if line.startswith("#")]
        assert levels[0] == 1 and all(level == 2 for level in levels[1:]), levels


# --------------------------------------------------------------------------------------------
# What the plots show


def test_plot_titles_name_env_family_agent_n_and_tasks(results: Results) -> None:
    titles = [title for _, title, _ in result_sections(results)]
    assert titles == [
        "Gather-MultiHop-v0 · bridge, comparison · base\nn = 8 episodes per task and T, 16 tasks",
        "Gather-MultiHop-v0 · bridge · base\nn = 8 episodes per task and T, 8 tasks",
        "Gather-MultiHop-v0 · comparison · base\nn = 8 episodes per task and T, 8 tasks",
    ]


@needs_matplotlib
def test_curve_plot_draws_the_floor_and_t_star_in_the_title() -> None:
    results = results_from_records(run("base", 0.3, seed=1), bootstrap=50, chance_floor=FLOOR)
    figure = curves_figure(results.overall, title="Gather-MultiHop-v0 · bridge · base")
    (ax,) = figure.axes
    assert [line.get_label() for line in ax.get_lines()] == ["T = 0", "T = 2", "T = 5", FLOOR_LABEL]
    assert list(ax.get_lines()[-1].get_ydata()) == [0.011, 0.021, 0.042, 0.083]
    assert ax.get_title() == f"Gather-MultiHop-v0 · bridge · base  (T* = {results.overall.t_star})"


@needs_matplotlib
def test_coinciding_curves_stay_visible_and_the_legend_covers_no_data() -> None:
    results = results_from_records(zero_run("zero"), bootstrap=0)
    figure = curves_figure(results.overall)
    (ax,) = figure.axes
    zero, two, five = ax.get_lines()
    assert list(zero.get_ydata()) == list(two.get_ydata()) == [0.0, 0.0, 0.0]
    assert zero.get_marker() != two.get_marker() != five.get_marker()
    assert all(a != b for a, b in zip(zero.get_xdata(), two.get_xdata(), strict=True))  # dodged
    assert zero.get_markersize() > two.get_markersize()  # the earlier one rings the later one
    figure.canvas.draw()
    (legend,) = figure.legends
    renderer = figure.canvas.get_renderer()
    assert not legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer))


@needs_matplotlib
def test_comparison_panels_share_one_y_scale_per_row_and_show_the_floor() -> None:
    result = compare_runs(run("rl", 0.5, seed=2), run("base", 0.3, seed=1), bootstrap=50, chance_floor=FLOOR)
    figure = comparison_figure(result)
    figure.canvas.draw()
    axes = [ax for ax in figure.axes]
    top, bottom = axes[:3], axes[3:]
    assert len({ax.get_ylim() for ax in top}) == 1 and len({ax.get_ylim() for ax in bottom}) == 1
    low, high = bottom[0].get_ylim()
    assert low == -high and high >= max(
        abs(v) for e in result.per_budget for v in e.diff_low + e.diff_high if v is not None
    )
    for ax in top:
        assert FLOOR_LABEL in [line.get_label() for line in ax.get_lines()]
    title = figure.get_suptitle()
    assert (
        "rl vs base" in title
        and "Gather-MultiHop-v0 · bridge" in title
        and "n = 8" in title
        and "16 tasks" in title
    )
    (legend,) = figure.legends
    renderer = figure.canvas.get_renderer()
    assert not any(legend.get_window_extent(renderer).overlaps(ax.get_window_extent(renderer)) for ax in axes)


@needs_matplotlib
def test_a_one_budget_comparison_keeps_its_whole_legend_inside_the_figure() -> None:
    def crossing(agent: str, rates: list[float]) -> list[EpisodeRecord]:
        return [
            EpisodeRecord(env_id="Gather-MultiHop-v0", corpus_hash="sha256:abc", task_id=f"task-{t:02d}",
                          family="bridge", budget=3, episode_index=i, success=i < round(16 * rate), agent_id=agent)
            for t, rate in enumerate(rates) for i in range(16)
        ]  # fmt: skip

    # Sure on half the tasks against middling on all: the curves cross, so every legend entry shows.
    result = compare_runs(crossing("sure-on-half-epoch-1", [0.9] * 8 + [0.0] * 8), crossing("middling-epoch-2", [0.3] * 16), bootstrap=50,
                          chance_floor=FLOOR)  # fmt: skip
    assert result.per_budget[0].k_star is not None
    figure = comparison_figure(result)
    figure.canvas.draw()
    (legend,) = figure.legends
    box = legend.get_window_extent(figure.canvas.get_renderer())
    width, height = figure.canvas.get_width_height()
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width and box.y1 <= height


@needs_matplotlib
def test_heatmap_has_a_floor_row_below_t_0() -> None:
    results = results_from_records(run("base", 0.3, seed=1), bootstrap=0, chance_floor=FLOOR)
    figure = heatmap_figure(results.overall)
    ax = figure.axes[0]
    assert [t.get_text() for t in ax.get_yticklabels()] == ["floor", "0", "2", "5"]
    assert "0.08" in [t.get_text() for t in ax.texts]


# --------------------------------------------------------------------------------------------
# report and compare on the command line: refusals, labels, the floor from the manifest


def cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def write(path: Path, records: list[EpisodeRecord]) -> Path:
    append_records(path, records, fsync=False)
    return path


def test_report_refuses_the_same_file_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path / "a.jsonl", run("base", 0.3, seed=1))
    code, out, err = cli(capsys, "report", str(path), str(path), "--bootstrap", "0")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and f"records file {path} is given twice (arguments 1 and 2)" in err
    alias = tmp_path / "alias.jsonl"
    alias.symlink_to(path)
    code, _, err = cli(capsys, "report", str(path), str(alias), "--bootstrap", "0")
    assert code == 2 and "given twice" in err and str(alias) in err


def test_report_refuses_a_duplicate_cell_naming_both_lines(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = run("base", 0.3, seed=1)
    path = write(tmp_path / "a.jsonl", [*records, records[2]])
    code, out, err = cli(capsys, "report", str(path), "--bootstrap", "0")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert (
        f"two records for task 'task-00', T=0, episode 2 (agent 'base'): {path}:3 and {path}:{len(records) + 1}"
        in err
    )
    # A run split over files, with one episode in two of them: both files are named.
    first, rest = write(tmp_path / "first.jsonl", records[:1]), write(tmp_path / "rest.jsonl", records[1:])
    again = write(tmp_path / "again.jsonl", records[:1])
    code, _, err = cli(capsys, "report", str(first), str(rest), str(again), "--bootstrap", "0")
    assert code == 2 and f"{first}:1 and {again}:1" in err


def test_compare_refuses_duplicates_and_mixed_agents_naming_the_place(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base, rl = run("base", 0.3, seed=1), run("rl", 0.5, seed=2)
    good = write(tmp_path / "base.jsonl", base)
    doubled = write(tmp_path / "rl.jsonl", [rl[0], *rl])
    code, out, err = cli(capsys, "compare", str(good), str(doubled), "--bootstrap", "0")
    assert code == 2 and out == "" and f"{doubled}:1 and {doubled}:2" in err
    mixed = write(tmp_path / "mixed.jsonl", [*rl, *[dataclasses.replace(r, agent_id="sft") for r in rl]])
    code, out, err = cli(capsys, "compare", str(mixed), str(good), "--bootstrap", "0")
    assert code == 2 and out == "" and err.count("\n") == 1
    assert f"run A ({mixed}) mixes 2 agent ids (rl, sft)" in err


def test_compare_labels_two_runs_of_one_agent_by_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = run("heuristic", 0.3, seed=1)
    long_run = write(tmp_path / "n8.jsonl", records)
    short_run = write(tmp_path / "n2.jsonl", [r for r in records if r.episode_index < 2])
    code, out, _ = cli(capsys, "compare", str(long_run), str(short_run), "--bootstrap", "100")
    assert code == 0
    assert "A: heuristic (n8.jsonl)  vs  B: heuristic (n2.jsonl)" in out
    assert out.rstrip().splitlines()[-1].startswith("Verdict: no significant difference")
    assert "T  heuristic (n8.jsonl)  heuristic (n2.jsonl)" in out  # diversity columns
    code, out, _ = cli(
        capsys, "compare", str(long_run), str(short_run), "--bootstrap", "100", "--format", "json"
    )
    data = json.loads(out)
    assert (data["label_a"], data["label_b"]) == ("heuristic (n8.jsonl)", "heuristic (n2.jsonl)")
    assert data["verdict"].startswith("Verdict: no significant difference")
    assert {e["boundary"]["episodes_per_task"]["max"] for e in data["per_budget"]} == {2}


def test_plot_without_matplotlib_fails_before_printing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path / "a.jsonl", run("base", 0.3, seed=1))
    for name in list(sys.modules):
        if name == "matplotlib" or name.startswith("matplotlib."):
            monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    for argv in (("report", str(path)), ("compare", str(path), str(path))):
        code, out, err = cli(capsys, *argv, "--bootstrap", "0", "--plot", str(tmp_path / "plots"))
        assert code == 2 and out == ""
        assert (
            err
            == "gather-envs: error: plotting needs matplotlib, an optional extra: pip install gather-envs[plot]\n"
        )
    assert not (tmp_path / "plots").exists()


def _corpora_with_floor(root: Path, floor: dict[str, dict[int, float]]) -> str:
    """A corpora root holding the default corpus manifest with ``floor`` as its families' floors.

    Each family's floor is stored as the curve of one guesser ("train"), the manifest resealed
    (field hashes) so that it passes the manifest checks like a written one.
    """
    manifest = json.loads((corpora_root() / "default" / MANIFEST).read_text())
    for family, curve in floor.items():
        entry = {str(k): v for k, v in curve.items()}
        manifest[MANIFEST_KEY][family] = {
            "tasks": 10,
            "guessers": {"train": entry},
            "floor": entry,
            "best_guesser": {k: "train" for k in entry},
        }
    (root / "default").mkdir(parents=True)
    (root / "default" / MANIFEST).write_text(json.dumps(seal_manifest(manifest)))
    return manifest["content_hash"]


def test_report_shows_the_floor_stored_in_the_corpus_manifest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    content_hash = _corpora_with_floor(tmp_path / "corpora", FLOOR)
    monkeypatch.setattr(frozen, "corpora_root", lambda: tmp_path / "corpora")
    stored = load_chance_floor(content_hash)
    assert stored is not None and {f: stored[f] for f in FLOOR} == FLOOR
    assert load_chance_floor("sha256:other") is None
    records = [dataclasses.replace(r, corpus_hash=content_hash) for r in run("base", 0.3, seed=1)]
    path = write(tmp_path / "a.jsonl", records)
    code, out, _ = cli(capsys, "report", str(path), "--bootstrap", "0")
    assert code == 0
    assert ["floor", "0.011", "0.021", "0.042", "0.083", "-"] in [line.split() for line in out.splitlines()]
    code, out, _ = cli(capsys, "report", str(path), "--bootstrap", "0", "--format", "json")
    assert json.loads(out)["chance_floor"] == {"1": 0.011, "2": 0.021, "4": 0.042, "8": 0.083}
    code, out, _ = cli(capsys, "compare", str(path), str(path), "--bootstrap", "0", "--format", "json")
    assert json.loads(out)["chance_floor"]["8"] == 0.083
    # The stored floor was measured on the test split: it does not apply to a run on the train split
    # (and these made-up task ids are in no split, so none is measured either).
    train = [dataclasses.replace(r, env_kwargs={"split": "train"}) for r in records]
    code, out, _ = cli(capsys, "report", str(write(tmp_path / "train.jsonl", train)), "--bootstrap", "0")
    assert code == 0 and "\nfloor " not in out


def test_a_run_on_a_corpus_without_a_stored_floor_shows_no_floor_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    records = [dataclasses.replace(r, corpus_hash="sha256:procedural") for r in run("base", 0.3, seed=1)]
    code, out, _ = cli(capsys, "report", str(write(tmp_path / "a.jsonl", records)), "--bootstrap", "0")
    assert code == 0 and "\nfloor " not in out


def test_a_malformed_floor_in_a_manifest_is_a_corpus_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    content_hash = _corpora_with_floor(tmp_path / "corpora", {"bridge": {1: 1.5}})
    monkeypatch.setattr(frozen, "corpora_root", lambda: tmp_path / "corpora")
    with pytest.raises(CorpusError, match=r"manifest\.json: .*chance_floor.*1\.5"):
        load_chance_floor(content_hash)


def test_places_count_blank_lines_and_skip_a_torn_tail(tmp_path: Path) -> None:
    records = run("base", 0.3, seed=1)[:2]
    path = tmp_path / "a.jsonl"
    path.write_bytes(records[0].to_line() + b"\n\n" + records[1].to_line() + records[0].to_line() + b'{"torn')
    with warnings.catch_warnings():  # the torn tail is reported by the reader; not the point here
        warnings.simplefilter("ignore")
        loaded = load_run(path, unique=False)
        located, places = loaded.records, loaded.places
    assert located == [records[0], records[1], records[0]]
    assert places == [f"{path}:1", f"{path}:4", f"{path}:5"]
    with pytest.raises(RecordsError, match=rf"episode 0 \(agent 'base'\): {path}:1 and {path}:5"):
        check_unique_cells(located, places)


# One verdict, one test: the shipped learning result, Holm, the primary endpoint

LEARNING = Path(__file__).resolve().parents[2] / "baselines" / "learning-cpu"


def test_verdict_on_the_shipped_learning_records_agrees_with_the_p_it_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    base, grpo = str(LEARNING / "base.jsonl"), str(LEARNING / "grpo.jsonl")
    code, out, _ = cli(capsys, "compare", base, grpo, "--format", "json")
    assert code == 0
    data = json.loads(out)
    at_1 = next(e for e in data["per_budget"] if e["T"] == 1)
    # the interval at k = 4 excludes 0 while the permutation p is 0.06: the verdict follows p
    assert at_1["diff_high"][2] < 0 and at_1["diff_p"][2] > 0.05
    assert data["verdict"].startswith("Verdict: grpo ahead at T=1 (k=1-2); the boundaries do not differ")
    assert "Holm-corrected over the 12 tests" in data["verdict"]
    for entry in data["per_budget"]:
        assert len(entry["diff_p_holm"]) == len(entry["diff_p"])
        assert all(q >= p for p, q in zip(entry["diff_p"], entry["diff_p_holm"], strict=True))
        assert entry["boundary"]["mcnemar_p_holm"] >= entry["boundary"]["mcnemar_p"]
    significant = {
        (e["T"], k) for e in data["per_budget"] for k, q in zip(e["ks"], e["diff_p_holm"], strict=True) if q < 0.05
    }
    assert significant == {(1, 1), (1, 2)}
    code, out, _ = cli(capsys, "compare", base, grpo, "--format", "csv")
    rows = list(csv.DictReader(io.StringIO(out)))
    assert {"diff_p", "diff_p_holm", "mcnemar_p_holm", "primary"} <= set(rows[0])
    assert {(int(r["T"]), int(r["k"])) for r in rows if float(r["diff_p_holm"]) < 0.05} == {(1, 1), (1, 2)}


def test_primary_endpoint_is_reported_first_and_tested_alone(capsys: pytest.CaptureFixture[str]) -> None:
    base, grpo = str(LEARNING / "base.jsonl"), str(LEARNING / "grpo.jsonl")
    code, out, _ = cli(capsys, "compare", base, grpo, "--primary", "T=2,k=1", "--format", "md")
    assert code == 0
    verdict = out.rstrip().splitlines()[-1]
    assert verdict.startswith("Verdict: primary endpoint T=2, k=1: grpo ahead, p = 0.0077 (uncorrected); ")
    assert "Holm-corrected over the 11 other tests" in verdict
    assert "- primary endpoint T=2, k=1: named up front, tested alone" in out
    assert "| primary |" in out.replace("primary  ", "primary ")
    code, out, _ = cli(capsys, "compare", base, grpo, "--primary", "T=2,k=1", "--format", "json")
    data = json.loads(out)
    assert data["primary"] == {"T": 2, "k": 1}
    at_2 = next(e for e in data["per_budget"] if e["T"] == 2)
    assert at_2["diff_p_holm"][0] is None  # outside the family
    assert Comparison.from_json(data).primary == (2, 1)


@pytest.mark.parametrize("bad", ["T=1", "k=1", "T=1,k=0", "T=x,k=1", "T=1,k=1,n=4"])
def test_malformed_primary_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str], bad: str) -> None:
    with pytest.raises(SystemExit):
        main(["compare", str(LEARNING / "base.jsonl"), str(LEARNING / "grpo.jsonl"), "--primary", bad])
    assert "expected T=" in capsys.readouterr().err


def test_primary_endpoint_outside_the_comparison_is_a_config_error() -> None:
    records = run("a", 0.0, seed=1)
    with pytest.raises(ConfigError, match="primary endpoint T=9, k=1 is not in the comparison"):
        compare_runs(records, run("b", 0.3, seed=2), bootstrap=0, primary=(9, 1))


def test_older_comparison_json_reads_and_gets_its_holm_column() -> None:
    result = compare_runs(run("rl", 0.3, seed=1), run("base", 0.0, seed=2), bootstrap=50)
    data = result.to_json()
    for key in ("primary", "correction"):
        del data[key]
    for entry in data["per_budget"]:
        del entry["diff_p_holm"], entry["boundary"]["mcnemar_p_holm"], entry["k_star_ci"]
    older = Comparison.from_json(data)
    assert older.primary is None
    for new, old in zip(older.to_json()["per_budget"], result.to_json()["per_budget"], strict=True):
        assert new["diff_p_holm"] == old["diff_p_holm"]  # recomputed from the raw p-values
        assert new["boundary"]["mcnemar_p_holm"] == old["boundary"]["mcnemar_p_holm"]
    assert comparison_verdict(older) == comparison_verdict(result)
