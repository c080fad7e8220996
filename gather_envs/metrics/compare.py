"""Comparing two agents on the same tasks: paired difference curves, crossing k*, boundary sets.

Both runs must come from one corpus and cover the same tasks at each compared budget; pass
``restrict_to_common=True`` to compare on the tasks (and budgets) both runs share instead. Runs on
different corpora are always refused: equal task ids there name different questions. Each run
must be one agent on one env, with one record per (task, T, episode) cell.

Curves, differences, boundary sets and McNemar's test all use the episodes both runs played,
matched by episode index (the first n_min indices of each (task, T) when one run is longer), so
both sides rest on the same tries: "solved at least once" depends on how many tries a task got
(64 episodes against 4 made one agent look far ahead of itself), and the runner gives episode i
the same seed in both runs, which pairs the curves episode by episode as well as task by task.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from gather_envs.errors import ConfigError, RecordsError
from gather_envs.metrics.bootstrap import (
    DEFAULT_BOOTSTRAP,
    DEFAULT_CONFIDENCE,
    DEFAULT_SEED,
    bootstrap_weights,
    percentile_interval,
    resampled_means,
    task_columns,
    validate_bootstrap_args,
)
from gather_envs.metrics.comparison import BudgetComparison, Comparison, min_max
from gather_envs.metrics.floor import ChanceFloor, at_ks, floor_for_families, parse_chance_floor
from gather_envs.metrics.passk import TaskCounts, count_episodes, default_ks, per_task_pass_at_k
from gather_envs.metrics.significance import (
    SIGN_FLIPS,
    crossing_point,
    k_star_bootstrap_interval,
    mcnemar_exact,
    paired_permutation_p,
)
from gather_envs.records import EPISODE_INDEX_UNKNOWN, IN_PROCESS_RETRIEVER, EpisodeRecord
from gather_envs.runs import check_unique_cells

_EXAMPLE_IDS = 5



def _describe_ids(ids: Sequence[str]) -> str:
    shown = ", ".join(ids[:_EXAMPLE_IDS])
    return f"{len(ids)} ({shown}{', ...' if len(ids) > _EXAMPLE_IDS else ''})"


def _single(values: Iterable[str], what: str, run: str) -> str:
    distinct = sorted(set(values))
    if len(distinct) > 1:
        raise RecordsError(
            f"run {run} mixes {len(distinct)} {what}s ({', '.join(distinct)}); compare one run of "
            f"one agent on one env per side (split the file by {what})"
        )
    return distinct[0] if distinct else ""


def run_labels(
    agent_a: str, agent_b: str, source_a: str | None = None, source_b: str | None = None
) -> tuple[str, str]:
    """Names for the two runs in reports: the agent ids, or agent plus file when they are equal.

    >>> run_labels("rl", "base")
    ('rl', 'base')
    >>> run_labels("heuristic", "heuristic", "runs/n64.jsonl", "runs/n4.jsonl")
    ('heuristic (n64.jsonl)', 'heuristic (n4.jsonl)')
    """
    if agent_a != agent_b:
        return agent_a, agent_b
    names = ("A", "B")
    if source_a is not None and source_b is not None:
        base_a, base_b = os.path.basename(source_a), os.path.basename(source_b)
        if base_a != base_b:
            names = (base_a, base_b)
        elif source_a != source_b:
            names = (source_a, source_b)
        else:
            names = (f"A: {source_a}", f"B: {source_b}")
    return f"{agent_a} ({names[0]})", f"{agent_b} ({names[1]})"


Outcomes = dict[int, dict[str, dict[int, bool]]]
"""budget -> task -> episode key -> success, infrastructure errors left out."""


def _outcomes(records: Sequence[EpisodeRecord]) -> Outcomes:
    """Each played episode's success by (T, task, episode key).

    The key is the episode index; a (task, T) whose records lack one is keyed by file order.
    """
    grouped: dict[int, dict[str, list[EpisodeRecord]]] = {}
    for record in records:
        if not record.is_infra_error:
            grouped.setdefault(record.budget, {}).setdefault(record.task_id, []).append(record)
    outcomes: Outcomes = {}
    for budget, tasks in grouped.items():
        for task, group in tasks.items():
            if any(r.episode_index == EPISODE_INDEX_UNKNOWN for r in group):
                keys = list(range(len(group)))
            else:
                keys = [r.episode_index for r in group]
            outcomes.setdefault(budget, {})[task] = {
                key: r.success for key, r in zip(keys, group, strict=True)
            }
    return outcomes


def compare_runs(
    records_a: Sequence[EpisodeRecord],
    records_b: Sequence[EpisodeRecord],
    *,
    ks: Sequence[int] | None = None,
    bootstrap: int = DEFAULT_BOOTSTRAP,
    seed: int = DEFAULT_SEED,
    confidence: float = DEFAULT_CONFIDENCE,
    restrict_to_common: bool = False,
    sources: tuple[str, str] | None = None,
    chance_floor: ChanceFloor | None = None,
    primary: tuple[int, int] | None = None,
    common_hint: str = "pass restrict_to_common=True",
) -> Comparison:
    """Compare run A with run B per budget on their shared tasks (see the module docstring).

    Infrastructure errors are excluded from n, as in the table. Only the episodes both runs
    played enter (see the module docstring); the k grid at T stops at their smallest number. Bootstrap resamples are drawn once over all compared tasks from
    ``numpy.random.default_rng(seed)`` and shared by both agents and all budgets. ``sources``
    (the runs' file names) appear in errors and label two runs of one agent (:func:`run_labels`);
    ``chance_floor`` (family -> k -> PASS@(k,0)) adds the floor of the compared tasks;
    ``primary`` (T, k) names the primary endpoint (see :meth:`Comparison.tests`).
    ``common_hint`` is what errors tell the caller to do to compare on the shared tasks (the CLI
    names its flag).
    """
    validate_bootstrap_args(bootstrap, confidence)
    if not records_a or not records_b:
        raise RecordsError("compare_runs needs records for both runs; one of them is empty")
    run_a, run_b = ("A", "B") if sources is None else (f"A ({sources[0]})", f"B ({sources[1]})")
    corpus_a = _single((r.corpus_hash for r in records_a), "corpus hash", run_a)
    corpus_b = _single((r.corpus_hash for r in records_b), "corpus hash", run_b)
    if corpus_a != corpus_b:
        raise RecordsError(
            f"refusing to compare runs on different corpora (A: {corpus_a!r}, B: {corpus_b!r}); "
            "the same task id names different questions there. Rerun both on one corpus"
        )
    retriever_a = _single((r.retriever or IN_PROCESS_RETRIEVER for r in records_a), "retriever", run_a)
    retriever_b = _single((r.retriever or IN_PROCESS_RETRIEVER for r in records_b), "retriever", run_b)
    if retriever_a != retriever_b:
        raise RecordsError(
            f"refusing to compare runs searched by different retrievers (A: {retriever_a!r}, B: "
            f"{retriever_b!r}); another index returns other documents. Rerun both with one retriever"
        )
    agent_a = _single((r.agent_id for r in records_a), "agent id", run_a)
    agent_b = _single((r.agent_id for r in records_b), "agent id", run_b)
    env_a = _single((r.env_id for r in records_a), "env id", run_a)
    env_b = _single((r.env_id for r in records_b), "env id", run_b)
    for run, records in ((run_a, records_a), (run_b, records_b)):
        try:
            check_unique_cells(records)
        except RecordsError as exc:
            raise RecordsError(f"run {run}: {exc}") from None
    label_a, label_b = run_labels(agent_a, agent_b, *(sources or (None, None)))
    counts_a, counts_b = count_episodes(records_a), count_episodes(records_b)
    outcomes_a, outcomes_b = _outcomes(records_a), _outcomes(records_b)

    budgets = sorted(set(counts_a) & set(counts_b))
    if set(counts_a) != set(counts_b) and not restrict_to_common:
        raise RecordsError(
            f"the runs cover different budgets (A: {sorted(counts_a)}, B: {sorted(counts_b)}); "
            f"{common_hint} to compare on the shared budgets "
            f"{budgets}"
        )
    shared: dict[int, list[str]] = {}
    excluded: dict[int, int] = {}
    for budget in budgets:
        ids_a, ids_b = set(counts_a[budget].task_ids), set(counts_b[budget].task_ids)
        shared[budget] = sorted(ids_a & ids_b)
        excluded[budget] = len(ids_a ^ ids_b)
        if ids_a != ids_b and not restrict_to_common:
            raise RecordsError(
                f"the runs cover different tasks at T={budget}: only in A "
                f"{_describe_ids(sorted(ids_a - ids_b))}, only in B "
                f"{_describe_ids(sorted(ids_b - ids_a))}; {common_hint} to "
                f"compare on the {len(shared[budget])} shared tasks"
            )
    budgets = [t for t in budgets if shared[t]]
    if not budgets:
        raise RecordsError("the runs share no task at any common budget; nothing to compare")

    union = sorted({task for t in budgets for task in shared[t]})
    position = {task: i for i, task in enumerate(union)}
    weights = bootstrap_weights(len(union), bootstrap, np.random.default_rng(seed))
    entries = [
        _compare_budget(
            budget,
            shared[budget],
            (counts_a[budget], counts_b[budget]),
            (outcomes_a[budget], outcomes_b[budget]),
            ks,
            task_columns(weights, np.array([position[t] for t in shared[budget]]), len(union)),
            confidence,
            seed,
        )
        for budget in budgets
    ]
    family_of = {r.task_id: r.family for r in records_a}
    tasks_per_family: dict[str, int] = {}
    for task in union:
        tasks_per_family[family_of[task]] = tasks_per_family.get(family_of[task], 0) + 1
    floor = {} if chance_floor is None else parse_chance_floor(chance_floor, "compare_runs", ConfigError)
    all_ks = tuple(sorted({k for entry in entries for k in entry.ks}))
    if primary is not None and not any(e.budget == primary[0] and primary[1] in e.ks for e in entries):
        raise ConfigError(
            f"primary endpoint T={primary[0]}, k={primary[1]} is not in the comparison (budgets "
            f"{list(budgets)}, k {', '.join(f'T={e.budget}: {list(e.ks)}' for e in entries)})"
        )
    return Comparison(
        agent_a=agent_a,
        agent_b=agent_b,
        label_a=label_a,
        label_b=label_b,
        env_a=env_a,
        env_b=env_b,
        families=tuple(sorted(tasks_per_family)),
        chance_floor=at_ks(floor_for_families(floor, tasks_per_family), all_ks),
        corpus_hash=corpus_a,
        retriever=None if retriever_a == IN_PROCESS_RETRIEVER else retriever_a,
        budgets=tuple(budgets),
        per_budget=tuple(entries),
        restricted=restrict_to_common,
        excluded_tasks={t: excluded[t] for t in budgets},
        bootstrap=bootstrap,
        seed=seed,
        confidence=confidence,
        primary=primary,
    )


def _aligned(counts: TaskCounts, ids: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, c) of ``counts`` in the order of ``ids``."""
    where = {task: i for i, task in enumerate(counts.task_ids)}
    rows = [where[task] for task in ids]
    return np.asarray(counts.n)[rows], np.asarray(counts.c)[rows]


def _matched_successes(
    budget: int,
    ids: Sequence[str],
    outcomes_a: Mapping[str, Mapping[int, bool]],
    outcomes_b: Mapping[str, Mapping[int, bool]],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per task: episodes both runs played (same episode key), and each run's successes among them."""
    matched, c_a, c_b = [], [], []
    for task in ids:
        episodes_a, episodes_b = outcomes_a[task], outcomes_b[task]
        common = sorted(set(episodes_a) & set(episodes_b))
        if not common:
            raise RecordsError(
                f"task {task!r} at T={budget}: the runs share no episode index (A: "
                f"{min_max(episodes_a)}, B: {min_max(episodes_b)} as (min, max)); boundary sets need "
                "the same episodes from both runs"
            )
        matched.append(len(common))
        c_a.append(sum(episodes_a[key] for key in common))
        c_b.append(sum(episodes_b[key] for key in common))
    return np.asarray(matched), np.asarray(c_a), np.asarray(c_b)


def _compare_budget(
    budget: int,
    ids: Sequence[str],
    counts: tuple[TaskCounts, TaskCounts],
    outcomes: tuple[Mapping[str, Mapping[int, bool]], Mapping[str, Mapping[int, bool]]],
    ks: Sequence[int] | None,
    weights: np.ndarray,
    confidence: float,
    seed: int,
) -> BudgetComparison:
    n_a, _ = _aligned(counts[0], ids)
    n_b, _ = _aligned(counts[1], ids)
    # Everything below uses the episodes both runs played, so both sides rest on the same tries.
    matched, c_a, c_b = _matched_successes(budget, ids, *outcomes)
    return compare_matched(
        budget,
        ids,
        matched,
        (c_a, c_b),
        ks=ks,
        weights=weights,
        confidence=confidence,
        seed=seed,
        n_runs=(min_max(n_a.tolist()), min_max(n_b.tolist())),
    )


def compare_matched(
    budget: int,
    ids: Sequence[str],
    matched: np.ndarray,
    successes: tuple[np.ndarray, np.ndarray],
    *,
    ks: Sequence[int] | None,
    weights: np.ndarray,
    confidence: float = DEFAULT_CONFIDENCE,
    seed: int = DEFAULT_SEED,
    n_runs: tuple[tuple[int, int], tuple[int, int]] | None = None,
    flips: int = SIGN_FLIPS,
) -> BudgetComparison:
    """A against B at one budget from matched counts: per task, episodes both played and each run's successes.

    The arrays-in core of :func:`compare_runs` (``weights``: its bootstrap weight columns of these
    tasks, [resamples x tasks]); the calibration study (``benchmarks/bench_calibration.py``) calls
    it on simulated counts, so what it measures is what ``compare`` reports.
    """
    c_a, c_b = successes
    n_min = int(matched.min())
    grid = default_ks(n_min) if ks is None else tuple(sorted({k for k in ks if 1 <= k <= n_min}))
    if not grid:
        raise ConfigError(f"compare_runs: no k in {list(ks or [])} fits n = {n_min} at T={budget}")
    mat_a = per_task_pass_at_k(matched, c_a, grid)
    mat_b = per_task_pass_at_k(matched, c_b, grid)
    est_a, est_b = mat_a.mean(axis=0), mat_b.mean(axis=0)
    diff = est_a - est_b

    def interval(matrix: np.ndarray) -> tuple[tuple[float | None, ...], tuple[float | None, ...]]:
        if weights.shape[0] == 0:
            none: tuple[float | None, ...] = (None,) * len(grid)
            return none, none
        low, high = percentile_interval(resampled_means(weights, matrix), confidence)
        return tuple(low.tolist()), tuple(high.tolist())

    a_low, a_high = interval(mat_a)
    b_low, b_high = interval(mat_b)
    d_low, d_high = interval(mat_a - mat_b)
    diff_p = paired_permutation_p(mat_a - mat_b, np.random.default_rng([seed, budget]), flips)
    k_star, k_interval = crossing_point(grid, diff.tolist())
    k_star_ci = None
    if k_star is not None and weights.shape[0]:
        k_star_ci = k_star_bootstrap_interval(resampled_means(weights, mat_a - mat_b), grid, confidence)

    solved_a, solved_b = c_a > 0, c_b > 0
    only_a = tuple(t for t, a, b in zip(ids, solved_a, solved_b, strict=True) if a and not b)
    only_b = tuple(t for t, a, b in zip(ids, solved_a, solved_b, strict=True) if b and not a)
    both = tuple(t for t, a, b in zip(ids, solved_a, solved_b, strict=True) if a and b)
    return BudgetComparison(
        budget=budget,
        num_tasks=len(ids),
        ks=grid,
        pass_a=tuple(est_a.tolist()),
        pass_a_low=a_low,
        pass_a_high=a_high,
        pass_b=tuple(est_b.tolist()),
        pass_b_low=b_low,
        pass_b_high=b_high,
        diff=tuple(diff.tolist()),
        diff_low=d_low,
        diff_high=d_high,
        diff_p=tuple(diff_p.tolist()),
        k_star=k_star,
        k_star_interval=k_interval,
        k_star_ci=k_star_ci,
        only_a=only_a,
        only_b=only_b,
        both=both,
        neither=len(ids) - len(only_a) - len(only_b) - len(both),
        mcnemar_p=mcnemar_exact(len(only_a), len(only_b)),
        n_a=None if n_runs is None else n_runs[0],
        n_b=None if n_runs is None else n_runs[1],
        boundary_n=min_max(matched.tolist()),
    )
