"""PASS@(k,T): the estimator, intervals, boundary, T*, comparisons, diversity and the results JSON."""

from __future__ import annotations

import dataclasses
import json
import math
import random
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gather_envs.errors import ConfigError, RecordsError
from gather_envs.metrics import (
    Comparison,
    Results,
    TaskCounts,
    boundary,
    compare_runs,
    count_episodes,
    crossing_point,
    default_ks,
    diversity_by_agent,
    mcnemar_exact,
    pass_at_k,
    pass_table,
    per_task_pass_at_k,
    results_from_records,
    strategy_diversity,
    t_star,
)
from gather_envs.metrics.compare import run_labels
from gather_envs.metrics.results import load_results, save_results
from gather_envs.metrics.significance import holm, k_star_bootstrap_interval, paired_permutation_p
from gather_envs.records import AGENT_SETTINGS_KEY, EpisodeRecord
from gather_envs.reports.comparison_tables import render_comparison

CORPUS = "sha256:feedface"


def exact_pass_at_k(n: int, c: int, k: int) -> Fraction:
    return 1 - Fraction(math.comb(n - c, k), math.comb(n, k))


def make_records(
    success: dict[tuple[str, int], list[bool]],
    *,
    agent: str = "agent-a",
    corpus: str = CORPUS,
    family: str | dict[str, str] = "bridge",
    queries: dict[tuple[str, int], list[tuple[str, ...]]] | None = None,
) -> list[EpisodeRecord]:
    """Records from {(task, T): [success of episode 0, 1, ...]}."""
    records = []
    for (task, budget), outcomes in success.items():
        for i, ok in enumerate(outcomes):
            fam = family if isinstance(family, str) else family[task]
            seq = queries[(task, budget)][i] if queries else ()
            records.append(
                EpisodeRecord(
                    env_id="Gather-MultiHop-v0",
                    env_kwargs={"family": fam, "max_tool_calls": budget},
                    corpus_hash=corpus,
                    task_id=task,
                    family=fam,
                    hops=2,
                    seed=1000 * budget + i,
                    budget=budget,
                    episode_index=i,
                    tool_calls=min(budget, 2),
                    success=ok,
                    reward=float(ok),
                    answer="x",
                    gold_answer="x" if ok else "y",
                    termination="answered",
                    agent_id=agent,
                    queries=seq,
                    extra={AGENT_SETTINGS_KEY: {"temperature": 1.0}},
                )
            )
    return records


def simulated_records(
    probs: dict[str, dict[int, float]], n: int, seed: int, **kwargs: object
) -> list[EpisodeRecord]:
    rng = np.random.default_rng(seed)
    success = {
        (task, budget): (rng.random(n) < p).tolist()
        for task, by_budget in probs.items()
        for budget, p in by_budget.items()
    }
    return make_records(success, **kwargs)  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# The estimator


EDGE_CASES = [(1, 0, 1), (1, 1, 1), (5, 0, 5), (5, 5, 5), (5, 5, 1), (10, 3, 8), (10, 2, 9), (64, 1, 64)]


@pytest.mark.parametrize(("n", "c", "k"), EDGE_CASES)
def test_estimator_matches_exact_binomial_formula_on_edge_cases(n: int, c: int, k: int) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(float(exact_pass_at_k(n, c, k)), abs=1e-12)


def test_estimator_matches_exact_binomial_formula_on_random_inputs() -> None:
    rng = random.Random(4)
    triples = []
    for _ in range(500):
        n = rng.choice([rng.randint(1, 20), rng.randint(1, 1100)])
        c = rng.randint(0, n)
        triples.append((n, c, rng.randint(1, n)))
    n_arr, c_arr, k_arr = (np.array(v) for v in zip(*triples, strict=True))
    got = pass_at_k(n_arr, c_arr, k_arr)
    want = np.array([float(exact_pass_at_k(*t)) for t in triples])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)


def test_estimator_edge_values_are_exact() -> None:
    assert pass_at_k(10, 0, 3) == 0.0  # no success: never passes
    assert pass_at_k(10, 10, 3) == 1.0  # all succeed
    assert pass_at_k(10, 8, 3) == 1.0  # n - c < k: every k-subset holds a success
    assert pass_at_k(10, 1, 10) == 1.0  # k = n with one success
    assert pass_at_k(10, 1, 1) == pytest.approx(0.1)
    assert pass_at_k(10, 4, 0) == 0.0  # drawing no episode passes nothing


@given(n=st.integers(1, 300), data=st.data())
@settings(max_examples=60, deadline=None)
def test_estimator_is_monotone_in_k_and_c(n: int, data: st.DataObject) -> None:
    c = data.draw(st.integers(0, n))
    values = pass_at_k(n, c, np.arange(1, n + 1))
    assert np.all(np.diff(values) >= -1e-12)
    by_c = pass_at_k(n, np.arange(0, n + 1), data.draw(st.integers(1, n)))
    assert np.all(np.diff(by_c) >= -1e-12)


def test_estimator_broadcasts_over_all_three_arguments() -> None:
    n = np.array([[8], [16]])  # (2, 1)
    c = np.array([0, 2, 8])  # (3,)
    k = 4
    out = pass_at_k(n, c, k)
    assert isinstance(out, np.ndarray) and out.shape == (2, 3)
    assert out[1, 1] == pytest.approx(float(exact_pass_at_k(16, 2, 4)))
    assert np.shape(pass_at_k(8, c[:, None], np.array([1, 2, 4, 8]))) == (3, 4)
    assert isinstance(pass_at_k(8, 2, 4), float)
    assert isinstance(pass_at_k(np.int64(8), np.int64(2), np.int64(4)), float)


def test_per_task_matrix_lets_each_task_use_its_own_n() -> None:
    matrix = per_task_pass_at_k([4, 8], [1, 1], [1, 2, 4])
    assert matrix.shape == (2, 3)
    assert matrix[0, 2] == 1.0 and matrix[1, 2] == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("n", "c", "k", "message"),
    [
        (4, 1, 5, "exceeds n"),
        (4, 5, 2, "exceed n"),
        (-1, 0, 1, "n must be >= 0"),
        (4, -1, 1, "c must be >= 0"),
        (4, 1, -2, "k must be >= 0"),
        (4.5, 1, 1, "whole numbers"),
    ],
)
def test_estimator_rejects_impossible_arguments(n: float, c: int, k: int, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        pass_at_k(n, c, k)


def test_estimator_rejects_k_above_n_anywhere_in_an_array() -> None:
    with pytest.raises(ConfigError, match="k = 9 exceeds n = 8"):
        pass_at_k(8, [0, 1, 2], [1, 9, 2])


def test_default_ks_are_powers_of_two_then_n() -> None:
    assert default_ks(64) == (1, 2, 4, 8, 16, 32, 64)
    assert default_ks(50) == (1, 2, 4, 8, 16, 32, 50)
    assert default_ks(1) == (1,)
    assert default_ks(0) == ()


# --------------------------------------------------------------------------------------------
# The table


def test_boundary_lists_tasks_solved_at_least_once() -> None:
    b = boundary(["t3", "t1", "t2"], [0, 5, 1])
    assert b.size == 2 and b.ids == ("t1", "t2")


def test_table_point_estimates_are_task_means_of_the_estimator() -> None:
    success = {("a", 2): [True, False, False, False], ("b", 2): [True, True, False, False]}
    table = pass_table(count_episodes(make_records(success)), bootstrap=200)
    assert table.ks == (1, 2, 4)
    want = (float(exact_pass_at_k(4, 1, 2)) + float(exact_pass_at_k(4, 2, 2))) / 2
    row = table.row(2, 2)
    assert row.pass_at_k == pytest.approx(want)
    assert row.ci_low is not None and row.ci_high is not None
    assert row.ci_low <= row.pass_at_k <= row.ci_high
    assert table.boundary[2].ids == ("a", "b")


def test_table_is_deterministic_given_the_seed() -> None:
    probs = {f"t{i}": {0: 0.1 * (i % 5), 3: 0.2 + 0.1 * (i % 5)} for i in range(20)}
    counts = count_episodes(simulated_records(probs, n=8, seed=1))
    assert pass_table(counts, seed=3, bootstrap=100) == pass_table(counts, seed=3, bootstrap=100)
    assert pass_table(counts, seed=3, bootstrap=100) != pass_table(counts, seed=4, bootstrap=100)


def test_table_k_grid_stops_at_the_smallest_n_of_each_budget() -> None:
    success = {("a", 1): [True] * 6, ("b", 1): [False] * 8, ("a", 5): [True] * 8, ("b", 5): [False] * 8}
    table = pass_table(count_episodes(make_records(success)), bootstrap=50)
    assert table.n_min == {1: 6, 5: 8}
    assert [r.k for r in table.curve(1)] == [1, 2, 4, 6]
    assert [r.k for r in table.curve(5)] == [1, 2, 4, 8]
    assert table.ks == (1, 2, 4, 6, 8)
    with pytest.raises(ConfigError, match="no PASS"):
        table.row(1, 8)


def test_infrastructure_errors_are_excluded_from_n_and_counted() -> None:
    records = make_records({("a", 1): [True, False, False, False]})
    broken = EpisodeRecord(
        env_id="Gather-MultiHop-v0",
        corpus_hash=CORPUS,
        task_id="a",
        budget=1,
        success=False,
        termination="infra_error",
        infra_error="server refused",
    )
    lost = EpisodeRecord(
        env_id="Gather-MultiHop-v0",
        corpus_hash=CORPUS,
        task_id="z",
        budget=1,
        success=False,
        infra_error="timeout",
    )
    counts = count_episodes([*records, broken, lost])
    assert counts[1].task_ids == ("a",) and counts[1].n == (4,) and counts[1].c == (1,)
    assert counts[1].infra_errors == 2 and counts[1].infra_only_tasks == 1
    table = pass_table(counts, bootstrap=0)
    assert table.infra_errors == {1: 2}
    assert table.row(1, 1).pass_at_k == pytest.approx(0.25)
    assert table.row(1, 1).ci_low is None and table.t_star is None


def test_bootstrap_interval_covers_the_true_pass_at_k_about_95_percent_of_the_time() -> None:
    # Tasks are drawn from a known population of per-task success probabilities; the truth is
    # the population PASS@k = mean(1 - (1 - p)^k), which a bootstrap over tasks targets.
    population = np.random.default_rng(123).beta(0.6, 1.2, size=5000)
    ks, n, num_tasks, simulations = (1, 4, 16), 16, 80, 200
    truth = {k: float(np.mean(1 - (1 - population) ** k)) for k in ks}
    ids = tuple(f"t{i:03d}" for i in range(num_tasks))
    rng = np.random.default_rng(0)
    hits = dict.fromkeys(ks, 0)
    for sim in range(simulations):
        c = rng.binomial(n, rng.choice(population, size=num_tasks))
        counts = {5: TaskCounts(ids, (n,) * num_tasks, tuple(c.tolist()))}
        table = pass_table(counts, ks=ks, bootstrap=400, seed=sim)
        for k in ks:
            row = table.row(5, k)
            assert row.ci_low is not None and row.ci_high is not None
            hits[k] += row.ci_low <= truth[k] <= row.ci_high
    for k in ks:
        assert 0.88 <= hits[k] / simulations <= 0.99, (k, hits[k] / simulations)


def _saturating_counts(jump_at: int) -> dict[int, TaskCounts]:
    """Success probability 0.1 below budget ``jump_at`` and 0.6 from it on, 150 tasks, n = 16."""
    rng = np.random.default_rng(jump_at)
    ids = tuple(f"t{i:03d}" for i in range(150))
    counts = {}
    for budget in (0, 1, 2, 3, 5):
        p = 0.6 if budget >= jump_at else 0.1
        counts[budget] = TaskCounts(ids, (16,) * 150, tuple(rng.binomial(16, p, size=150).tolist()))
    return counts


@pytest.mark.parametrize("jump_at", [1, 2, 5])
def test_t_star_is_the_budget_after_which_more_calls_stop_helping(jump_at: int) -> None:
    table = pass_table(_saturating_counts(jump_at), bootstrap=300)
    assert table.t_star == jump_at
    assert set(table.t_star_by_k.values()) == {jump_at}


def test_t_star_is_the_smallest_budget_when_nothing_improves() -> None:
    counts = _saturating_counts(0)
    assert pass_table(counts, bootstrap=300).t_star == 0


def test_t_star_function_on_aligned_per_task_matrices() -> None:
    low = np.zeros((100, 2))
    high = np.ones((100, 2))
    result = t_star({0: low, 1: high, 2: high}, bootstrap=100)
    assert result.overall == 1 and result.per_column == (1, 1)


# --------------------------------------------------------------------------------------------
# Comparisons


@pytest.mark.parametrize(
    ("only_a", "only_b", "p"),
    [(0, 0, 1.0), (5, 0, 0.0625), (3, 1, 0.625), (10, 2, 0.03857421875), (4, 4, 1.0), (0, 7, 2 / 128)],
)
def test_exact_mcnemar_matches_hand_computed_values(only_a: int, only_b: int, p: float) -> None:
    # (10, 2): 2 * (C(12,0) + C(12,1) + C(12,2)) / 2^12 = 2 * 79 / 4096.
    assert mcnemar_exact(only_a, only_b) == pytest.approx(p, abs=1e-15)


def test_crossing_point_is_interpolated_on_log2_k() -> None:
    k_star, interval = crossing_point([1, 2, 4, 8, 16], [-0.2, -0.1, -0.05, 0.05, 0.1])
    assert interval == (4, 8)
    assert k_star == pytest.approx(2**2.5)
    assert crossing_point([1, 2, 4], [0.1, 0.2, 0.3]) == (None, None)
    assert crossing_point([1, 2, 4], [0.0, 0.1, -0.1])[1] == (2, 4)


def _two_agents() -> tuple[list[EpisodeRecord], list[EpisodeRecord]]:
    tasks = [f"t{i:02d}" for i in range(40)]
    # B is more reliable on the easy half; A solves the hard half now and then, B never does.
    probs_a = {t: {3: 0.3 if i < 20 else 0.15} for i, t in enumerate(tasks)}
    probs_b = {t: {3: 0.6 if i < 20 else 0.0} for i, t in enumerate(tasks)}
    return (
        simulated_records(probs_a, n=32, seed=1, agent="rl"),
        simulated_records(probs_b, n=32, seed=2, agent="sft"),
    )


def test_comparison_finds_the_crossing_and_boundary_differences() -> None:
    records_a, records_b = _two_agents()
    result = compare_runs(records_a, records_b, bootstrap=300)
    entry = result.at(3)
    assert entry.ks == (1, 2, 4, 8, 16, 32)
    assert entry.diff[0] < 0 < entry.diff[-1]  # B leads at k = 1, A at k = 32
    assert entry.k_star is not None and entry.k_star_interval is not None
    assert entry.k_star_interval[0] < entry.k_star < entry.k_star_interval[1]
    assert len(entry.only_a) > 10 and entry.only_b == ()
    assert entry.mcnemar_p == mcnemar_exact(len(entry.only_a), 0) < 0.001
    assert set(entry.only_a) | set(entry.both) | set(entry.only_b) <= {r.task_id for r in records_a}
    low, high = entry.diff_low[-1], entry.diff_high[-1]
    assert low is not None and high is not None and 0 < low <= entry.diff[-1] <= high


def test_comparison_difference_is_a_paired_estimate() -> None:
    records_a, _ = _two_agents()
    same = compare_runs(records_a, records_a, bootstrap=100).at(3)
    assert all(d == 0 for d in same.diff)
    assert all(lo == 0 and hi == 0 for lo, hi in zip(same.diff_low, same.diff_high, strict=True))


def test_paired_permutation_p_agrees_with_the_bootstrap_and_is_calibrated() -> None:
    records_a, records_b = _two_agents()
    entry = compare_runs(records_a, records_b, bootstrap=1000).at(3)
    assert len(entry.diff_p) == len(entry.ks)
    for p, low, high in zip(entry.diff_p, entry.diff_low, entry.diff_high, strict=True):
        assert low is not None and high is not None and 0 < p <= 1
        # Two different tests of one difference: they agree away from the 5% boundary.
        if low > 0 or high < 0:
            assert p < 0.1
        if p < 0.01:
            assert low > 0 or high < 0
    weak = simulated_records({f"t{i:02d}": {3: 0.2} for i in range(30)}, n=4, seed=5, agent="weak")
    strong = simulated_records({f"t{i:02d}": {3: 0.6} for i in range(30)}, n=4, seed=6, agent="strong")
    assert compare_runs(weak, strong, bootstrap=0, ks=[1]).at(3).diff_p[0] < 0.001  # a clear lead
    same = compare_runs(records_a, records_a, bootstrap=0).at(3)
    assert all(p == 1.0 for p in same.diff_p)
    # Under the null (two draws of one agent) p < 0.05 about 5% of the time, not more.
    probs = {f"t{i:02d}": {3: 0.1 + 0.02 * i} for i in range(30)}
    rejections = 0
    for trial in range(40):
        a = simulated_records(probs, n=4, seed=100 + trial, agent="a")
        b = simulated_records(probs, n=4, seed=200 + trial, agent="b")
        rejections += compare_runs(a, b, bootstrap=0, ks=[1]).at(3).diff_p[0] < 0.05
    assert rejections <= 6  # Binomial(40, 0.05) exceeds 6 with probability about 1%
    flat = paired_permutation_p(np.array([[0.5], [-0.5]] * 6), np.random.default_rng(0))
    assert flat[0] == 1.0  # equal gains and losses: no evidence at all


def test_comparison_json_keeps_the_p_values_and_reads_older_files() -> None:
    records_a, records_b = _two_agents()
    result = compare_runs(records_a, records_b, bootstrap=50)
    data = result.to_json()
    again = Comparison.from_json(data)
    assert again.at(3).diff_p == result.at(3).diff_p
    for entry in data["per_budget"]:
        del entry["diff_p"]
    older = Comparison.from_json(data)
    assert older.at(3).diff_p == ()
    assert "| p |" not in render_comparison(older, "md") and "| p " in render_comparison(result, "md")


def test_comparison_refuses_runs_on_different_corpora() -> None:
    records_a, _ = _two_agents()
    other = simulated_records({"t00": {3: 0.5}}, n=32, seed=0, corpus="sha256:other")
    for restrict in (False, True):
        with pytest.raises(RecordsError, match="different corpora"):
            compare_runs(records_a, other, restrict_to_common=restrict)


def test_comparison_refuses_different_task_sets_unless_restricted() -> None:
    records_a, records_b = _two_agents()
    fewer = [r for r in records_b if r.task_id != "t00"]
    with pytest.raises(RecordsError, match="restrict_to_common"):
        compare_runs(records_a, fewer)
    result = compare_runs(records_a, fewer, restrict_to_common=True, bootstrap=50)
    assert result.restricted and result.at(3).num_tasks == 39 and result.excluded_tasks == {3: 1}


def test_comparison_json_round_trips() -> None:
    records_a, records_b = _two_agents()
    result = compare_runs(records_a, records_b, bootstrap=50, chance_floor={"bridge": {1: 0.1, 64: 0.5}})
    assert result.chance_floor == {1: 0.1}  # only the k the comparison has
    assert Comparison.from_json(json.loads(json.dumps(result.to_json()))) == result


def test_a_schema_1_comparison_still_reads() -> None:
    records_a, records_b = _two_agents()
    data = compare_runs(records_a, records_b, bootstrap=0).to_json()
    data["schema_version"] = 1
    for key in ("label_a", "label_b", "env_a", "env_b", "families", "chance_floor"):
        del data[key]
    for entry in data["per_budget"]:
        del entry["n_a"], entry["n_b"], entry["boundary"]["episodes_per_task"]
    old = Comparison.from_json(data)
    assert (old.label_a, old.label_b, old.chance_floor) == ("rl", "sft", {})
    assert old.at(3).boundary_n is None and not old.at(3).boundary_is_matched
    data["schema_version"] = 3
    with pytest.raises(RecordsError, match="schema_version 3 is newer"):
        Comparison.from_json(data)


def _one_agent_twice(n_a: int, n_b: int, seed_b: int) -> tuple[list[EpisodeRecord], list[EpisodeRecord]]:
    """The issue's case: one agent (success 0.05 per episode) on 100 tasks at T=3, run with n_a and n_b."""
    probs = {f"t{i:03d}": {3: 0.05} for i in range(100)}
    return (
        simulated_records(probs, n=n_a, seed=11, agent="heuristic"),
        simulated_records(probs, n=n_b, seed=seed_b, agent="heuristic"),
    )


def test_unequal_n_of_one_agent_gives_no_significant_difference() -> None:
    records_a, records_b = _one_agent_twice(64, 4, seed_b=12)
    # Counted on all 64 episodes against 4 (the old behaviour), the boundary sets were lopsided:
    solved_64 = {r.task_id for r in records_a if r.success}
    solved_4 = {r.task_id for r in records_b if r.success}
    assert (
        len(solved_64 - solved_4) > 60
        and mcnemar_exact(len(solved_64 - solved_4), len(solved_4 - solved_64)) < 1e-10
    )
    entry = compare_runs(records_a, records_b, bootstrap=500).at(3)
    assert entry.ks == (1, 2, 4)
    assert entry.boundary_n == (4, 4) and entry.n_a == (64, 64) and entry.n_b == (4, 4)
    assert entry.boundary_is_matched
    assert entry.mcnemar_p > 0.05
    assert abs(len(entry.only_a) - len(entry.only_b)) < 10
    for low, high in zip(entry.diff_low, entry.diff_high, strict=True):
        assert low is not None and high is not None and low <= 0 <= high


def test_boundary_sets_use_the_episodes_both_runs_played() -> None:
    # B replays A's first 4 episodes exactly (same agent, same episode seeds): nothing differs.
    records_a, _ = _one_agent_twice(64, 4, seed_b=12)
    records_b = [r for r in records_a if r.episode_index < 4]
    entry = compare_runs(records_a, records_b, bootstrap=100).at(3)
    assert entry.only_a == () and entry.only_b == () and entry.mcnemar_p == 1.0
    first_four = {r.task_id for r in records_b if r.success}
    assert set(entry.both) == first_four


def test_boundary_matching_follows_episode_indexes_not_file_order() -> None:
    a = make_records({("t", 0): [False, False, True]})
    b = list(reversed(make_records({("t", 0): [False, False, True]})))
    entry = compare_runs(a, b, bootstrap=0).at(0)
    assert entry.both == ("t",) and entry.boundary_n == (3, 3) and not entry.boundary_is_matched


def test_runs_sharing_no_episode_index_are_refused() -> None:
    a = make_records({("t", 0): [True, False]})
    b = [
        dataclasses.replace(r, episode_index=r.episode_index + 2)
        for r in make_records({("t", 0): [True, False]})
    ]
    with pytest.raises(RecordsError, match="share no episode index"):
        compare_runs(a, b, bootstrap=0)


def test_comparison_refuses_a_run_that_mixes_agents() -> None:
    records_a, records_b = _two_agents()
    with pytest.raises(RecordsError, match=r"run A mixes 2 agent ids \(rl, sft\)"):
        compare_runs([*records_a, *records_b], records_b)


def test_comparison_refuses_duplicate_cells_naming_both_records() -> None:
    records_a, records_b = _two_agents()
    doubled = [*records_b, records_b[5]]
    with pytest.raises(
        RecordsError,
        match=r"run B: two records for task 't00', T=3, episode 5 \(agent 'sft'\): record #6 and record #1281",
    ):
        compare_runs(records_a, doubled)


def test_report_tables_refuse_duplicate_cells() -> None:
    records = make_records({("a", 1): [True, False, False, False]})
    with pytest.raises(
        RecordsError,
        match=r"two records for task 'a', T=1, episode 0 \(agent 'agent-a'\): record #1 and record #5",
    ):
        results_from_records([*records, *records], bootstrap=0)


def test_two_runs_of_one_agent_get_distinguishable_labels() -> None:
    records_a, records_b = _one_agent_twice(8, 4, seed_b=3)
    result = compare_runs(records_a, records_b, bootstrap=0)
    assert (result.label_a, result.label_b) == ("heuristic (A)", "heuristic (B)")
    assert run_labels("h", "h", "x/run.jsonl", "y/run.jsonl") == ("h (x/run.jsonl)", "h (y/run.jsonl)")
    assert run_labels("h", "h", "run.jsonl", "run.jsonl") == ("h (A: run.jsonl)", "h (B: run.jsonl)")
    other = [dataclasses.replace(r, agent_id="other") for r in records_b]
    assert compare_runs(records_a, other, bootstrap=0).label_b == "other"


# --------------------------------------------------------------------------------------------
# Strategy diversity


def test_diversity_counts_unique_query_sequences_per_task() -> None:
    success = {("a", 2): [True, False, False], ("b", 2): [False, False, False]}
    queries = {
        ("a", 2): [("Paris",), ("paris ",), ("paris", "france")],
        ("b", 2): [("x",), ("x",), ("x",)],
    }
    records = make_records(success, queries=queries)
    summary = strategy_diversity(records).at(2)
    assert summary.per_task == {"a": 2, "b": 1}
    assert summary.mean == 1.5 and summary.minimum == 1 and summary.maximum == 2
    assert summary.histogram == {1: 1, 2: 1}
    assert strategy_diversity(records, normalize=False).at(2).per_task["a"] == 3


def test_diversity_by_agent_puts_agents_side_by_side() -> None:
    records_a, records_b = _two_agents()
    result = diversity_by_agent([*records_a, *records_b])
    assert list(result) == ["rl", "sft"]
    with pytest.raises(RecordsError, match="diversity_by_agent"):
        strategy_diversity([*records_a, *records_b])


# --------------------------------------------------------------------------------------------
# Results JSON


def _mixed_family_records() -> list[EpisodeRecord]:
    probs = {f"t{i:02d}": {0: 0.1, 1: 0.3, 2: 0.5} for i in range(12)}
    families = {task: ("bridge" if i % 2 else "comparison") for i, task in enumerate(probs)}
    return simulated_records(probs, n=8, seed=5, family=families)


def test_results_json_round_trips_exactly(tmp_path) -> None:
    results = results_from_records(_mixed_family_records(), bootstrap=100, seed=1)
    text = results.dumps()
    assert Results.from_json(json.loads(text)) == results
    path = save_results(results, tmp_path / "results.json")
    assert load_results(path) == results


def test_results_json_has_the_leaderboard_layout() -> None:
    results = results_from_records(_mixed_family_records(), bootstrap=100)
    data = json.loads(results.dumps())
    assert data["schema_version"] == 1 and data["env_version"] == 0
    assert data["corpus_hash"] == CORPUS and data["agent_id"] == "agent-a"
    assert data["agent_settings"] == {"temperature": 1.0}
    assert data["env_kwargs"] == {}  # family and budget differ between records
    assert data["n"] == 8 and data["num_tasks"] == 12 and data["budgets"] == [0, 1, 2]
    assert set(data["table"][0]) == {"T", "k", "pass", "ci_low", "ci_high"}
    assert set(data["boundary"]) == {"0", "1", "2"}
    assert sorted(data["families"]) == ["bridge", "comparison"]
    assert data["families"]["bridge"]["tasks_per_budget"] == {"0": 6, "1": 6, "2": 6}


def test_results_refuse_records_of_several_agents() -> None:
    records_a, records_b = _two_agents()
    with pytest.raises(RecordsError, match="agent id"):
        results_from_records([*records_a, *records_b])


def test_results_from_json_names_a_missing_field() -> None:
    data = json.loads(results_from_records(_mixed_family_records(), bootstrap=10).dumps())
    del data["corpus_hash"]
    with pytest.raises(RecordsError, match="corpus_hash"):
        Results.from_json(data)


# Holm's correction and the interval of k*


@pytest.mark.parametrize(
    ("raw", "adjusted"),
    [
        ([0.01, 0.04, 0.03], [0.03, 0.06, 0.06]),  # 3 x 0.01, then max(2 x 0.03, ...) carried on
        ([0.5, 0.001], [0.5, 0.002]),
        ([0.2, 0.2, 0.2], [0.6, 0.6, 0.6]),
        ([0.9, 0.8], [1.0, 1.0]),  # 2 x 0.8 capped at 1, and 0.9 carried up to it
        ([], []),
    ],
)
def test_holm_matches_hand_computed_values(raw: list[float], adjusted: list[float]) -> None:
    assert holm(raw) == pytest.approx(adjusted, abs=1e-15)


@given(st.lists(st.floats(min_value=0.0, max_value=1.0), max_size=30))
@settings(max_examples=200, deadline=None)
def test_holm_never_lowers_a_p_and_keeps_the_order(raw: list[float]) -> None:
    adjusted = holm(raw)
    assert all(p <= q <= 1.0 for p, q in zip(raw, adjusted, strict=True))
    order = sorted(range(len(raw)), key=lambda i: raw[i])
    assert all(adjusted[i] <= adjusted[j] for i, j in zip(order, order[1:]))


def test_k_star_interval_brackets_a_clear_crossing_and_opens_when_resamples_do_not_cross() -> None:
    ks = [1, 2, 4, 8]
    clear = np.tile([0.2, 0.1, -0.1, -0.2], (200, 1)) + np.linspace(-0.01, 0.01, 200)[:, None]
    low, high = k_star_bootstrap_interval(clear, ks)
    assert low is not None and high is not None and 2.0 < low <= high < 4.0
    half = clear.copy()
    half[100:] = 0.2  # half the resamples never cross
    assert k_star_bootstrap_interval(half, ks)[1] is None  # upper end beyond the grid


def test_comparison_carries_the_k_star_interval_when_the_curves_cross() -> None:
    tasks = [f"t{i:02d}" for i in range(40)]
    sharp = simulated_records({t: {1: 0.9 if i < 20 else 0.0} for i, t in enumerate(tasks)}, n=8, seed=1, agent="sharp")
    broad = simulated_records({t: {1: 0.35} for t in tasks}, n=8, seed=2, agent="broad")
    entry = compare_runs(sharp, broad, bootstrap=300).at(1)
    assert entry.k_star is not None and entry.k_star_ci is not None
    low, high = entry.k_star_ci
    assert low is not None and low <= entry.k_star and (high is None or entry.k_star <= high)
    assert "bootstrap interval of k* [" in render_comparison(compare_runs(sharp, broad, bootstrap=300), "table")
    again = Comparison.from_json(json.loads(json.dumps(compare_runs(sharp, broad, bootstrap=300).to_json())))
    assert again.at(1).k_star_ci == entry.k_star_ci
